"""The OpenAI-compatible backend against real local HTTP servers."""

from __future__ import annotations

import pytest

from leap.agents import LLMPolicy
from leap.envs import make_env
from leap.models import ModelError, load_chat_model, resolve_model_path
from leap.models.openai_backend import OpenAIChatModel
from leap.rollout import run_episodes

from servers import ScriptedServer, free_port, transformers_serve

CONV = [{"role": "user", "content": "hello"}]


def test_retries_rate_limits_then_succeeds() -> None:
    with ScriptedServer(fail_first=2, fail_status=429) as server:
        model = OpenAIChatModel("m", base_url=server.base_url, max_retries=3)
        [gen] = model.generate([CONV], max_new_tokens=5)
    assert gen.error is None and gen.text == "echo: hello"
    assert len(server.requests) == 3
    assert model.usage.to_dict() == {
        "requests": 1,
        "failures": 0,
        "prompt_tokens": 11,
        "completion_tokens": 3,
        "faults/rate_limited": 2,  # the two 429s, retried and not paid for
    }


def test_server_errors_are_retried_and_then_survived() -> None:
    with ScriptedServer(fail_first=100, fail_status=503) as server:
        model = OpenAIChatModel("m", base_url=server.base_url, max_retries=2)
        gens = model.generate([CONV, CONV], max_new_tokens=5)
    assert [g.text for g in gens] == ["", ""]
    assert all("503" in (g.error or "") for g in gens)
    assert len(server.requests) == 6  # 1 try + 2 retries, each
    assert model.usage.failures == 2


def test_dead_server_gives_errors_not_crashes() -> None:
    model = OpenAIChatModel("m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout=2)
    [gen] = model.generate([CONV])
    assert gen.text == "" and gen.error is not None and "Connection" in gen.error


def test_concurrency_is_limited_and_order_kept() -> None:
    with ScriptedServer(delay=0.15) as server:
        model = OpenAIChatModel("m", base_url=server.base_url, max_concurrency=3)
        conversations = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
        gens = model.generate(conversations, temperature=0.3, max_new_tokens=7, seed=5, stop=["\n\n"])
    assert [g.text for g in gens] == [f"echo: q{i}" for i in range(12)]
    assert 2 <= server.max_in_flight <= 3
    sent = server.requests[0]
    assert sent["temperature"] == 0.3 and sent["max_tokens"] == 7 and sent["seed"] == 5
    assert sent["stop"] == ["\n\n"]


def test_concurrency_limit_holds_over_episodes_that_advance_on_their_own() -> None:
    # the reply names a household action, so each episode runs its whole horizon
    with ScriptedServer(delay=0.05, responder=lambda body: "REASON: Look first.\nACTION: look") as server:
        model = OpenAIChatModel("m", base_url=server.base_url, max_concurrency=2)
        episodes = run_episodes(
            lambda: make_env("household"),
            [f"valid/{i:04d}" for i in range(6)],
            LLMPolicy(model, max_new_tokens=24),
            horizon=3,
            batch_size=6,  # six episodes in flight, one request each at a time
            show_progress=False,
        )
    assert all(e.n_actions == 3 and e.error is None for e in episodes)
    assert all(s.action == "look" and s.valid for e in episodes for s in e.steps)
    assert len(server.requests) == 18 and server.max_in_flight == 2


def test_api_key_comes_from_the_named_variable(monkeypatch) -> None:
    monkeypatch.delenv("LEAP_TEST_KEY", raising=False)
    with pytest.raises(ModelError, match="LEAP_TEST_KEY is not set"):
        OpenAIChatModel("gpt-4o", api_key_env="LEAP_TEST_KEY")
    monkeypatch.setenv("LEAP_TEST_KEY", "sk-test")
    assert OpenAIChatModel("gpt-4o", api_key_env="LEAP_TEST_KEY").client.api_key == "sk-test"
    with pytest.raises(ModelError, match="do not score"):
        OpenAIChatModel("gpt-4o", api_key_env="LEAP_TEST_KEY").score([CONV], ["x"])


@pytest.mark.slow
def test_real_transformers_server_with_smollm2() -> None:
    model_dir = resolve_model_path("smollm2-135m")
    with transformers_serve(model_dir) as base_url:
        model = load_chat_model(f"openai:{model_dir}", base_url=base_url, max_concurrency=2)
        [gen] = model.generate(
            [[{"role": "user", "content": "What is 2+2? Answer briefly."}]], max_new_tokens=16
        )
        assert gen.error is None and "4" in gen.text
        assert model.usage.completion_tokens > 0 and model.usage.prompt_tokens > 0
        # the student policy runs over the server exactly as over a local model
        episodes = run_episodes(
            lambda: make_env("household"),
            ["valid/0000", "valid/0001"],
            LLMPolicy(model, max_new_tokens=24),
            horizon=2,
            show_progress=False,
        )
    assert all(e.n_actions == 2 and e.error is None for e in episodes)
    assert all(s.raw for e in episodes for s in e.steps)
