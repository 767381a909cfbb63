"""``intercode-bash``: InterCode's NL2Bash tasks, each command run in a bubblewrap sandbox."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from leap.envs.base import (
    ActionSpace,
    Environment,
    FreeFormRule,
    PrivilegedState,
    StepResult,
    UnknownTaskError,
)
from leap.envs.intercode_bash.privileged import gold_state
from leap.envs.intercode_bash.reward import reward
from leap.envs.intercode_bash.sandbox import CommandResult, Limits, Sandbox, SandboxArea
from leap.envs.intercode_bash.tasks import BashTask, load_tasks, resolve_data_dir, split_tasks

COMMAND_RULE = FreeFormRule(r"[^\n]*\S[^\n]*", "one bash command on one line (or submit, or skip)")
MAX_OBSERVATION_CHARS = 4000


def simplify_path(current: str, target: str) -> str:
    """Where ``cd TARGET`` leads from ``current`` (no symlinks resolved, like InterCode)."""
    if not target:
        return current
    parts: list[str] = []
    for segment in (("" if target.startswith("/") else current) + "/" + target).split("/"):
        if segment == "..":
            if parts:
                parts.pop()
        elif segment and segment != ".":
            parts.append(segment)
    return "/" + "/".join(parts)


def _observed(result: CommandResult) -> str:
    """What a command shows: its output, or InterCode's message when it timed out."""
    return "Command timed out" if result.timed_out else result.output


class IntercodeBashEnv(Environment):
    """Args:
    data_dir: the directory with nl2bash_fs_N.json and fsN.tar.xz (default: see tasks.py).
    horizon: most actions per episode (10, as in the paper).
    unsafe_no_sandbox: run commands as plain subprocesses (prints a warning; never on shared machines).
    limits: sandbox limits (timeout, CPU, memory, processes, file size).
    """

    name = "intercode-bash"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        horizon: int = 10,
        unsafe_no_sandbox: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self.horizon = horizon
        self.data_dir = resolve_data_dir(data_dir)
        self._tasks = {t.task_id: t for t in load_tasks(self.data_dir)}
        self._splits = split_tasks(tuple(self._tasks.values()))
        self.limits = limits or Limits()
        self.unsafe = unsafe_no_sandbox
        self._area: SandboxArea | None = None
        self._agent: Sandbox | None = None
        self._gold: Sandbox | None = None
        self._task: BashTask | None = None
        self._gold_output = ""
        self._last_output = ""
        self._cwd = "/"

    def splits(self) -> dict[str, Sequence[str]]:
        return self._splits

    def category(self, task_id: str) -> str:
        return self._lookup(task_id).file_system

    def _lookup(self, task_id: str) -> BashTask:
        if task_id not in self._tasks:
            raise UnknownTaskError(f"intercode-bash: unknown task id {task_id!r} (ids look like fs1/0)")
        return self._tasks[task_id]

    @property
    def task(self) -> str:
        if self._task is None:
            raise RuntimeError("intercode-bash: call reset(task_id) first")
        return self._task.query

    def _new_sandbox(self, task: BashTask) -> Sandbox:
        if self._area is None:
            self._area = SandboxArea()
        sandbox = Sandbox(self._area, self.limits, unsafe_no_sandbox=self.unsafe)
        sandbox.build(task.tarball)
        return sandbox

    def reset(self, task_id: str) -> StepResult:
        task = self._lookup(task_id)
        self._release()
        self._task, self._cwd, self._last_output = task, "/", ""
        self._gold = self._new_sandbox(task)
        self._gold_output = _observed(self._gold.run(task.gold))
        self._agent = self._new_sandbox(task)
        return StepResult(
            f"Task: {task.query}\nYou are in a bash shell at /.",
            0.0,
            False,
            {"success": False, "task": task.query},
        )

    def step(self, action: str) -> StepResult:
        if self._agent is None or self._task is None:
            raise RuntimeError("intercode-bash: call reset(task_id) before stepping")
        action = action.strip()
        if action == "submit":
            return self._submit()
        if action == "skip":
            return StepResult("Skipped.", 0.0, True, {"success": False, "skipped": True})
        if not COMMAND_RULE.accepts(action):
            return StepResult(
                "Invalid command: write one bash command on one line.",
                0.0,
                False,
                {"success": False, "exit_code": None},
            )
        if action.startswith("cd ") or action == "cd":
            target = simplify_path(self._cwd, action[2:].strip() or "/root")
            result = self._agent.run(f"cd {target}", cwd="/")
            if result.exit_code == 0:
                self._cwd = target
        else:
            result = self._agent.run(action, cwd=self._cwd)
        output = _observed(result)
        self._last_output = output
        shown = (
            output
            if len(output) <= MAX_OBSERVATION_CHARS
            else output[:MAX_OBSERVATION_CHARS] + "\n[truncated]"
        )
        return StepResult(
            shown,
            0.0,
            False,
            {"success": False, "exit_code": result.exit_code, "timed_out": result.timed_out},
        )

    def _submit(self) -> StepResult:
        assert self._agent is not None and self._gold is not None
        parts = reward(self._agent, self._gold, self._last_output, self._gold_output)
        total = parts.total
        info = {
            "success": total >= 1.0,
            "file_diff": parts.file_diff,
            "file_changes": parts.file_changes,
            "answer_similarity": parts.answer_similarity,
            "diff_missing": parts.missing,
            "diff_extra": parts.extra,
        }
        return StepResult(f"Submitted. Reward: {total:.2f}", total, True, info)

    def action_space(self) -> ActionSpace:
        return ActionSpace(choices=("submit", "skip"), free_form=COMMAND_RULE)

    def privileged_state(self, plan: bool = True) -> PrivilegedState:
        if self._task is None:
            raise RuntimeError("intercode-bash: call reset(task_id) first")
        return gold_state(self._task, self._gold_output)

    def _release(self) -> None:
        for sandbox in (self._agent, self._gold):
            if sandbox is not None:
                sandbox.close()
        self._agent = self._gold = None

    def close(self) -> None:
        self._release()
