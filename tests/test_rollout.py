"""Batched rollouts, in lockstep and episode by episode: equivalence with sequential runs,
crash isolation, records."""

from __future__ import annotations

import json
import threading
from typing import ClassVar

import pytest

from leap.agents import LLMPolicy
from leap.envs import make_env
from leap.envs.household import HouseholdEnv
from leap.envs.household.experts import PlannerPolicy
from leap.io import append_jsonl, read_jsonl
from leap.policy import AgentView, Decision
from leap.rollout import Episode, run_episodes

TASKS = [f"valid/{i:04d}" for i in range(6)]


def test_batched_rollout_equals_sequential_with_greedy_decoding(tiny_model) -> None:
    policy = LLMPolicy(tiny_model, max_new_tokens=10)
    batched = run_episodes(
        lambda: make_env("household"), TASKS, policy, horizon=3, batch_size=6, show_progress=False
    )
    sequential = run_episodes(
        lambda: make_env("household"), TASKS, policy, horizon=3, batch_size=1, show_progress=False
    )
    assert [[s.raw for s in e.steps] for e in batched] == [[s.raw for s in e.steps] for e in sequential]
    assert [e.to_record() for e in batched] == [e.to_record() for e in sequential]
    assert len({s.raw for e in batched for s in e.steps}) > 1


def test_every_step_is_recorded(tiny_model) -> None:
    episodes = run_episodes(
        lambda: make_env("household"),
        TASKS[:2],
        LLMPolicy(tiny_model, max_new_tokens=6),
        horizon=4,
        batch_size=2,
        show_progress=False,
    )
    for e in episodes:
        assert e.n_actions == 4 and not e.success
        assert [s.t for s in e.steps] == [0, 1, 2, 3]
        first = e.steps[0]
        assert first.observation.startswith("You are in the middle of a room.")
        assert first.candidates["choices"] and first.prompt_sha and first.raw
        assert e.n_invalid == sum(not s.valid for s in e.steps)
        for s in e.steps:
            assert s.valid == (s.action in s.candidates["choices"])


class CrashingHousehold(HouseholdEnv):
    """Crashes on the third step of one task, at reset of another, and computing the privileged
    state of a third."""

    def reset(self, task_id: str):
        if task_id == "valid/0004":
            raise RuntimeError("broken game file")
        self._steps = 0
        return super().reset(task_id)

    def step(self, action: str):
        self._steps += 1
        if self._task_id == "valid/0001" and self._steps == 3:
            raise RuntimeError("engine died")
        return super().step(action)

    def privileged_state(self):
        if self._task_id == "valid/0002" and self._steps == 1:
            raise ValueError("planner bug")
        return super().privileged_state()


def test_a_crashing_environment_ends_only_its_episode() -> None:
    episodes = run_episodes(CrashingHousehold, TASKS, PlannerPolicy(), batch_size=3, show_progress=False)
    errors = {e.task_id: e.error for e in episodes if e.error}
    assert set(errors) == {"valid/0001", "valid/0002", "valid/0004"}
    assert "engine died" in errors["valid/0001"] and "broken game file" in errors["valid/0004"]
    assert errors["valid/0002"].startswith("privileged_state: ValueError: planner bug")
    crashed = next(e for e in episodes if e.task_id == "valid/0001")
    assert crashed.n_actions == 2 and not crashed.success
    assert all(e.success for e in episodes if e.task_id not in errors)


class FailingFirstResets(HouseholdEnv):
    def reset(self, task_id: str):
        if task_id in TASKS[:3]:
            raise RuntimeError("cannot load")
        return super().reset(task_id)


def test_failed_starts_free_their_slots_for_the_next_tasks() -> None:
    episodes = run_episodes(FailingFirstResets, TASKS, PlannerPolicy(), batch_size=3, show_progress=False)
    assert [e.task_id for e in episodes] == TASKS
    assert [bool(e.error) for e in episodes] == [True, True, True, False, False, False]
    assert all(e.success for e in episodes[3:])


class PreparingHousehold(HouseholdEnv):
    """Process-backed environments declare parallel calls and take a hint of their next task."""

    parallel_calls = True
    log: ClassVar[list[tuple[int, str, str]]] = []

    def prepare(self, task_id: str) -> None:
        self.log.append((id(self), "prepare", task_id))

    def reset(self, task_id: str):
        self.log.append((id(self), "reset", task_id))
        return super().reset(task_id)


def test_parallel_calls_and_prepared_tasks() -> None:
    tasks = [f"valid/{i:04d}" for i in range(10)]
    sequential = run_episodes(HouseholdEnv, tasks, PlannerPolicy(), batch_size=1, show_progress=False)
    PreparingHousehold.log = []
    parallel = run_episodes(PreparingHousehold, tasks, PlannerPolicy(), batch_size=3, show_progress=False)
    assert [e.to_record() for e in parallel] == [e.to_record() for e in sequential]
    log = PreparingHousehold.log
    prepared = [(env, task) for env, kind, task in log if kind == "prepare"]
    assert prepared, "environments that implement prepare are told their next task"
    for env, task in prepared:  # each prepared task is the next one that instance resets to
        later = [
            t for e, kind, t in log[log.index((env, "prepare", task)) + 1 :] if e == env and kind == "reset"
        ]
        assert later and later[0] == task


def test_episodes_round_trip_through_jsonl(tmp_path) -> None:
    path = tmp_path / "episodes.jsonl"
    episodes = run_episodes(
        lambda: make_env("household"),
        TASKS[:3],
        PlannerPolicy(),
        on_episode=lambda e: append_jsonl(path, e.to_record()),
        show_progress=False,
    )
    rows = list(read_jsonl(path))
    assert sorted(r["episode_id"] for r in rows) == TASKS[:3]
    by_id = {r["episode_id"]: r for r in rows}
    for e in episodes:
        again = Episode.from_record(json.loads(json.dumps(by_id[e.episode_id])))
        assert again == e
        assert by_id[e.episode_id]["n_actions"] == e.n_actions
    with path.open("a") as f:
        f.write('{"episode_id": "torn')  # a writer killed mid-line
    assert len(list(read_jsonl(path))) == 3


class ServedPlanner(PlannerPolicy):
    """The planner as if it answered from a server: ``act`` may run in several threads at once.
    Until ``release`` is set it holds back the steps of ``slow_task`` (at most 10 s)."""

    concurrent = True

    def __init__(self, slow_task: str | None = None, fail_on: tuple[str, int] | None = None) -> None:
        self.slow_task, self.fail_on = slow_task, fail_on
        self.release = threading.Event()
        self.waited: list[bool] = []
        self.calls: list[int] = []

    def act(self, views: list[AgentView]) -> list[Decision]:
        self.calls.append(len(views))
        for view in views:
            if (view.episode_id, len(view.history)) == self.fail_on:
                raise RuntimeError("the server stopped answering")
            if view.episode_id == self.slow_task:
                self.waited.append(self.release.wait(timeout=10))
        return super().act(views)


def test_served_policies_advance_each_episode_on_its_own() -> None:
    tasks = [f"valid/{i:04d}" for i in range(10)]
    sequential = run_episodes(HouseholdEnv, tasks, PlannerPolicy(), batch_size=1, show_progress=False)
    policy = ServedPlanner(slow_task=tasks[0])
    ended: list[str] = []

    def on_episode(episode: Episode) -> None:
        ended.append(episode.task_id)
        if len(ended) == len(tasks) - 1:
            policy.release.set()

    # the slow episode's first step waits until every other episode has ended: in lockstep that
    # would never happen (all of a step's episodes wait for the slowest), so the wait times out
    served = run_episodes(
        HouseholdEnv, tasks, policy, batch_size=3, on_episode=on_episode, show_progress=False
    )
    assert policy.waited and all(policy.waited)
    assert ended[-1] == tasks[0]
    assert set(policy.calls) == {1}, "one episode per call"
    assert [e.to_record() for e in served] == [e.to_record() for e in sequential]
    lockstep = run_episodes(
        HouseholdEnv, tasks, ServedPlanner(), batch_size=3, independent=False, show_progress=False
    )
    assert [e.to_record() for e in lockstep] == [e.to_record() for e in sequential]


def test_crashes_end_only_their_episode_when_episodes_advance_on_their_own() -> None:
    episodes = run_episodes(CrashingHousehold, TASKS, ServedPlanner(), batch_size=3, show_progress=False)
    errors = {e.task_id for e in episodes if e.error}
    assert errors == {"valid/0001", "valid/0002", "valid/0004"}
    assert all(e.success for e in episodes if e.task_id not in errors)
    starts = run_episodes(FailingFirstResets, TASKS, ServedPlanner(), batch_size=3, show_progress=False)
    assert [bool(e.error) for e in starts] == [True, True, True, False, False, False]


def test_a_failing_policy_stops_every_episode_thread() -> None:
    before = threading.active_count()
    ended: list[Episode] = []
    with pytest.raises(RuntimeError, match="stopped answering"):
        run_episodes(
            HouseholdEnv,
            [f"valid/{i:04d}" for i in range(20)],
            ServedPlanner(fail_on=("valid/0002", 1)),
            batch_size=4,
            on_episode=ended.append,
            show_progress=False,
        )
    assert threading.active_count() == before
    assert len(ended) < 20


def test_models_on_servers_make_concurrent_policies(tiny_model) -> None:
    from leap.models.openai_backend import OpenAIChatModel

    assert not LLMPolicy(tiny_model).concurrent
    served = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1")
    assert LLMPolicy(served).concurrent and not PlannerPolicy().concurrent
