"""InterCode-Bash: real tasks and reward, and a sandbox that hostile commands cannot escape."""

from __future__ import annotations

import dataclasses
import http.server
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from shared_data import needs_data

from leap.envs import UnknownTaskError, make_env
from leap.envs.intercode_bash.env import IntercodeBashEnv
from leap.envs.intercode_bash.experts import GoldPolicy
from leap.envs.intercode_bash.sandbox import Limits, SandboxArea, SandboxUnavailable
from leap.envs.intercode_bash.tasks import MissingDataError
from leap.rollout import run_episodes

pytestmark = needs_data("intercode")

#: tasks whose gold command cannot score 1.0 every time, and why
TIME_DEPENDENT = {
    "fs1/6": "find walks / including the host's read-only /usr: on a cold file cache or under load "
    "one of the two runs can pass the 10 s timeout, and /proc changes while it walks",
    "fs1/21": "find without a path walks / like fs1/6 and cats every *php file under /usr: in CI "
    "its answer part scored 0, as it does when only one of the two runs times out",
    "fs1/30": "find with an unset ${DIRECTORY} walks / and counts files under /proc, whose number "
    "depends on which of the pipeline's processes are alive at that moment (it differed under load)",
    "fs2/42": "prints the current date and time: the agent's run and the fresh gold run agree only "
    "when they fall in the same second",
    "fs2/49": "curl with no network (the sandbox has none): both runs fail, and curl's progress meter "
    "prints the elapsed time, which agrees only when both fail within the same second",
}


@pytest.fixture
def env():
    environment = make_env("intercode-bash")
    yield environment
    environment.close()


def test_tasks_splits_and_categories(env: IntercodeBashEnv) -> None:
    sizes = {s: len(ids) for s, ids in env.splits().items()}
    assert sizes == {"train": 104, "valid": 17, "test": 52}
    assert sum(sizes.values()) == 60 + 53 + 60
    assert env.task_ids("train")[0] == "fs1/0" and env.category("fs2/3") == "fs2"
    assert not set(env.task_ids("train")) & set(env.task_ids("test"))
    assert env.task_ids("test")[0] == "fs1/42"  # the last 30 % of fs1's 60 tasks
    with pytest.raises(UnknownTaskError, match="ids look like fs1/0"):
        env.reset("fs9/1")


def test_gold_then_submit_scores_one_on_every_task() -> None:
    ids = [t for s in ("train", "valid", "test") for t in make_env("intercode-bash").task_ids(s)]
    episodes = run_episodes(
        lambda: make_env("intercode-bash"), ids, GoldPolicy(), batch_size=8, show_progress=False
    )
    failed = {
        e.task_id: (e.score, e.steps[-1].info)
        for e in episodes
        if e.score != 1.0 and e.task_id not in TIME_DEPENDENT
    }
    assert not failed
    # where only the printed answer can differ, the file-system parts of the reward still agree
    timed = [e.steps[-1].info for e in episodes if e.task_id in TIME_DEPENDENT]
    assert len(timed) == len(TIME_DEPENDENT)
    assert all(i["file_diff"] == i["file_changes"] == 0.33 for i in timed), timed
    assert all(e.n_actions == 2 and e.steps[-1].action == "submit" for e in episodes)


def test_wrong_commands_score_by_the_formula(env: IntercodeBashEnv) -> None:
    env.reset("fs1/0")  # md5 sums of duplicate .java files: an output, no file changes
    env.step("echo nothing to see")
    result = env.step("submit")
    assert (result.info["file_diff"], result.info["file_changes"], result.info["answer_similarity"]) == (
        0.33,
        0.33,
        0.0,
    )
    assert result.reward == 0.67 and result.done and not result.success
    env.reset("fs1/0")
    env.step("md5sum /testbed/*.java | awk '{print $1}' | sort | uniq -d > /testbed/extra.txt")
    result = env.step("submit")
    assert result.info["diff_extra"] == ["testbed/extra.txt"]
    assert result.info["file_diff"] == 0.05  # 0.33 * (1 - erf(1))
    assert result.reward == round(0.01 + 0.05 + 0.33 + result.info["answer_similarity"], 2)
    env.reset("fs1/0")
    assert env.step("skip").reward == 0.0


def test_cd_carries_over_and_privileged_state(env: IntercodeBashEnv) -> None:
    first = env.reset("fs1/0")
    assert env.task in first.observation
    assert env.step("cd /testbed/dir1").observation == ""
    assert env.step("pwd").observation.strip() == "/testbed/dir1"
    assert env.step("cd ..").observation == "" and env.step("pwd").observation.strip() == "/testbed"
    assert env.step("cd /nowhere").observation != "" and env.step("pwd").observation.strip() == "/testbed"
    state = env.privileged_state()
    assert state.data["gold"] in state.text and state.data["gold_output"].strip() in state.text
    assert any(s.label == "gold command" and s.evidence is None for s in state.secrets)
    space = env.action_space()
    assert space.is_valid("ls -la") and space.is_valid("submit") and not space.is_valid("ls\nrm x")


# -- the sandbox ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_env():
    environment = IntercodeBashEnv(limits=Limits(timeout_s=3))
    yield environment
    environment.close()


@pytest.fixture(scope="module")
def host_secret(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("host") / "secret.txt"
    path.write_text("host-only-secret-7431")
    return path


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def loopback_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def _hostile_commands(secret: Path, port: int) -> list[str]:
    return [
        "rm -rf / 2>/dev/null; ls /",
        "rm -rf ~ /root 2>/dev/null; echo done",
        "rm -rf /* 2>/dev/null; echo done",
        "echo owned > /usr/leap-owned",
        "touch /etc/leap-owned",
        "chmod -R 777 /usr 2>&1 | head -1",
        f"cat {secret}",
        f"ln -s {secret} /testbed/link.txt; cat /testbed/link.txt",
        f"ln -s {secret.parent} /escape; ls /escape",
        "cd /proc/1/root && ls",
        ":(){ :|:& };:",
        "while true; do :; done",
        "sleep 1000",
        "sleep 1000 &",
        "nohup sleep 999 >/dev/null 2>&1 & disown",
        "setsid sleep 998 &",
        f"curl -s -m 2 http://127.0.0.1:{port}/leak || echo blocked",
        f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected || echo blocked",
        "dd if=/dev/zero of=/fill bs=1M count=4000 2>&1 | tail -1",
        "yes > /fill2",
        'python3 -c "x = bytearray(8 << 30)" 2>&1 | tail -1',
        "kill -9 -1",
        "echo evil > /proc/sys/kernel/hostname",
        "env",
        "pstree -a",
        "ps aux",
        "cat /proc/1/cmdline /proc/1/environ",
        "grep -h . /proc/[0-9]*/cmdline",
    ]


def test_hostile_commands_leave_the_host_untouched(
    hostile_env: IntercodeBashEnv, host_secret: Path, loopback_server: int, monkeypatch
) -> None:
    monkeypatch.setenv("LEAP_TEST_HOST_SECRET", "do-not-leak-5519")
    commands = _hostile_commands(host_secret, loopback_server)
    assert len(commands) >= 20
    usr_before = set(os.listdir("/usr"))
    for command in commands:
        hostile_env.reset("fs1/0")
        start = time.monotonic()
        result = hostile_env.step(command)
        elapsed = time.monotonic() - start
        assert elapsed < hostile_env.limits.timeout_s + 2.5, (command, elapsed)
        assert "host-only-secret-7431" not in result.observation, command
        assert "do-not-leak-5519" not in result.observation, command
        assert "connected" not in result.observation, command
        assert "bwrap" not in result.observation and "leap-intercode" not in result.observation, command
        submitted = hostile_env.step("submit")  # the reward never crashes, whatever the root holds
        assert 0.0 <= submitted.reward <= 1.0
    assert host_secret.read_text() == "host-only-secret-7431"
    assert not Path("/usr/leap-owned").exists() and not Path("/etc/leap-owned").exists()
    assert set(os.listdir("/usr")) == usr_before
    assert _Recorder.hits == []
    leftovers = subprocess.run(["pgrep", "-f", "sleep 99[89]|sleep 1000"], capture_output=True, text=True)
    assert leftovers.stdout == "", "a background process outlived its step"


#: commands that look at processes and mounts: inside they must show a container, not the host
PROCESS_LISTINGS = ("pstree -a", "ps aux", "ps -ef", "ps -e -o pid,comm", "cat /proc/1/cmdline", "ls /proc")


def test_the_sandbox_looks_like_a_container_from_inside(hostile_env: IntercodeBashEnv) -> None:
    """No host path, no sandbox command line, no process outside the episode: the process list
    holds the shell (PID 1) and its own children."""
    hostile_env.reset("fs1/0")
    area = str(hostile_env._agent.dir.parent)  # type: ignore[union-attr]
    for command in [*PROCESS_LISTINGS, "cat /proc/self/mountinfo", "cat /proc/1/environ"]:
        output = hostile_env.step(command).observation
        assert "bwrap" not in output and area not in output and "leap-intercode" not in output, command
    listed = hostile_env.step("ps -e -o pid=,comm=").observation.split("\n")
    assert [line.split() for line in listed if line.strip()] == [["1", "bash"], ["2", "ps"]]
    assert hostile_env.step("echo $$").observation.strip() == "1"


def test_gold_process_listings_score_one(hostile_env: IntercodeBashEnv) -> None:
    """The gold command and the agent's run of it see the same process list (PIDs, commands).
    ``ps aux`` also prints each process's resident memory, which differs from run to run in any
    sandbox or container, so it scores just below 1."""
    base = hostile_env._tasks["fs1/0"]
    for gold in PROCESS_LISTINGS:
        if gold in ("ps aux", "ps -ef") and time.localtime().tm_sec >= 55:
            time.sleep(6)  # STIME/START are minutes: keep both runs inside one
        task_id = f"fs1/{gold}"
        hostile_env._tasks[task_id] = dataclasses.replace(base, task_id=task_id, gold=gold)
        hostile_env.reset(task_id)
        hostile_env.step(gold)
        reward = hostile_env.step("submit").reward
        assert reward >= (0.95 if gold == "ps aux" else 1.0), (gold, reward)


def test_files_are_capped(hostile_env: IntercodeBashEnv) -> None:
    hostile_env.reset("fs1/0")
    hostile_env.step("dd if=/dev/zero of=/fill bs=1M count=4000")
    size = (hostile_env._agent.root / "fill").stat().st_size  # type: ignore[union-attr]
    assert size <= hostile_env.limits.file_bytes


def test_parallel_episodes_do_not_see_each_other() -> None:
    a, b = make_env("intercode-bash"), make_env("intercode-bash")
    try:
        a.reset("fs1/0")
        b.reset("fs1/0")
        a.step("echo mine > /testbed/only-in-a.txt")
        assert "only-in-a" not in b.step("ls /testbed").observation
        assert "only-in-a" in a.step("ls /testbed").observation
        assert a._agent.root != b._agent.root  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()


def test_roots_are_removed_after_episodes_and_after_crashes(tmp_path) -> None:
    env = make_env("intercode-bash")
    env.reset("fs1/0")
    episode_dir = env._agent.dir  # type: ignore[union-attr]
    env.reset("fs1/1")
    assert not episode_dir.exists()
    env.close()
    stale = tmp_path / "999999-ep-stale"  # left by a process that no longer exists
    (stale / "root").mkdir(parents=True)
    SandboxArea(tmp_path)
    assert not stale.exists()


def test_clear_errors_without_data_or_bubblewrap(tmp_path, monkeypatch) -> None:
    with pytest.raises(MissingDataError, match="princeton-nlp/intercode"):
        IntercodeBashEnv(data_dir=tmp_path / "missing")
    monkeypatch.setattr("leap.envs.intercode_bash.sandbox.bwrap_path", lambda: None)
    env = IntercodeBashEnv()
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        env.reset("fs1/0")
    with pytest.warns(UserWarning, match="unsafe_no_sandbox"):
        unsafe = IntercodeBashEnv(unsafe_no_sandbox=True)
        unsafe.reset("fs1/0")
    assert unsafe.step("echo hi").observation == "hi\n"
    unsafe.close()


def test_leap_run_works_on_intercode(tmp_path) -> None:
    import json

    from test_loop import _config

    from leap.config import load_config
    from leap.loop import LeapRun

    env = {"name": "intercode-bash", "horizon": 3, "options": {}, "n_valid": 2, "n_test": 2,
           "train_split": "train", "valid_split": "valid", "test_split": "test"}  # fmt: skip
    path = _config(
        tmp_path,
        "ic",
        env=env,
        student={"batch_size": 4},
        loop={"iterations": 1, "rollouts_per_iteration": 2},
    )
    summary = LeapRun(load_config(path)).run()
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    samples = [json.loads(line) for line in (tmp_path / "runs" / "ic" / "iter_1" / "samples.jsonl").open()]
    gold = {t.task_id: t.gold for t in IntercodeBashEnv()._tasks.values()}
    assert samples and all(
        s["completion"].split("\nACTION: ")[1] in (gold[s["task_id"]], "submit") for s in samples
    )
    assert all(
        gold[s["task_id"]] not in s["completion"].split("\nACTION: ")[0] for s in samples
    )  # realizable
