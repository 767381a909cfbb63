"""Prompt rendering, REASON/ACTION parsing and action matching."""

from __future__ import annotations

import random

import jinja2
import pytest

from leap import agents
from leap.agents import LLMPolicy, PromptSettings, match_action, parse_reply, prompt_sha, render_prompt
from leap.envs import ActionSpace, FreeFormRule, make_env
from leap.envs.household import HouseholdEnv
from leap.policy import AgentView, Turn

SPACE = ActionSpace(choices=("go to cabinet 1", "open drawer 2", "take mug 1 from countertop 1", "look"))


@pytest.mark.parametrize(
    ("reply", "reason", "action", "well_formed"),
    [
        ("REASON: I need a mug.\nACTION: go to cabinet 1", "I need a mug.", "go to cabinet 1", True),
        ("REASON: find it. ACTION: look", "find it.", "look", True),
        ("reason: lower case\naction: open drawer 2", "lower case", "open drawer 2", True),
        ("**Reason:** bold\n**Action:** `look`", "bold", "look", True),
        ("Sure! Here you go.\nREASON: a\nACTION: look\nI hope this helps.", "a", "look", True),
        ("Thought: think first\nAction: look", "think first", "look", True),
        ("ACTION: go to cabinet 1", "", "go to cabinet 1", False),
        ("REASON: only a reason", "only a reason", "", False),
        ("go to cabinet 1", "", "go to cabinet 1", False),
        ("", "", "", False),
        ("REASON:\nACTION:", "", "", True),
        ("ACTION: look\nACTION: go to cabinet 1", "", "look", False),
    ],
)
def test_parse_reply(reply: str, reason: str, action: str, well_formed: bool) -> None:
    parsed = parse_reply(reply)
    assert (parsed.reason, parsed.action, parsed.well_formed) == (reason, action, well_formed)


@pytest.mark.parametrize(
    ("text", "expected", "matched"),
    [
        ("go to cabinet 1", "go to cabinet 1", True),
        ("Go To Cabinet 1.", "go to cabinet 1", True),
        ("  go   to cabinet 1 ", "go to cabinet 1", True),
        ("> open drawer 2", "open drawer 2", True),
        ('"take mug 1 from countertop 1"', "take mug 1 from countertop 1", True),
        ("go to cabinet 9", "go to cabinet 9", False),
        ("", "", False),
    ],
)
def test_match_action(text: str, expected: str, matched: bool) -> None:
    assert match_action(text, SPACE) == (expected, matched)


def test_match_free_form() -> None:
    space = ActionSpace(choices=("click[buy now]",), free_form=FreeFormRule(r"search\[.+\]", "search[QUERY]"))
    assert match_action("Click[Buy Now]", space) == ("click[buy now]", True)
    assert match_action("search[red running shoes]", space) == ("search[red running shoes]", True)
    assert match_action("search[]", space) == ("search[]", False)


def _views(n: int) -> list[AgentView]:
    env = make_env("household")
    views = []
    for i in range(n):
        first = env.reset(f"valid/{i:04d}")
        views.append(AgentView(f"valid/{i:04d}", env.task, first.observation, env.action_space()))
    return views


def _planned_view(task_id: str, n_steps: int) -> tuple[HouseholdEnv, list[Turn], str, AgentView]:
    """A household task after the planner's first ``n_steps`` actions."""
    env = make_env("household")
    turns, obs = [], env.reset(task_id).observation
    for action in env.privileged_state().data["plan"][:n_steps]:
        turns.append(Turn(obs, "r", action))
        obs = env.step(action).observation
    return env, turns, obs, AgentView("e", env.task, obs, env.action_space(), tuple(turns))


def test_prompt_contains_task_history_and_candidates() -> None:
    env, turns, obs, view = _planned_view("valid/0003", 3)
    system, user = render_prompt(view, PromptSettings(style="react", history_steps=2, earlier_actions=0))
    assert system["role"] == "system" and "REASON:" in system["content"] and "ACTION:" in system["content"]
    content = user["content"]
    assert content.startswith(f"Task: {env.task}")
    assert "(1 earlier steps omitted)" in content
    assert f"> {turns[1].action}" in content and f"> {turns[2].action}" in content
    assert f"> {turns[0].action}" not in content
    assert obs in content
    assert "Actions: " + ", ".join(env.action_space().choices) in content
    student = render_prompt(view, PromptSettings(style="student", history_steps=2, earlier_actions=0))
    assert student[1] == user and len(student[0]["content"]) < len(system["content"])
    assert prompt_sha(student) != prompt_sha([system, user])
    with pytest.raises(ValueError, match="unknown prompt style"):
        PromptSettings(style="fancy")


def test_older_actions_are_listed_by_name() -> None:
    _, turns, _, view = _planned_view("valid/0004", 5)
    content = render_prompt(view, PromptSettings(history_steps=2, earlier_actions=2))[1]["content"]
    assert "(1 earlier steps omitted)" in content
    assert f"Earlier actions: {turns[1].action}; {turns[2].action}\n" in content
    assert f"> {turns[3].action}" in content and f"> {turns[4].action}" in content


def test_candidate_list_can_be_left_out_of_the_prompt() -> None:
    _, _, obs, view = _planned_view("valid/0003", 2)
    without = render_prompt(view, PromptSettings(list_actions=False))[1]["content"]
    assert "Actions:" not in without and without.endswith(obs)
    assert "Actions: " in render_prompt(view, PromptSettings())[1]["content"]


def test_observations_are_clipped() -> None:
    view = AgentView("e", "t", "x" * 1000, SPACE)
    content = render_prompt(view, PromptSettings(max_observation_chars=100))[1]["content"]
    assert "x" * 97 + "..." in content and "x" * 98 not in content


def test_llm_policy_decides_for_every_view(tiny_model) -> None:
    views = _views(3)
    policy = LLMPolicy(tiny_model, max_new_tokens=8)
    decisions = policy.act(views)
    assert len(decisions) == 3
    for view, d in zip(views, decisions, strict=True):
        assert d.prompt_sha == prompt_sha(render_prompt(view, policy.prompt))
        assert d.raw  # the random model says something
        assert d.extra["matched"] == (d.action in view.action_space.choices)


def test_turns_layout_is_a_transcript_that_grows_by_one_turn() -> None:
    settings = PromptSettings(style="student", layout="turns", history_steps=20, list_actions=False)
    env, turns, obs, view = _planned_view("valid/0003", 3)
    messages = render_prompt(view, settings)
    assert [m["role"] for m in messages] == ["system", "user"] + ["assistant", "user"] * 3
    assert messages[1]["content"].startswith(f"Task: {env.task}")
    assert messages[2]["content"] == f"REASON: r\nACTION: {turns[0].action}"
    assert messages[-1]["content"] == obs
    _, _, _, shorter = _planned_view("valid/0003", 2)
    assert render_prompt(shorter, settings) == messages[:-2]
    # the candidates, when listed, follow the current observation only
    listed = render_prompt(view, PromptSettings(layout="turns", history_steps=20))
    assert listed[-1]["content"].endswith(", ".join(env.action_space().choices))
    assert sum("Actions:" in m["content"] for m in listed) == 1
    # a short history window says how many steps it left out
    window = render_prompt(view, PromptSettings(layout="turns", history_steps=1, list_actions=False))
    assert len(window) == 4 and "(2 earlier steps omitted)" in window[1]["content"]
    with pytest.raises(ValueError, match="unknown prompt layout"):
        PromptSettings(layout="tree")


@pytest.mark.parametrize(
    "settings",
    [
        PromptSettings(layout="turns", history_steps=20, memory="places"),
        PromptSettings(layout="turns", history_steps=3, list_actions=False),
    ],
)
def test_remembered_turns_render_the_prompts_rendered_afresh(settings, monkeypatch) -> None:
    """Past turns come from the memo at later steps; every prompt is the one rendered without it
    (candidates listed under the current turn only, memory notes, a window of recent turns)."""
    env = make_env("household")
    rng = random.Random(0)
    views, turns, obs = [], [], env.reset("valid/0005").observation
    for _ in range(8):
        views.append(AgentView("e", env.task, obs, env.action_space(), tuple(turns)))
        action = rng.choice(env.action_space().choices)
        turns.append(Turn(obs, "why not", action))
        obs = env.step(action).observation
    agents._RENDERED.clear()
    remembered = [render_prompt(v, settings) for v in views]
    assert agents._RENDERED
    monkeypatch.setattr(agents, "REMEMBER_RENDERS", False)
    assert remembered == [render_prompt(v, settings) for v in views]


def test_a_remembered_render_depends_on_every_variable_the_template_reads() -> None:
    env = jinja2.Environment(
        loader=jinja2.DictLoader({"t.j2": "{{ x }}|{{ y | join(',') }}", "i.j2": "{% include 't.j2' %}"}),
        undefined=jinja2.StrictUndefined,
    )
    template = env.get_template("t.j2")
    agents._RENDERED.clear()
    assert agents.render_remembered(template, {"x": 1, "y": ["a"], "unread": 1}) == "1|a"
    # a variable the template does not read: the remembered text
    assert agents.render_remembered(template, {"x": 1, "y": ["a"], "unread": 2}) == "1|a"
    assert len(agents._RENDERED) == 1
    # equal as Python values, rendered differently
    assert agents.render_remembered(template, {"x": True, "y": ("a",)}) == "True|a"
    assert agents.render_remembered(template, {"x": 1.0, "y": ["a", "b"]}) == "1.0|a,b"
    assert agents.render_remembered(template, {"x": {1}, "y": []}) == "{1}|"  # not a key: rendered
    with pytest.raises(jinja2.UndefinedError):
        agents.render_remembered(template, {"x": 1})
    # what an included template reads is not in the source: never remembered
    assert agents._template_reads(env.get_template("i.j2")) is None
    assert agents.render_remembered(env.get_template("i.j2"), {"x": 2, "y": []}) == "2|"
    assert not any(key[0] == "i.j2" for key in agents._RENDERED)
