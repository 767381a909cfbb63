"""The served student's client side, against a small stand-in for vLLM's HTTP API (the real
server is tested in test_vllm.py): what is asked of the server, in which order, and what a run
does with adapters and a server that stops answering."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler

import pytest

from leap.models.base import ChoiceConstraint
from leap.models.vllm_backend import (
    BASE_NAME,
    ServedChatModel,
    ServerError,
    VLLMServer,
    cpu_server_env,
    server_lora_rank,
)

from servers import _LocalServer


class FakeVLLM(_LocalServer):
    """/health, /v1/load_lora_adapter, /v1/unload_lora_adapter and /v1/completions: a free
    completion writes "I look. ACTION:" (cut at a stop string if one occurs in it), a
    structured one the first choice."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.loaded: set[str] = set()
        self.healthy = True
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200 if server.healthy else 503, {})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append((self.path, body))
                if not server.healthy:
                    self._send(503, {"error": {"message": "down"}})
                elif self.path == "/v1/load_lora_adapter":
                    server.loaded.add(body["lora_name"])
                    self._send(200, {})
                elif self.path == "/v1/unload_lora_adapter":
                    server.loaded.discard(body["lora_name"])
                    self._send(200, {})
                else:
                    self._send(200, server.complete(body))

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._listen(Handler)

    def complete(self, body: dict) -> dict:
        allowed, token_ids = body.get("allowed_token_ids"), None
        if allowed:  # one token: the first one allowed
            text, finish, token_ids = "?", "length", allowed[:1]
        else:
            text, finish = "I look. ACTION: and more", "length"
            for stop in body.get("stop") or []:
                if stop in text:
                    text, finish = text[: text.index(stop) + len(stop)], "stop"
        return {
            "id": "x",
            "object": "text_completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {"index": 0, "text": text, "finish_reason": finish, "logprobs": None, "token_ids": token_ids}
            ],
            "usage": {"prompt_tokens": len(body["prompt"]), "completion_tokens": 3, "total_tokens": 0},
        }


@pytest.fixture
def fake():
    with FakeVLLM() as server:
        yield server


def test_constrained_reply_is_two_requests_and_one_of_the_choices(fake, tiny_model_path) -> None:
    server = VLLMServer(tiny_model_path, base_url=fake.base_url).start()
    model = ServedChatModel(server, BASE_NAME, tiny_model_path)
    conversation = [{"role": "user", "content": "Where is the mug?"}]
    rule = ChoiceConstraint("ACTION:", ("go to desk 1", "open drawer 2"))
    whole_rule = ChoiceConstraint("", rule.choices)
    free, ruled, whole = (
        model.generate([conversation], max_new_tokens=10)[0],
        model.generate([conversation], max_new_tokens=10, constraints=[rule])[0],
        model.generate([conversation], max_new_tokens=10, constraints=[whole_rule])[0],
    )
    assert free.text == "I look. ACTION: and more" and free.error is None
    tokens = model.tokenizer([" go to desk 1", " open drawer 2"], add_special_tokens=False)["input_ids"]
    assert ruled.text == "I look. ACTION: go to desk 1"
    assert ruled.completion_tokens == 3 + len(tokens[0])  # the free part's, then the choice's
    assert whole.text == " go to desk 1"
    bodies = [b for path, b in fake.requests if path == "/v1/completions"]
    # free; the free part up to the marker, then the trie's one branching (its first token);
    # the choice alone: the branching again
    assert len(bodies) == 4
    prompt = model.encode(conversation)
    assert bodies[0]["prompt"] == prompt and bodies[0]["model"] == BASE_NAME
    assert bodies[1]["stop"] == ["ACTION:"] and bodies[1]["include_stop_str_in_output"]
    # the choice continues the prompt with the free part's tokens
    written = model.tokenizer("I look. ACTION:", add_special_tokens=False)["input_ids"]
    assert bodies[2]["prompt"] == prompt + written and bodies[2]["max_tokens"] == 1
    assert bodies[2]["allowed_token_ids"] == [tokens[0][0], tokens[1][0]]
    assert bodies[3]["prompt"] == prompt
    server.stop()  # the user's server: nothing to stop
    assert fake.healthy


def test_adapters_get_names_and_a_dead_server_is_one_error(fake, tiny_model_path) -> None:
    server = VLLMServer(tiny_model_path, base_url=fake.base_url).start()
    assert server.load_adapter("leap-it1", tiny_model_path) == "leap-it1"
    server.load_adapter("leap-it1", tiny_model_path)  # again: no request
    assert [p for p, _ in fake.requests].count("/v1/load_lora_adapter") == 1
    with pytest.raises(ServerError, match="taken"):
        server.load_adapter("leap-it1", "/elsewhere")
    server.load_adapter("leap-it2", "/tmp")
    server.keep_only(["leap-it2"])
    assert fake.loaded == {"leap-it2"} and list(server.adapters) == ["leap-it2"]
    assert server_lora_rank(4) == 8 and server_lora_rank(16) == 16 and server_lora_rank(33) == 64
    with pytest.raises(ServerError, match="largest"):
        server_lora_rank(1024)
    # a server leap started and that stops answering: the batch ends in one ServerError
    model = ServedChatModel(server, "leap-it2", tiny_model_path, max_retries=0)
    server.external = False
    fake.healthy = False
    with pytest.raises(ServerError, match="stopped answering"):
        model.generate([[{"role": "user", "content": "x"}]], max_new_tokens=4)
    server.external = True


def test_run_parts_name_each_iteration_adapter(fake, tmp_path, tiny_model_path) -> None:
    from test_loop import TINY

    from leap.builders import RunParts
    from leap.config import parse_config

    data = json.loads(json.dumps(TINY))
    data.update(name="served", output_dir=str(tmp_path))
    data["student"].update(engine="vllm", base_url=fake.base_url)
    config = parse_config(data)
    parts = RunParts(config, config.layout)
    for k in (0, 1):
        config.layout.adapter(k).mkdir(parents=True)
    assert parts.student_model(None).model == BASE_NAME
    first = parts.student_model(config.layout.adapter(0))
    assert first.model == "leap-it0" and parts.student_model(config.layout.adapter(0)) is first
    assert parts.student_model(config.layout.adapter(1)).model == "leap-it1"
    assert fake.loaded == {"leap-it1"}  # iteration 0's adapter is no longer needed
    config.layout.matched_bc.joinpath("adapter").mkdir(parents=True)
    assert parts.student_model(config.layout.matched_bc / "adapter").model == "leap-matched-bc"
    parts.close()
    assert fake.loaded == {"leap-matched-bc"}  # the user's server is left as it is, running


def test_cpu_server_computes_on_every_core_unless_the_user_bound_it() -> None:
    cores = sorted(os.sched_getaffinity(0))
    env = cpu_server_env({})
    # vLLM's CPU build would keep one core for its scheduler: half of a 2-core machine
    assert [int(c) for c in env["VLLM_CPU_OMP_THREADS_BIND"].split(",")] == cores
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert cpu_server_env({"VLLM_CPU_OMP_THREADS_BIND": "0"}) == {}


def test_cpu_server_caches_prompts_in_small_blocks_unless_told_otherwise(tiny_model_path) -> None:
    # vLLM's CPU build caches prefixes in blocks of 128 tokens by default: every request would
    # recompute up to 127 tokens it has seen, and a constrained action makes several requests
    def flags(extra: list[str]) -> list[str]:
        command = VLLMServer(tiny_model_path, python=sys.executable, extra_args=extra).command()
        return command[command.index("--model") :]

    default = flags([])
    assert default[default.index("--block-size") + 1] == "32"
    assert default[default.index("--gpu-memory-utilization") + 1] == "0.15"
    mine = flags(["--block-size", "64", "--gpu-memory-utilization", "0.3"])
    assert mine.count("--block-size") == 1 and mine[mine.index("--block-size") + 1] == "64"
    assert mine.count("--gpu-memory-utilization") == 1
    assert "--block-size" not in flags(["--block-size=16"])
