"""The speed benchmarks run end to end in CI size (tiny model, few steps) and report sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def _run(script: str, tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"{script}.json"
    subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / f"{script}.py"),
            "--model",
            "tiny-random",
            "--json",
            str(out),
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return json.loads(out.read_text())


@pytest.mark.slow
def test_train_throughput_compares_the_engines_with_the_matmul_peak(tmp_path) -> None:
    report = _run(
        "train_throughput",
        tmp_path,
        "--engines",
        "trl,leap,leap-batched,dpo",
        "--steps",
        "2",
        "--dpo-steps",
        "2",
        "--episodes",
        "3",
    )
    results = report["results"]
    assert set(results) == {"trl", "leap", "leap-batched", "dpo"}
    assert report["peak_flops"] > 1e9 and report["flops_per_token"] > 0
    for m in results.values():
        assert m["steps"] == 2 and m["tokens_per_s"] > 0 and 0 < m["mfu"] < 1
    # the same rows in the same order: the same tokens and the same first loss
    assert results["leap"]["tokens"] == results["trl"]["tokens"] == results["leap-batched"]["tokens"]
    # the step's four rows in one padded micro-batch, against four micro-batches of one row
    assert results["leap-batched"]["micro_batch_size"] == 4 and results["leap"]["micro_batch_size"] == 1
    batched = results["leap-batched"]
    assert batched["micro_batches"] == batched["steps"] < results["leap"]["micro_batches"]
    first = [results[name]["loss_curve"][0]["loss"] for name in ("trl", "leap")]
    assert first[0] == pytest.approx(first[1], rel=1e-2)
    assert results["leap"]["padding_share"] == 0 and results["leap"]["frozen_weights"] in ("bf16", "fp32")


def test_train_throughput_counts_the_padding_of_micro_batches(tmp_path) -> None:
    report = _run("train_throughput", tmp_path, "--padding", "--episodes", "6", "--batch-size", "4")
    shares = report["padding"]
    assert shares["rows"] == 4
    assert 0 < shares["lanes_padding_share"] < shares["padded_padding_share"] < 1
    assert 1 < shares["lanes_attention_per_pair"] < shares["padded_attention_per_pair"]
    # collating a micro-batch: the mask on the host or on the device, and the rows without it,
    # filled in arrays and (as before) from lists: the same tensors, checked by the benchmark
    assert set(shares["collation_ms"]) == {"host", "device", "rows", "rows_lists"}
    assert all(ms > 0 for ms in shares["collation_ms"].values())
    # lanes padded as train.compile: graphs pads them take no more shapes than unpadded lanes
    seen = shares["distinct_shapes"]
    assert 1 <= seen["graph_lanes"]["first_30"] <= seen["lanes"]["first_30"] <= 30
    assert seen["graph_lanes"]["all"] <= seen["lanes"]["all"] <= shares["draws"]
    # the trainer's FLOPs estimate: transformers' walks the parameters, leap's counted them once
    flops = shares["flops_estimate_ms"]
    assert set(flops) == {"transformers", "leap"} and flops["leap"] < flops["transformers"]


@pytest.mark.slow
def test_rollout_throughput_reports_steps_tokens_and_agreement(tmp_path) -> None:
    report = _run(
        "rollout_throughput",
        tmp_path,
        *("--episodes", "3", "--horizon", "2", "--dtype", "float32"),
        "--modes",
        "lockstep,lockstep-nocache,lockstep-static,lockstep-concat,lockstep-padded,lockstep-nocache-cudnn,"
        "lockstep-graphs",
        *("--repeats", "2"),
    )
    results = report["results"]
    for m in results.values():
        assert m["episodes"] == 3 and 0 < m["env_steps"] <= 6 and len(m["runs"]) == 2
        assert m["generated_per_second"] > 0 and 0 < m["mfu"] < 1
    # neither the prefix cache, nor a static cache, nor transformers' concatenating cache, nor one
    # padded prefill, nor the attention kernels' choice changes a greedy reply in fp32; the prefix
    # cache computes fewer tokens
    assert results["lockstep-nocache-cudnn"]["same_replies"] == results["lockstep"]["env_steps"]
    for mode in (
        "lockstep-nocache",
        "lockstep-static",
        "lockstep-concat",
        "lockstep-padded",
        "lockstep-graphs",
    ):
        assert results[mode]["same_replies"] == results["lockstep"]["env_steps"]
    # every generate call (the warm-up's, then one per step) decoded eagerly on a CPU
    batches, graphed = results["lockstep-graphs"]["graph_batches"]
    assert batches >= 2 and graphed == 0
    assert results["lockstep"]["computed_tokens"] < results["lockstep-nocache"]["computed_tokens"]


def test_attention_kernels_times_each_choice_on_both_workloads(tmp_path) -> None:
    out = tmp_path / "kernels.json"
    args = ("--rows", "4", "--train-rows", "2", "--train-length", "32", "--calls", "2")
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "attention_kernels.py"), *args, "--json", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"decode", "train"}
    for rows in results.values():
        assert set(rows) == {"torch", "leap", "cudnn", "efficient", "flash", "math"}
        # on a CPU: PyTorch's choice and leap's are its flash kernel; the GPU kernels cannot run
        assert rows["torch"]["kernel"] == rows["leap"]["kernel"] == "flash"
        assert rows["math"]["kernel"] == "math" and rows["math"]["new_shape_ms"] > 0
        assert "error" in rows["cudnn"] and "error" in rows["efficient"]
        assert rows["torch"]["same_shape_ms"] > 0


def test_choice_decoding_compares_leap_with_its_savings_switched_off(tmp_path) -> None:
    report = _run("choice_decoding", tmp_path, "--rows", "6", "--rounds", "1")
    assert report["same_masks"] and report["decoding_steps"] > 10
    ways = {"leap", "unremembered", "row-by-row", "whole-search", "per-choice", "before"}
    assert set(report["ms_per_agent_step"]) == ways
    assert report["speedup_over_before"]["before"] == 1.0 and report["harness_ms"] > 0


def test_prompt_encoding_compares_leap_with_its_memos_switched_off(tmp_path) -> None:
    report = _run("prompt_encoding", tmp_path, "--episodes", "4", "--horizon", "5", "--rounds", "1")
    assert report["same_tokens"] and report["agent_steps"] == 5 and report["prompts"] == 20
    assert set(report["ms_per_agent_step"]) == {"leap", "retokenize", "rerender", "listbatch", "before"}
    assert report["speedup_over_before"]["before"] == 1.0 and report["prompt_tokens_per_step"] > 100
    assert set(report["ms_per_part"]["leap"]) == {"agent", "chat", "tokens", "batch"}


def test_train_throughput_leaves_warm_up_steps_out(tmp_path) -> None:
    report = _run(
        "train_throughput", tmp_path, "--engines", "leap", "--steps", "3", "--warmup", "2", "--episodes", "2"
    )
    leap = report["results"]["leap"]
    assert len(leap["step_seconds"]) == 3
    assert leap["seconds_per_step"] == pytest.approx(leap["step_seconds"][2])
    assert leap["tokens_per_s"] == pytest.approx(leap["step_tokens"][2] / leap["step_seconds"][2])


def test_train_throughput_counts_a_steps_operators_and_leaves_that_step_untimed(tmp_path) -> None:
    report = _run(
        "train_throughput",
        tmp_path,
        *("--engines", "leap-batched-fp32,leap-batched-bf16", "--steps", "3", "--episodes", "2"),
        "--count-ops",
    )
    fp32, bf16 = (report["results"][name] for name in ("leap-batched-fp32", "leap-batched-bf16"))
    # the same step in fp32 and in bf16 autocast, which adds the casts (each a kernel on a GPU)
    assert 0 < fp32["ops_per_step"] < bf16["ops_per_step"]
    assert bf16["top_ops"]["_to_copy"] > fp32["top_ops"].get("_to_copy", 0)
    assert fp32["top_ops"]["mm"] > 0 and "view" not in fp32["top_ops"] and "empty" not in fp32["top_ops"]
    # the counted (last) step is slowed by counting: only the step between warm-up and it is timed
    for m in (fp32, bf16):
        assert len(m["step_seconds"]) == 3
        assert m["seconds_per_step"] == pytest.approx(m["step_seconds"][1])


def test_rollout_throughput_counts_operators_per_agent_step(tmp_path) -> None:
    report = _run(
        "rollout_throughput",
        tmp_path,
        *("--episodes", "2", "--horizon", "2", "--dtype", "float32", "--max-new-tokens", "6"),
        *("--modes", "lockstep-nocache,lockstep-graphs", "--count-ops"),
    )
    nocache, graphs = (report["results"][mode] for mode in ("lockstep-nocache", "lockstep-graphs"))
    for m in (nocache, graphs):
        # a prompt's pass and at most one pass per further token of a 6-token reply
        assert 1 <= m["forwards_per_agent_step"] <= 6
        # the tiny model's pass alone is over 50 operators (2 layers, its head)
        assert m["ops_per_agent_step"] > 50 * m["forwards_per_agent_step"]
        assert m["top_ops"]["linear"] > 0 and "view" not in m["top_ops"]
    # the same replies, so as many passes; on a CPU the graphed decoding runs eagerly
    assert graphs["same_replies"] == nocache["env_steps"]
    assert graphs["forwards_per_agent_step"] == nocache["forwards_per_agent_step"]
