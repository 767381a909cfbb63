"""The privileged state of an InterCode-Bash task: the gold command and its output in a fresh file
system. Nothing of it is a requirement the student lacks (the task text is the requirement), so
its summary, what a teacher at privilege 25 reads, is empty."""

from __future__ import annotations

import re

from leap.envs.base import PrivilegedState, Secret
from leap.envs.intercode_bash.tasks import BashTask


def gold_state(task: BashTask, gold_output: str) -> PrivilegedState:
    output = gold_output.strip()
    text = f"Gold command: {task.gold}\nIts output in a fresh file system:\n{output[:2000] or '(no output)'}"
    secrets = [Secret(re.escape(task.gold), label="gold command")]
    first_line = next((ln.strip() for ln in output.splitlines() if len(ln.strip()) >= 12), None)
    if first_line:
        secrets.append(Secret(re.escape(first_line), evidence=first_line, label="gold output"))
    data = {"gold": task.gold, "gold_output": gold_output, "query": task.query}
    return PrivilegedState(text, data, tuple(secrets))
