"""InterCode-Bash's programmatic policies: the gold command, and the privileged teacher."""

from __future__ import annotations

import shlex

from leap.policy import AgentView, Decision, Policy


def _ran_gold(view: AgentView, gold: str) -> bool:
    return any(" ".join(t.action.split()) == " ".join(gold.split()) for t in view.history)


def approach(gold: str) -> str:
    """A realizable description of the gold command: its tools and flags, not its arguments."""
    tools, flags = [], []
    for segment in gold.replace("&&", "|").replace(";", "|").split("|"):
        try:
            words = shlex.split(segment)
        except ValueError:
            words = segment.split()
        if words:
            tools.append(words[0])
            flags += [w for w in words[1:] if w.startswith("-") and len(w) <= 12]
    text = " piped into ".join(dict.fromkeys(tools)) or "a shell command"
    if flags:
        text += f", with {' '.join(dict.fromkeys(flags))}"
    return text


class GoldPolicy(Policy):
    """Privileged: run the gold command, then submit."""

    name = "gold"
    privileged = True

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for view in views:
            assert view.privileged is not None, "gold: the rollout did not pass the privileged state"
            gold = view.privileged.data["gold"]
            if _ran_gold(view, gold):
                out.append(Decision("submit", "The command has run and its output answers the task."))
            else:
                out.append(Decision(gold, f"I can do this with {approach(gold)}."))
        return out


class BashTeacherPolicy(Policy):
    """Corrections with the gold command. At 50 % the reason names the tools and flags; at 75 % it
    also shows the command's shape; at 100 % it quotes the gold command. Below 50 % there is no
    programmatic way to solve a task without the gold command: use an LLM teacher there."""

    privileged = True

    def __init__(self, privilege: int = 50) -> None:
        if privilege not in (50, 75, 100):
            raise ValueError(
                "intercode-bash's programmatic teacher works at privilege 50, 75 or 100; "
                "use an LLM teacher (teacher.kind: llm) for lower levels"
            )
        self.privilege = privilege
        self.name = f"intercode-teacher@{privilege}"

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for view in views:
            assert view.privileged is not None
            gold = view.privileged.data["gold"]
            if _ran_gold(view, gold):
                out.append(Decision("submit", "The last output answers the task, so I submit."))
                continue
            reason = f"I can do this with {approach(gold)}."
            if self.privilege == 75:
                reason += f" The command has {len(gold.split())} words."
            elif self.privilege == 100:
                reason = f"The right command is {gold}"
            out.append(Decision(gold, reason))
        return out
