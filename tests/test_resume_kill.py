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


#: the stage a kill landed in, read from the last stage line the run printed
STAGES = (
    "demonstrations",
    "sft on",
    "valid on",
    "student rollouts",
    "teacher corrects",
    "test on",
    "reference",
)


def _stage(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "·" in ln and "──" in ln]
    last = lines[-1] if lines else ""
    return next((s for s in STAGES if s in last), "start-up")


def _assert_same_run(alone: Path, killed: Path) -> None:
    """The killed and resumed run ends where the run left alone ended."""
    from leap.io import read_jsonl

    for k in (0, 1, 2):
        for name in ("samples.jsonl", "train/sft.jsonl"):
            a, b = alone / f"iter_{k}" / name, killed / f"iter_{k}" / name
            assert a.read_bytes() == b.read_bytes(), f"{killed.name}: iter_{k}/{name} differs after the kills"
    summary_a = json.loads((alone / "summary.json").read_text())
    summary_b = json.loads((killed / "summary.json").read_text())
    summary_a["name"] = summary_b["name"]
    assert summary_a == summary_b
    keys = [row["key"] for row in read_jsonl(killed / "teacher_cache.jsonl")]
    assert len(keys) == len(set(keys)), "a teacher request was stored twice"


def _reached(mark: Path, before: set[Path], run: Path) -> bool:
    """The kill moment: ``mark`` was written, or, when it was already there before this
    attempt, the attempt wrote a file of its own."""
    if mark not in before:
        return mark.exists()
    return any(p not in before for p in run.rglob("*") if p.is_file())


@pytest.mark.slow
def test_twenty_random_kills_change_nothing(tmp_path) -> None:
    """A small household run with an LLM teacher, killed with SIGKILL at 20 seeded random
    moments and resumed after each, ends with the same datasets, training files, chosen
    iteration and summary as the same run left alone, and the teacher cache holds no request
    twice."""
    import random

    from test_llm_teacher import _look_everywhere

    from servers import ScriptedServer

    with ScriptedServer(responder=_look_everywhere) as server:

        def config(name: str) -> Path:
            data = json.loads(json.dumps(TINY))
            data.update(name=name, output_dir=str(tmp_path))
            data["student"]["temperature"] = 0.0  # greedy: a resumed rollout repeats itself exactly
            data["loop"] = {"iterations": 2, "rollouts_per_iteration": 3}
            data["teacher"] = {"kind": "llm", "model": "openai:teacher", "base_url": server.base_url}
            path = tmp_path / f"{name}.yaml"
            path.write_text(yaml.safe_dump(data))
            return path

        alone = _start(config("alone"), tmp_path / "alone.log")
        assert alone.wait(timeout=900) == 0, (tmp_path / "alone.log").read_text()[-3000:]
        paid_alone = len(server.requests)
        alone_dir = tmp_path / "alone"

        # 20 kill moments spread over the whole run: just after one of the files the run left
        # alone wrote (seeded choice, in the order they were written, leaving out the last
        # tenth of the run so that work is left to kill), plus up to half a second; a target
        # already passed kills just after the next new file instead
        rng = random.Random(20)
        files = [p for p in alone_dir.rglob("*") if p.is_file()]
        start = min(p.stat().st_mtime for p in files)
        end = start + 0.9 * ((alone_dir / "summary.json").stat().st_mtime - start)
        written = sorted((p for p in files if p.stat().st_mtime < end), key=lambda p: p.stat().st_mtime)
        stages: dict[str, int] = {}
        kills, rounds = 0, 0
        # a killed run that finishes before all its kills landed is compared, and another run
        # takes the kills that are left, until 20 have landed
        while kills < 20:
            name = f"killed-{rounds}"
            path, killed = config(name), tmp_path / name
            for target in sorted(rng.sample(written, 20 - kills), key=lambda p: p.stat().st_mtime):
                log = tmp_path / f"{name}-{kills}.log"
                before = {p for p in killed.rglob("*") if p.is_file()} if killed.exists() else set()
                mark = killed / target.relative_to(alone_dir)
                proc = _start(path, log)
                deadline = time.monotonic() + 600
                while (
                    not _reached(mark, before, killed) and proc.poll() is None and time.monotonic() < deadline
                ):
                    time.sleep(0.02)
                time.sleep(rng.uniform(0.0, 0.5))
                if proc.poll() is not None:
                    assert proc.returncode == 0, log.read_text()[-3000:]
                    break  # it finished before this kill
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills += 1
                stage = _stage(log)
                stages[stage] = stages.get(stage, 0) + 1
            final = _start(path, tmp_path / f"{name}-final.log")
            assert final.wait(timeout=900) == 0, (tmp_path / f"{name}-final.log").read_text()[-3000:]
            _assert_same_run(alone_dir, killed)
            rounds += 1
        print(
            f"\nkill points survived: {kills} in {rounds} run(s) ({stages}); teacher requests "
            f"{len(server.requests)} (one run left alone: {paid_alone})"
        )
    assert kills == 20 and len(stages) >= 4, stages
