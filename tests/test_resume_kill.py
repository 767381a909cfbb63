"""`leap run` killed with SIGKILL, then run again: it finishes, redoing nothing already written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_loop import TINY


def _start(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "leap", "run", str(config)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.slow
def test_kill_minus_nine_then_resume(tmp_path) -> None:
    data = json.loads(json.dumps(TINY))
    data.update(name="killed", output_dir=str(tmp_path))
    data["loop"] = {"iterations": 2, "rollouts_per_iteration": 3}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "killed"

    proc = _start(config, tmp_path / "first.log")
    deadline = time.monotonic() + 300
    # kill as soon as iteration 1's samples exist (written after its corrections and teacher
    # stats): the process is then training iteration 1
    while not (run / "iter_1" / "samples.jsonl").exists():
        assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "the run did not reach iteration 1"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "metrics.jsonl"}
    assert not (run / "summary.json").exists()

    second = _start(config, tmp_path / "second.log")
    assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-3000:]
    for path, content in written.items():
        if path.exists():  # a half-written stage directory may be replaced as a whole
            assert path.read_bytes() == content, f"{path} changed on resume"
    for name in ("samples.jsonl", "corrections.jsonl", "teacher_stats.json"):
        assert (run / "iter_1" / name) in written, f"iter_1/{name} should have survived the kill"
    summary = json.loads((run / "summary.json").read_text())
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1, 2]
    assert not list(run.rglob("*.partial")) and not list(run.rglob(".*.tmp"))
