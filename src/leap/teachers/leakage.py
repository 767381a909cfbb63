"""The leakage audit: does a teacher's reason name a privileged fact the student had not seen?"""

from __future__ import annotations

import re
from collections.abc import Sequence

from leap.envs.base import Secret
from leap.policy import AgentView


def observed_text(view: AgentView) -> str:
    """Everything the student had observed up to and including this step."""
    return "\n".join([view.task, *(t.observation for t in view.history), view.observation]).lower()


def find_leaks(reason: str, secrets: Sequence[Secret], observed: str) -> list[str]:
    """Labels of the secrets that ``reason`` reveals, given what was ``observed`` (lower-case)."""
    leaks = []
    for secret in secrets:
        if secret.evidence is not None and secret.evidence.lower() in observed:
            continue
        if re.search(secret.pattern, reason, re.IGNORECASE):
            leaks.append(secret.label or secret.pattern)
    return leaks


def audit(reason: str, view: AgentView) -> list[str]:
    if view.privileged is None:
        return []
    return find_leaks(reason, view.privileged.secrets, observed_text(view))
