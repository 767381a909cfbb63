"""The student served by a real vLLM server (``student.engine: vllm``): the same greedy replies as
leap's own engine, adapters loaded under versioned names, a run end to end with a kill and a
resume, a server that dies mid-run, and no server process left behind by anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_loop import TINY
from test_resume_kill import _start

from leap.agents import PromptSettings, render_prompt
from leap.envs import make_env
from leap.models.base import ChoiceConstraint
from leap.models.vllm_backend import VENV, ServedChatModel, ServerError, VLLMServer, server_lora_rank
from leap.policy import AgentView

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (VENV / "bin" / "python").exists() and not os.environ.get("LEAP_VLLM_PYTHON"),
        reason="needs the vLLM server's environment: bash scripts/setup.sh --vllm",
    ),
]


def server_processes() -> list[str]:
    """Command lines of the vLLM server processes alive on this machine (leap's guard starts
    them; vLLM's engine processes carry its module in their command line or their title)."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [
        line.strip()
        for line in out.splitlines()
        if ("vllm.entrypoints" in line or "VLLM::" in line or "EngineCore" in line) and "ps -eo" not in line
    ]


def wait_gone(seconds: float = 30.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := server_processes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


@pytest.fixture(autouse=True)
def no_server_left_behind():
    assert not server_processes(), "a vLLM server was running before the test"
    yield
    left = wait_gone()
    assert not left, f"server processes left behind: {left}"


def household_prompts(n: int) -> list[tuple[list[dict[str, str]], tuple[str, ...]]]:
    """The student's first prompts on ``n`` household validation tasks, with their candidate
    actions."""
    env = make_env("household")
    prompts = []
    settings = PromptSettings(style="student", layout="turns", list_actions=False)
    for task in env.task_ids("valid")[:n]:
        result = env.reset(task)
        view = AgentView(task, env.task, result.observation, env.action_space())
        prompts.append((render_prompt(view, settings), env.action_space().choices))
    env.close()
    return prompts


def random_adapter(base: str, out: Path) -> Path:
    """A LoRA adapter on ``base`` whose B matrices are random (PEFT starts them at zero, which
    would change nothing), so that its replies differ from the base model's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base, torch_dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def smollm2_dir() -> str:
    from leap.models.registry import resolve_model_path

    return resolve_model_path("smollm2-135m")


def test_served_replies_equal_leap_engine_greedy(smollm2_dir, tmp_path) -> None:
    """Greedy replies of the served base model and of a loaded adapter equal leap's
    transformers engine on household prompts, free and constrained (the free part up to a
    marker, then one of the candidate actions)."""
    from leap.models.transformers_backend import TransformersChatModel

    prompts = household_prompts(6)
    conversations = [c for c, _ in prompts]
    adapter = random_adapter(smollm2_dir, tmp_path / "adapter")
    local_base = TransformersChatModel(smollm2_dir, dtype="float32", device="cpu", batch_size=8)
    local_adapter = TransformersChatModel(smollm2_dir, adapter=str(adapter), dtype="float32", device="cpu")

    with VLLMServer(smollm2_dir, dtype="float32", max_lora_rank=8, startup_timeout=900) as server:
        assert server_lora_rank(4) == 8 and server_lora_rank(16) == 16
        for local, name in ((local_base, "leap-base"), (local_adapter, "leap-it1")):
            if name != "leap-base":
                server.load_adapter(name, adapter)
                server.load_adapter(name, adapter)  # the same adapter again: nothing to do
            served = ServedChatModel(server, name, smollm2_dir)
            free_local = local.generate(conversations, max_new_tokens=24)
            free_served = served.generate(conversations, max_new_tokens=24)
            assert [g.text for g in free_served] == [g.text for g in free_local], name
            assert all(g.error is None and g.completion_tokens > 0 for g in free_served)
            # constrained: the marker is a piece of each free reply, so both parts are decoded
            constraints = [
                ChoiceConstraint(g.text.split()[0] if g.text.split() else "", choices)
                for g, (_, choices) in zip(free_local, prompts, strict=True)
            ]
            ruled_local = local.generate(conversations, max_new_tokens=24, constraints=constraints)
            ruled_served = served.generate(conversations, max_new_tokens=24, constraints=constraints)
            assert [g.text for g in ruled_served] == [g.text for g in ruled_local], name
            for g, rule in zip(ruled_served, constraints, strict=True):
                assert g.text.split(rule.marker, 1)[-1].strip() in rule.choices, (g.text, rule.marker)
            # the whole reply as a choice (an empty marker)
            whole = [ChoiceConstraint("", choices) for _, choices in prompts]
            assert [g.text for g in served.generate(conversations, max_new_tokens=16, constraints=whole)] == [
                g.text for g in local.generate(conversations, max_new_tokens=16, constraints=whole)
            ]
            if name == "leap-base":
                base_replies = [g.text for g in free_served]
        assert [g.text for g in free_served] != base_replies, "the adapter changed no reply"
        with pytest.raises(ServerError, match="taken"):
            server.load_adapter("leap-it1", tmp_path)
        server.keep_only(["leap-base"])
        assert server.adapters == {}
        process = server.process
    assert process is not None and process.poll() is not None


@pytest.fixture(scope="module")
def tiny_head64(tmp_path_factory) -> str:
    """A 2-layer Llama with random weights like tiny-random, but with heads of 64 dimensions:
    vLLM's CPU attention has no kernel for tiny-random's 16."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from leap.models.registry import smollm2_tokenizer_dir

    out = tmp_path_factory.mktemp("tiny-head64")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
        tie_word_embeddings=True, initializer_range=0.1, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _run_config(tmp_path: Path, name: str, model: str) -> Path:
    data = json.loads(json.dumps(TINY))
    data.update(name=name, output_dir=str(tmp_path))
    data["student"].update(model=model, engine="vllm", temperature=0.0, constrain_actions=True)
    data["loop"] = {"iterations": 1, "rollouts_per_iteration": 3, "matched_bc": True}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _wait_for(predicate, proc: subprocess.Popen, log: Path, seconds: float = 900.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_served_run_survives_a_kill_and_a_dead_server(tmp_path, tiny_head64) -> None:
    """A tiny ``leap run`` with the served student: killed with SIGKILL once its server is up
    (the server goes with it), resumed; its server killed mid-run (one-line error), resumed
    again; it ends with every stage done and no server left."""
    config, run = _run_config(tmp_path, "served", tiny_head64), tmp_path / "served"

    first = _start(config, tmp_path / "first.log")
    _wait_for(
        lambda: server_processes() and (run / "iter_0" / "eval_valid").exists(), first, tmp_path / "first.log"
    )
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert not wait_gone(), "the server outlived the run killed with SIGKILL"

    second = _start(config, tmp_path / "second.log")
    log = tmp_path / "second.log"
    _wait_for(lambda: (run / "iter_1").exists() and server_processes(), second, log)
    for line in server_processes():  # the server dies under the run
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert second.wait(timeout=600) != 0
    last = [ln for ln in log.read_text().splitlines() if ln.strip()][-1]
    assert "vllm" in last and "Traceback" not in log.read_text(), log.read_text()[-2000:]
    assert not wait_gone()

    third = _start(config, tmp_path / "third.log")
    assert third.wait(timeout=1200) == 0, (tmp_path / "third.log").read_text()[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert [r["iteration"] for r in summary["iterations"]] == [0, 1]
    assert summary["matched_bc"]["n_episodes"] == 3
    text = (tmp_path / "third.log").read_text()
    assert "vllm" in text
    # the three servers' output, one after another, in the run directory
    assert (run / "vllm-server.log").read_text().count("Starting vLLM") >= 3


def test_rollout_benchmark_compares_the_served_student(tmp_path) -> None:
    """``benchmarks/rollout_throughput.py --modes lockstep,served,served-lockstep``: both engines
    roll out the same episodes with the same greedy replies (fp32), the served ones episode by
    episode and in lockstep, the server's start-up timed apart."""
    out = tmp_path / "rollouts.json"
    subprocess.run(
        [
            sys.executable, str(Path(__file__).parents[1] / "benchmarks" / "rollout_throughput.py"),
            "--model", "smollm2-135m", "--random-weights", "--dtype", "float32",
            "--episodes", "3", "--horizon", "2", "--modes", "lockstep,served,served-lockstep",
            "--json", str(out),
        ],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    local = results["lockstep"]
    for served in (results["served"], results["served-lockstep"]):
        assert served["episodes"] == local["episodes"] == 3 and served["steps_per_second"] > 0
        assert served["same_replies"] == local["env_steps"] and served["server_startup_s"] > 0
        assert served["mfu"] is None
    assert 0 < local["mfu"] < 1
