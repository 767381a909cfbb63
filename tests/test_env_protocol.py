"""The environment protocol and registry, exercised with a user-defined environment."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from leap.envs import (
    ActionSpace,
    Environment,
    FreeFormRule,
    PrivilegedState,
    StepResult,
    UnknownEnvironmentError,
    UnknownSplitError,
    UnknownTaskError,
    list_envs,
    make_env,
    register_env,
)
from leap.policy import AgentView, Decision, Policy
from leap.rollout import run_episodes


class GuessNumber(Environment):
    """A toy user environment: guess a hidden number with free-form `guess[N]` actions."""

    name = "guess-number"
    horizon = 5

    def __init__(self) -> None:
        self._secret = 0
        self._task = ""

    def splits(self) -> dict[str, Sequence[str]]:
        return {"train": ["n3", "n7"], "test": ["n5"]}

    def category(self, task_id: str) -> str:
        return "low" if int(task_id[1:]) < 5 else "high"

    def reset(self, task_id: str) -> StepResult:
        if task_id not in {t for ids in self.splits().values() for t in ids}:
            raise UnknownTaskError(f"guess-number: unknown task {task_id!r}")
        self._secret = int(task_id[1:])
        self._task = "guess the number between 0 and 9"
        return StepResult("Make a guess.", info={"success": False})

    def step(self, action: str) -> StepResult:
        if not self.action_space().is_valid(action):
            return StepResult("Invalid guess.", info={"success": False})
        guess = int(action[6:-1])
        won = guess == self._secret
        hint = "correct" if won else ("higher" if guess < self._secret else "lower")
        return StepResult(hint, float(won), won, {"success": won})

    @property
    def task(self) -> str:
        return self._task

    def action_space(self) -> ActionSpace:
        return ActionSpace(free_form=FreeFormRule(r"guess\[\d\]", "guess[N] with N a digit"))

    def privileged_state(self) -> PrivilegedState:
        return PrivilegedState(f"The number is {self._secret}.", {"secret": self._secret})


class Bisect(Policy):
    name = "bisect"

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for v in views:
            lo, hi = 0, 9
            results = [t.observation for t in v.history[1:]] + [v.observation]
            for turn, result in zip(v.history, results[: len(v.history)], strict=True):
                g = int(turn.action[6:-1])
                lo, hi = (g + 1, hi) if result == "higher" else (lo, g - 1) if result == "lower" else (lo, hi)
            out.append(Decision(action=f"guess[{(lo + hi) // 2}]", reason="halve the interval"))
        return out


class Cheater(Policy):
    name = "cheater"
    privileged = True

    def act(self, views: list[AgentView]) -> list[Decision]:
        assert all(v.privileged is not None for v in views)
        return [Decision(action=f"guess[{v.privileged.data['secret']}]") for v in views]  # type: ignore[union-attr]


register_env("guess-number")(GuessNumber)


def test_user_environment_registers_and_runs() -> None:
    assert "guess-number" in list_envs()
    env = make_env("guess-number")
    episodes = run_episodes(
        lambda: make_env("guess-number"), env.task_ids("train"), Bisect(), show_progress=False
    )
    assert [e.success for e in episodes] == [True, True]
    assert [e.category for e in episodes] == ["low", "high"]
    assert all(s.valid for e in episodes for s in e.steps)


def test_privileged_state_only_reaches_privileged_policies() -> None:
    episodes = run_episodes(lambda: make_env("guess-number"), ["n7"], Cheater(), show_progress=False)
    assert episodes[0].success and episodes[0].n_actions == 1
    with pytest.raises(AssertionError):
        Cheater().act([AgentView("e", "t", "o", ActionSpace())])


def test_free_form_rule_validates_whole_action() -> None:
    space = make_env("guess-number").action_space()
    assert space.is_valid("guess[4]")
    assert not space.is_valid("guess[4] now")
    assert not space.is_valid("guess[44]")
    listed = ActionSpace(choices=("click[buy]",), free_form=FreeFormRule(r"search\[.+\]", "search[query]"))
    assert listed.is_valid("click[buy]") and listed.is_valid("search[red shoes]")
    assert not listed.is_valid("click[sell]")
    assert listed.to_record() == {
        "choices": ["click[buy]"],
        "free_form": {"pattern": r"search\[.+\]", "description": "search[query]"},
    }
    assert ActionSpace.from_record(listed.to_record()) == listed


def test_clear_errors_for_unknown_names() -> None:
    with pytest.raises(UnknownEnvironmentError, match=r"registered: .*household"):
        make_env("no-such-env")
    env = make_env("guess-number")
    with pytest.raises(UnknownSplitError, match="known splits: test, train"):
        env.task_ids("valid")
    with pytest.raises(UnknownTaskError, match="unknown task 'n99'"):
        env.reset("n99")
