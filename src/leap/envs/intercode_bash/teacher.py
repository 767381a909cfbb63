"""InterCode-Bash's programmatic privileged teacher: corrections with the gold command."""

from __future__ import annotations

from leap.envs.intercode_bash.experts import approach, ran_gold
from leap.policy import AgentView, Decision, Policy
from leap.privilege import check_level


class BashTeacherPolicy(Policy):
    """Corrections with the gold command. At 50 % the reason names the tools and flags; at 75 % it
    also shows the command's shape; at 100 % it quotes the gold command. Below 50 % there is no
    programmatic way to solve a task without the gold command: use an LLM teacher there."""

    privileged = True

    #: the levels it has (see the class docstring)
    levels = (50, 75, 100)

    def __init__(self, privilege: int = 50) -> None:
        self.privilege = check_level(
            privilege, self.levels, "intercode-bash's programmatic teacher (use teacher.kind: llm below 50)"
        )
        self.name = f"intercode-teacher@{privilege}"

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for view in views:
            assert view.privileged is not None
            gold = view.privileged.data["gold"]
            if ran_gold(view, gold):
                out.append(Decision("submit", "The last output answers the task, so I submit."))
                continue
            reason = f"I can do this with {approach(gold)}."
            if self.privilege == 75:
                reason += f" The command has {len(gold.split())} words."
            elif self.privilege == 100:
                reason = f"The right command is {gold}"
            out.append(Decision(gold, reason))
        return out
