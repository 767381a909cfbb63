"""The teacher's privilege level: how much of the privileged state a teacher reads, defined once.

The paper's teachers see the privileged state at five levels (0, 25, 50, 75, 100 %). In leap a
level fixes two things, for every environment's programmatic teacher and for the LLM teacher's
prompt templates (``prompts/teacher/privilege_N.j2``) alike:

| level | the teacher reads     | its actions                          | its reasons                   |
|-------|-----------------------|--------------------------------------|-------------------------------|
| 0     | nothing privileged    | a non-privileged expert's            | realizable                    |
| 25    | the requirements only | only those the student's own         | realizable                    |
|       |                       | observations justify                 |                               |
| 50    | the whole state       | the optimal ones                     | realizable: no hidden fact    |
| 75    | the whole state       | the optimal ones                     | may hint at hidden facts      |
| 100   | the whole state       | the optimal ones                     | may state hidden facts        |

"The requirements" is ``PrivilegedState.summary``: what the task needs (object and target types,
attributes and price limit), never where hidden things are, what the answer is or the plan; "the
whole state" is ``PrivilegedState.text`` and ``data``. At 25 a programmatic teacher may consult
the whole state only to choose among actions the student's own observations already justify
(the household teacher takes the planner's action only when the student has seen what it needs).

"Realizable" means the student could have written the reason from what it had observed; the
leakage audit (``leap.teachers.leakage``) flags reasons that name a privileged fact too early.
A programmatic teacher may implement only some levels (InterCode-Bash cannot solve a task without
the gold command, so its teacher starts at 50); an environment's spec lists the levels its
teacher has, and a config asking for another one fails when it is loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from leap.envs.base import PrivilegedState

#: a privilege level, in % of the privileged state the teacher may use
Privilege = Literal[0, 25, 50, 75, 100]
LEVELS: tuple[int, ...] = (0, 25, 50, 75, 100)


@dataclass(frozen=True)
class Level:
    reads: Literal["nothing", "requirements", "everything"]
    actions: Literal["non-privileged", "justified", "optimal"]
    reasons: Literal["realizable", "hints", "states"]


MEANING: dict[int, Level] = {
    0: Level("nothing", "non-privileged", "realizable"),
    25: Level("requirements", "justified", "realizable"),
    50: Level("everything", "optimal", "realizable"),
    75: Level("everything", "optimal", "hints"),
    100: Level("everything", "optimal", "states"),
}


def check_level(level: int, supported: Iterable[int] = LEVELS, who: str = "teacher") -> int:
    """``level`` if ``who`` supports it, else a ValueError naming the levels it has."""
    supported = tuple(supported)
    if level not in supported:
        have = ", ".join(map(str, supported)) or "none"
        raise ValueError(f"{who} has no privilege level {level!r}; it supports {have}")
    return level


def visible_text(state: PrivilegedState | None, level: int) -> str:
    """The part of the privileged state's text a teacher at ``level`` reads."""
    if state is None:
        return ""
    reads = MEANING[check_level(level)].reads
    return {"nothing": "", "requirements": state.summary, "everything": state.text}[reads]
