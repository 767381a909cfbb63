"""ALFWorld on the real alfworld 0.4.2 text engine, with real games from ../shared/data/alfworld."""

from __future__ import annotations

import collections
import os
import time
from pathlib import Path

import pytest
from shared_data import needs_data

from leap.envs import make_env
from leap.envs.alfred.text import parse_task_text
from leap.envs.alfworld import AlfworldEnv
from leap.envs.alfworld.experts import HandcodedExpertPolicy
from leap.envs.alfworld.tasks import MissingGamesError, resolve_games_root
from leap.envs.household.experts import PlannerPolicy
from leap.rollout import run_episodes
from leap.teachers.leakage import find_leaks

pytestmark = needs_data("alfworld")

LOOK_GAME = "valid_seen/look_at_obj_in_light-AlarmClock-None-DeskLamp-323/trial_T20190909_044715_250790"


@pytest.fixture(scope="module")
def alfworld() -> AlfworldEnv:
    env = make_env("alfworld")
    assert isinstance(env, AlfworldEnv)
    yield env
    env.close()


@pytest.fixture(scope="module")
def one_game_per_type(alfworld: AlfworldEnv) -> list[str]:
    """The first valid_seen game of each of the six task types."""
    chosen: dict[str, str] = {}
    for task_id in alfworld.task_ids("valid_seen"):
        chosen.setdefault(alfworld.category(task_id), task_id)
    assert sorted(chosen) == ["clean", "cool", "heat", "look", "pick", "pick two"]
    return list(chosen.values())


def test_splits_and_categories(alfworld: AlfworldEnv) -> None:
    sizes = {split: len(ids) for split, ids in alfworld.splits().items()}
    assert sizes == {"train": 3553, "valid_seen": 140, "valid_train": 200}
    counts = collections.Counter(alfworld.category(t) for t in alfworld.task_ids("valid_seen"))
    # the paper's table 1 per-type counts for the in-distribution split
    assert counts == {"pick": 35, "clean": 27, "heat": 16, "cool": 25, "look": 13, "pick two": 24}
    assert alfworld.category(LOOK_GAME) == "look"
    first = [alfworld.category(t) for t in alfworld.task_ids("train")[:30]]
    assert len(set(first)) >= 5, "the split order should mix task types"


def test_reset_observation_and_admissible_commands(alfworld: AlfworldEnv) -> None:
    first = alfworld.reset(LOOK_GAME)
    assert first.observation.startswith("You are in the middle of a room. Looking quickly around you")
    assert "Welcome to TextWorld" not in first.observation and "Your task is to" not in first.observation
    assert alfworld.task == "look at alarmclock under the desklamp."
    choices = alfworld.action_space().choices
    assert "go to desk 1" in choices and "inventory" in choices and "look" in choices
    # an inadmissible action is a no-op
    result = alfworld.step("take the moon")
    assert result.observation == "Nothing happens." and not result.done
    assert alfworld.action_space().choices == choices
    result = alfworld.step("go to desk 1")
    assert result.observation.startswith("You arrive at desk 1. On the desk 1, you see")
    assert "alarmclock 2" in result.observation
    assert "take alarmclock 2 from desk 1" in alfworld.action_space().choices


def test_privileged_state_names_true_locations(alfworld: AlfworldEnv, one_game_per_type) -> None:
    """Go where the privileged state says each essential object is: it must be there."""
    for task_id in one_game_per_type:
        alfworld.reset(task_id)
        state = alfworld.privileged_state(plan=False)  # replanning is slow on some games
        data = state.data
        assert data["task"] == alfworld.task and data["plan"] is None, task_id
        assert data["objects"], task_id
        assert state.secrets and "Optimal remaining actions:" in state.text
        obj = data["objects"][0]
        at = obj["location"]
        seen = alfworld.step(f"go to {at}").observation
        if obj["closed"]:
            assert "is closed" in seen
            seen = alfworld.step(f"open {at}").observation
        assert obj["name"] in seen, (task_id, obj, seen)
    alfworld.reset(LOOK_GAME)
    state = alfworld.privileged_state()
    where = {o["name"]: o["location"] for o in state.data["objects"]}
    assert where["alarmclock 2"] == "desk 1" and where["desklamp 1"] == "desk 1"
    assert state.data["plan"][0] == "go to desk 1" and "go to desk 1 >" in state.text


def test_planner_wins_its_games(alfworld: AlfworldEnv) -> None:
    # games whose fast-downward plans take well under a second (some take tens of seconds; the
    # full valid_seen evaluation is in the README)
    games = sorted(alfworld.task_ids("valid_seen"))[10:16]
    assert {alfworld.category(g) for g in games} == {"look", "pick"}
    episodes = run_episodes(
        lambda: make_env("alfworld"), games, PlannerPolicy(), batch_size=3, show_progress=False
    )
    for episode in episodes:
        assert episode.error is None and episode.success, (episode.task_id, episode.error)
        assert episode.n_actions <= 30 and episode.n_invalid == 0


def test_handcoded_expert_gives_usable_demonstrations(alfworld: AlfworldEnv, one_game_per_type) -> None:
    episodes = run_episodes(
        lambda: make_env("alfworld"),
        one_game_per_type,
        HandcodedExpertPolicy(),
        batch_size=6,
        show_progress=False,
    )
    assert all(e.error is None for e in episodes)
    won = [e for e in episodes if e.success]
    assert len(won) >= 4, [(e.task_id, e.n_actions) for e in episodes]
    for episode in won:
        assert parse_task_text(episode.task) is not None, episode.task
        assert all(s.valid for s in episode.steps[1:]), episode.task_id
        assert all(s.reason and s.action for s in episode.steps)
        # its reasons appeal to observations and priors: the leakage audit finds nothing
        alfworld.reset(episode.task_id)
        secrets = alfworld.privileged_state().secrets
        seen = ""
        for step in episode.steps:
            seen += step.observation
            assert not find_leaks(step.reason, secrets, seen), (episode.task_id, step.reason)


def test_every_valid_seen_task_text_parses(alfworld: AlfworldEnv) -> None:
    """The household teacher and searcher read ALFWorld's goals with the same parser."""
    texts = []
    for task_id in alfworld.task_ids("valid_seen")[:12]:
        alfworld.reset(task_id)
        texts.append(alfworld.task)
    assert all(parse_task_text(t) is not None for t in texts), [t for t in texts if not parse_task_text(t)]


def test_prepared_games_are_ready_for_reset(alfworld: AlfworldEnv) -> None:
    env = make_env("alfworld")
    try:
        target = alfworld.task_ids("valid_train")[0]
        before = env.worker_stats()
        env.prepare(target)
        deadline = time.monotonic() + 60
        while env.worker_stats()["loads"] == before["loads"] and time.monotonic() < deadline:
            time.sleep(0.2)
        env.reset(target)
        after = env.worker_stats()
        assert after["prepared_hits"] == before["prepared_hits"] + 1
        assert after["loads"] == before["loads"] + 1  # loaded once, by the prepare
        env.reset(target)  # the same game again: reused, not loaded
        assert env.worker_stats()["reused"] == after["reused"] + 1
    finally:
        env.close()


def test_a_dead_worker_ends_only_its_episode(one_game_per_type) -> None:
    envs: list[AlfworldEnv] = []

    def factory() -> AlfworldEnv:
        env = make_env("alfworld")
        envs.append(env)
        return env

    class KillingExpert(HandcodedExpertPolicy):
        killed = False

        def act(self, views):
            if not self.killed and any(v.history for v in views):
                self.killed = True
                os.kill(envs[0].worker_stats()["pid"], 9)
            return super().act(views)

    episodes = run_episodes(
        factory, one_game_per_type[:4], KillingExpert(), batch_size=4, show_progress=False
    )
    errored = [e for e in episodes if e.error]
    assert errored and all("worker" in e.error for e in errored)
    survivors = [e for e in episodes if not e.error]
    assert survivors and all(e.n_actions > 1 for e in survivors)
    # the pool replaces the dead worker for new environments
    fresh = make_env("alfworld")
    assert fresh.reset(one_game_per_type[0]).observation
    fresh.close()


def test_user_data_with_valid_unseen(tmp_path: Path, alfworld: AlfworldEnv) -> None:
    """A user's own data root: any of the four split names, valid_unseen included."""
    source = alfworld.root / "valid_seen"
    games = sorted(source.glob("*/*"))[:3]
    for trial in games:
        target = tmp_path / "json_2.1.1" / "valid_unseen" / trial.parent.name / trial.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(trial)
    env = make_env("alfworld", data_dir=tmp_path)
    try:
        assert list(env.splits()) == ["valid_unseen"]
        task_id = env.task_ids("valid_unseen")[0]
        assert task_id.startswith("valid_unseen/")
        assert env.reset(task_id).observation.startswith("You are in the middle of a room")
    finally:
        env.close()


def test_clear_error_without_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(MissingGamesError, match="alfworld-download"):
        resolve_games_root(tmp_path / "nowhere")
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    with pytest.raises(MissingGamesError, match=str(tmp_path)):
        make_env("alfworld")


def test_teacher_at_25_does_not_take_objects_the_student_has_not_seen(alfworld: AlfworldEnv) -> None:
    """In this game desk 1 and drawer 1 share one spot: from drawer 1 the planner takes book 3 off
    the desk although the student has only seen the drawer. At 50 % the audit flags that; at 25 %
    the teacher must not choose it."""
    from leap.envs.alfworld.teacher import AlfworldTeacherPolicy
    from leap.policy import AgentView, Turn
    from leap.teachers.leakage import audit

    task_id = "train/look_at_obj_in_light-Book-None-DeskLamp-304/trial_T20190908_083428_569431"
    obs = alfworld.reset(task_id).observation
    turns = []
    for action in ("look", "go to garbagecan 1", "go to drawer 1"):
        turns.append(Turn(obs, "r", action))
        obs = alfworld.step(action).observation
    assert "book" not in obs
    view = AgentView(
        "e", alfworld.task, obs, alfworld.action_space(), tuple(turns), alfworld.privileged_state()
    )
    at_50 = AlfworldTeacherPolicy(50).act([view])[0]
    assert at_50.action == "take book 3 from desk 1" and audit(at_50.reason, view)
    at_25 = AlfworldTeacherPolicy(25).act([view])[0]
    assert not at_25.action.startswith("take book") and not audit(at_25.reason, view)
