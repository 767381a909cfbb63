"""Which corrected steps become samples: all, only the divergent ones, and a cap on repeats."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from leap.envs import env_spec, make_env
from leap.policy import AgentView, Decision, Policy
from leap.rollout import Episode, run_episodes
from leap.teachers import EpisodeCorrection, ProgrammaticTeacher, StepCorrection
from leap.teachers.replay import ReplayMismatch
from leap.teachers.selection import select_steps
from leap.teachers.takeover import first_divergence, take_over, takeover_step


class _Pacer(Policy):
    """Follows the planner for two steps, then walks between the first two receptacles forever:
    the loop a weak student gets stuck in."""

    name = "pacer"
    privileged = True

    def __init__(self) -> None:
        self.planner = env_spec("household").expert("planner")

    def act(self, views: list[AgentView]) -> list[Decision]:
        out = []
        for v, planned in zip(views, self.planner.act(views), strict=True):
            moves = sorted(a for a in v.action_space.choices if a.startswith("go to "))
            action = planned.action if len(v.history) < 2 else moves[len(v.history) % 2]
            out.append(Decision(action=action, reason="I look around."))
        return out


@pytest.fixture(scope="module")
def corrected() -> list[tuple[EpisodeCorrection, Episode]]:
    episodes = run_episodes(
        lambda: make_env("household"),
        [f"train/{i:04d}" for i in range(6)],
        _Pacer(),
        horizon=10,
        show_progress=False,
    )
    teacher = ProgrammaticTeacher(env_spec("household").teacher_policy(50))
    corrections = teacher.correct(episodes, lambda: make_env("household"))
    return list(zip(corrections, episodes, strict=True))


def test_all_keeps_every_corrected_step(corrected) -> None:
    for correction, episode in corrected:
        kept, dropped = select_steps(correction, episode)
        assert [s.step for s in kept] == list(range(episode.n_actions))
        assert not dropped


def test_divergent_drops_the_steps_where_the_student_was_right(corrected) -> None:
    agreeing = total = 0
    for correction, episode in corrected:
        kept, dropped = select_steps(correction, episode, steps="divergent")
        same = {s.step for s in correction.steps if s.action == episode.steps[s.step].action}
        assert all(s.action != episode.steps[s.step].action for s in kept)
        assert {s.step for s in kept} == {s.step for s in correction.steps} - same
        assert dropped == Counter({"agrees_with_student": len(same)} if same else {})
        agreeing += len(same)
        total += len(correction.steps)
    assert 0 < agreeing < total  # the planner's steps agree with the teacher


def test_repeats_are_capped_per_episode_and_counted(corrected) -> None:
    for correction, episode in corrected:
        kept, dropped = select_steps(correction, episode, max_repeats=2)
        per_action = Counter(s.action for s in kept)
        assert max(per_action.values()) <= 2
        assert len(kept) + dropped["repeated_action"] == len(correction.steps)
        first = {}
        for s in correction.steps:
            first.setdefault(s.action, []).append(s.step)
        assert sorted(s.step for s in kept) == sorted(t for steps in first.values() for t in steps[:2])
    # a looping student gets one correction over and over: the cap must bite somewhere
    assert any(select_steps(c, e, max_repeats=2)[1] for c, e in corrected)


def test_actions_compare_without_case_or_spacing() -> None:
    episode = Episode("e", "household", "train/0000", "pick", "t", "p")
    episode.steps = []  # a correction past the recorded steps is never 'agreeing'
    correction = EpisodeCorrection(
        "e", "t", [StepCorrection(0, "r", "Go to  cabinet 1"), StepCorrection(1, "r", "go to cabinet 1")]
    )
    kept, dropped = select_steps(correction, episode, steps="divergent", max_repeats=1)
    assert [s.step for s in kept] == [0] and dropped == Counter({"repeated_action": 1})


def test_takeover_keeps_the_students_steps_then_the_teacher_finishes(corrected) -> None:
    """From the pacing student's first step the teacher corrects, the teacher acts to the end:
    the student's own steps before it are kept as they were, and the teacher solves the task."""
    policy = env_spec("household").teacher_policy(50)
    for correction, episode in corrected:
        t = first_divergence(correction, episode)
        assert t is not None
        assert all(s.action == episode.steps[s.step].action for s in correction.steps if s.step < t)
        assert correction.steps[t].action != episode.steps[t].action
        finished = take_over(episode, t, policy, lambda: make_env("household"), horizon=30)
        assert finished.episode_id == f"{episode.episode_id}+takeover"
        assert finished.steps[:t] == episode.steps[:t]
        assert finished.steps[t].action == correction.steps[t].action  # the same teacher, the same state
        assert finished.success and finished.steps[-1].done and all(s.valid for s in finished.steps)
        assert [s.t for s in finished.steps] == list(range(len(finished.steps)))


def test_first_divergence_is_none_when_the_teacher_agrees_everywhere() -> None:
    episode = Episode("e", "household", "train/0000", "pick", "t", "p")
    episode.steps = run_episodes(
        lambda: make_env("household"), ["train/0000"], env_spec("household").teacher_policy(50)
    )[0].steps
    correction = EpisodeCorrection("e", "t", [StepCorrection(s.t, "r", s.action) for s in episode.steps])
    assert first_divergence(correction, episode) is None


def test_takeover_step_is_drawn_between_the_first_error_and_the_end(corrected) -> None:
    steps = []
    for correction, episode in corrected:
        first = first_divergence(correction, episode)
        step = takeover_step(correction, episode, seed=0)
        assert first is not None and step is not None
        assert first <= step < len(episode.steps)
        assert takeover_step(correction, episode, seed=0) == step  # seeded
        steps.append(step)
    assert len(set(steps)) > 1  # not always the same step


def test_takeover_refuses_an_episode_the_environment_does_not_reproduce(corrected) -> None:
    _, episode = corrected[0]
    altered = dataclasses.replace(episode, steps=list(episode.steps))
    altered.steps[1] = dataclasses.replace(altered.steps[1], observation="something else")
    policy = env_spec("household").teacher_policy(50)
    with pytest.raises(ReplayMismatch, match="replay diverged at step 1"):
        take_over(altered, 3, policy, lambda: make_env("household"))
    assert len(take_over(episode, 0, policy, lambda: make_env("household", horizon=4)).steps) <= 4
