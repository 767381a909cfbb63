"""InterCode-Bash's programmatic policy: the gold command (privileged)."""

from __future__ import annotations

import shlex

from leap.policy import AgentView, Decision, Policy


def ran_gold(view: AgentView, gold: str) -> bool:
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
            if ran_gold(view, gold):
                out.append(Decision("submit", "The command has run and its output answers the task."))
            else:
                out.append(Decision(gold, f"I can do this with {approach(gold)}."))
        return out
