"""The training engines: leap's loss (head only at labelled positions) and flex attention over
concatenated prefix trees train exactly as TRL's own loss on dense masks."""

from __future__ import annotations

import pytest

from leap.agents import PromptSettings
from leap.builders import build_policy
from leap.data import make_sample, sft_rows
from leap.envs import make_env
from leap.io import atomic_write_jsonl
from leap.rollout import run_episodes
from leap.train import TrainSettings, train_adapter

TURNS = PromptSettings(style="student", layout="turns", history_steps=30, list_actions=False)


def _rows_file(folder, episode_ids: list[str]):
    """Packed transcript rows of planner demonstrations and the corrections of the first one
    (rows whose prompts are prefixes of a transcript: they become branches)."""
    episodes = run_episodes(
        lambda: make_env("household"), episode_ids, build_policy("planner", "household"), show_progress=False
    )
    samples = []
    for e in episodes:
        for t, s in enumerate(e.steps):
            samples.append(
                make_sample(
                    e, t, iteration=0, teacher="expert", reason=s.reason, action=s.action, settings=TURNS
                )
            )
    first = episodes[0]
    for t, s in enumerate(first.steps):
        other = next(c for c in s.candidates["choices"] if c != s.action)
        samples.append(
            make_sample(first, t, iteration=1, teacher="teacher", reason="look", action=other, settings=TURNS)
        )
    path = folder / "train.jsonl"
    atomic_write_jsonl(path, sft_rows(samples))
    return path


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """Three demonstrations, the first with its corrections."""
    return _rows_file(tmp_path_factory.mktemp("rows"), ["train/0001", "train/0002", "train/0003"])


def _train(tiny_model_path, data_file, tmp_path, name, callbacks=None, **settings) -> dict:
    base = dict(lora_r=4, lora_alpha=8, lora_dropout=0.0, learning_rate=1e-3, max_steps=3, batch_size=2)
    base.update(bf16=False, device="cpu", warmup_ratio=0.0)
    out = tmp_path / name
    settings = TrainSettings(**(base | settings))
    return train_adapter(tiny_model_path, data_file, out, settings, seed=0, callbacks=callbacks)


def _losses(metrics: dict) -> list[float]:
    return [row["loss"] for row in metrics["loss_curve"]]


def test_the_leap_loss_trains_exactly_as_trl_loss(tiny_model_path, data_file, tmp_path) -> None:
    trl = _train(tiny_model_path, data_file, tmp_path, "trl", engine="trl")
    leap = _train(tiny_model_path, data_file, tmp_path, "leap", engine="leap")
    assert trl["steps"] == leap["steps"] == 3
    assert _losses(leap) == pytest.approx(_losses(trl), rel=1e-4)
    # throughput and the engine's make-up are recorded with the metrics
    for metrics in (trl, leap):
        assert metrics["attention"] == "sdpa" and metrics["device"] == "cpu" and metrics["dtype"] == "fp32"
        assert metrics["tokens"] > 0 and metrics["tokens_per_s"] > 0 and metrics["seconds_per_step"] > 0
        # every step's own seconds and tokens, the steady state from the second step on
        assert len(metrics["step_seconds"]) == len(metrics["step_tokens"]) == 3
        assert sum(metrics["step_tokens"]) == metrics["tokens"] and min(metrics["step_tokens"]) > 0
        late = metrics["step_seconds"][1:]
        assert metrics["seconds_per_step"] == pytest.approx(sum(late) / 2, rel=1e-2, abs=1e-3)
    # the same rows were drawn in the same order: the same tokens
    assert leap["tokens"] == trl["tokens"]


def _compute_dtypes() -> tuple[set, object]:
    """A trainer callback that records the output dtypes of one decoder matrix multiply."""
    from transformers import TrainerCallback

    seen: set = set()

    class Spy(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            layer = base.get_decoder().layers[0].mlp.down_proj
            layer = getattr(layer, "base_layer", layer)  # under its LoRA wrapper
            layer.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))

    return seen, Spy()


def test_bf16_training_computes_in_bf16_in_both_engines(tiny_model_path, data_file, tmp_path) -> None:
    """bf16 is autocast around the whole loss: the leap engine calls the decoder itself, past the
    autocast that wraps the model's forward (it trained in fp32 under bf16 before)."""
    import torch

    losses = {}
    for engine in ("leap", "trl"):
        for bf16 in (True, False):
            seen, spy = _compute_dtypes()
            name = f"{engine}-{bf16}"
            metrics = _train(tiny_model_path, data_file, tmp_path, name, [spy], bf16=bf16, engine=engine)
            assert seen == {torch.bfloat16 if bf16 else torch.float32}, (engine, bf16)
            assert metrics["dtype"] == ("bf16" if bf16 else "fp32")
            losses[engine, bf16] = _losses(metrics)
    assert losses["leap", True] == pytest.approx(losses["trl", True], rel=2e-2)
    assert losses["leap", True] != pytest.approx(losses["leap", False], rel=1e-6)


def test_bf16_training_stores_frozen_weights_in_bf16_with_the_same_losses(
    tiny_model_path, data_file, tmp_path, monkeypatch
) -> None:
    """The leap engine in bf16 autocast keeps the frozen linear weights in bf16 instead of letting
    autocast cast them at every use: the same rounding, so the same losses and adapters; the
    adapters themselves stay fp32, and fp32 training keeps fp32 weights."""
    import torch
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    import leap.train

    class Dtypes(TrainerCallback):
        def on_step_begin(self, args, state, control, model=None, **kwargs):
            self.seen = {
                name.rsplit(".", 1)[0].split(".")[-1]: p.dtype
                for name, p in model.named_parameters()
                if ".layers.0." in name and "q_proj" in name
            }

    runs = {}
    for name, flag, bf16 in (("bf16", True, True), ("cast", False, True), ("fp32", True, False)):
        monkeypatch.setattr(leap.train, "BF16_FROZEN_WEIGHTS", flag)
        spy = Dtypes()
        metrics = _train(tiny_model_path, data_file, tmp_path, name, [spy], bf16=bf16)
        runs[name] = metrics, spy.seen, load_file(tmp_path / name / "adapter_model.safetensors")
    (weights, seen, adapter), (cast, cast_seen, cast_adapter) = runs["bf16"], runs["cast"]
    assert weights["frozen_weights"] == "bf16" and cast["frozen_weights"] == "fp32"
    assert runs["fp32"][0]["frozen_weights"] == "fp32"
    assert seen == {"base_layer": torch.bfloat16, "default": torch.float32}
    assert cast_seen == runs["fp32"][1] == {"base_layer": torch.float32, "default": torch.float32}
    assert _losses(weights) == _losses(cast)
    assert adapter.keys() == cast_adapter.keys()
    for key in adapter:
        torch.testing.assert_close(adapter[key], cast_adapter[key], rtol=0, atol=0)


def test_training_attends_under_the_settings_kernel_choice(
    tiny_model_path, data_file, tmp_path, attention_spy
) -> None:
    metrics = _train(tiny_model_path, data_file, tmp_path, "cudnn", max_steps=1, cudnn_attention=True)
    assert attention_spy.blocks == [("cpu", True)] and metrics["cudnn_attention"] is True
    assert attention_spy.calls_inside > 0 and attention_spy.calls_outside == 0
    assert TrainSettings().cudnn_attention is False


def test_flex_attention_needs_a_gpu_to_train(tiny_model_path, data_file, tmp_path) -> None:
    with pytest.raises(ValueError, match="flex attention trains on CUDA only"):
        _train(tiny_model_path, data_file, tmp_path, "flex", attention="flex")


def test_concatenated_batched_and_compiled_rows_train_as_one_row_per_micro_batch(
    tiny_model_path, data_file, tmp_path
) -> None:
    """The GPU-minded variants of the leap engine (one sequence per optimizer step; several
    padded rows per micro-batch; decoder layers compiled with torch.compile) compute the same
    losses as the default, in fp32."""
    from torch._dynamo.utils import counters

    default = _train(tiny_model_path, data_file, tmp_path, "rows")
    concatenated = _train(tiny_model_path, data_file, tmp_path, "concat", concatenate_rows=True)
    counters.clear()
    compiled = _train(tiny_model_path, data_file, tmp_path, "compiled", compile=True)
    assert counters["stats"]["unique_graphs"] >= 1  # torch.compile did compile the layers
    assert default["concatenate_rows"] is False and concatenated["concatenate_rows"] is True
    assert compiled["compile"] is True
    # two rows per step: half the micro-batches (but for an epoch's odd last row)
    assert default["micro_batches"] == 5 and concatenated["micro_batches"] == 3
    # two padded rows per micro-batch (each with its own tree mask): as few micro-batches
    batched = _train(tiny_model_path, data_file, tmp_path, "batched", micro_batch_size=2)
    assert batched["micro_batch_size"] == 2 and default["micro_batch_size"] == 1
    assert batched["micro_batches"] == 3 and batched["concatenate_rows"] is False
    for variant in (concatenated, compiled, batched):
        assert variant["steps"] == default["steps"] == 3
        assert _losses(variant) == pytest.approx(_losses(default), rel=1e-4)
        assert variant["tokens"] == default["tokens"]


def test_compiled_layers_with_graphs_pad_lanes_and_train_as_eager(
    tiny_model_path, data_file, tmp_path, monkeypatch
) -> None:
    """``train.compile: graphs`` compiles every layer in torch.compile's reduce-overhead mode (a
    CUDA graph per layer on a GPU, recorded once per shape) and pads lanes to a multiple of
    GRAPH_WIDTH_MULTIPLE tokens, so few shapes come: the same losses as eager layers. On a CPU
    every compiled graph runs without a CUDA graph, and the metrics say so."""
    import torch
    from torch._dynamo.utils import counters

    import leap.train
    from leap.packing import PrefixTreeCollator

    widths: list[int] = []
    collate = PrefixTreeCollator.__call__

    def spy(self, features):
        batch = collate(self, features)
        widths.append(batch["input_ids"].shape[1])
        return batch

    modes: list[str | None] = []
    compile_layers = leap.train.compile_layers

    def recorded(model, mode=None):
        modes.append(mode)
        return compile_layers(model, mode)

    marks: list[int] = []
    monkeypatch.setattr(PrefixTreeCollator, "__call__", spy)
    monkeypatch.setattr(leap.train, "compile_layers", recorded)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    # two micro-batches of two rows per optimizer step
    rows = {"batch_size": 4, "micro_batch_size": 2}
    eager = _train(tiny_model_path, data_file, tmp_path, "eager", **rows)
    eager_widths, widths[:] = list(widths), []
    counters.clear()
    graphs = _train(tiny_model_path, data_file, tmp_path, "graphs", compile="graphs", **rows)
    assert modes == ["reduce-overhead"]
    # a new step for the graphs at every optimizer step, not between its micro-batches
    assert len(marks) == graphs["steps"] == 3 and graphs["micro_batches"] == 6
    # one compilation for both layers and every micro-batch's shape, but for a micro-batch of
    # one lane (the epoch's odd last row): torch.compile specialises sizes of 1
    assert counters["stats"]["unique_graphs"] == 2 and len(set(widths)) > 1
    assert graphs["compile"] == "graphs" and graphs["cudagraph_skips"] > 0 and "cudagraph_skips" not in eager
    assert widths and all(w % leap.train.GRAPH_WIDTH_MULTIPLE == 0 for w in widths)
    assert any(w % leap.train.GRAPH_WIDTH_MULTIPLE for w in eager_widths)
    assert graphs["tokens"] == eager["tokens"] and graphs["padding_share"] > eager["padding_share"]
    assert _losses(graphs) == pytest.approx(_losses(eager), rel=1e-4)


def test_lora_dropout_draws_only_the_dropped_positions_on_cpu(
    tiny_model_path, data_file, tmp_path, monkeypatch
) -> None:
    import leap.train

    sparse = _train(tiny_model_path, data_file, tmp_path, "sparse", lora_dropout=0.1, max_steps=2)
    assert sparse["lora_dropout"] == "sparse" and sparse["steps"] == 2
    assert all(0 < loss < 20 for loss in _losses(sparse))
    monkeypatch.setattr(leap.train, "SPARSE_DROPOUT_ON_CPU", False)
    dense = _train(tiny_model_path, data_file, tmp_path, "dense", lora_dropout=0.1, max_steps=2)
    assert dense["lora_dropout"] == "torch"
    assert _train(tiny_model_path, data_file, tmp_path, "none", max_steps=1)["lora_dropout"] == "none"
    monkeypatch.setattr(leap.train, "SPARSE_DROPOUT_ON_CPU", True)
    trl = _train(tiny_model_path, data_file, tmp_path, "trl", engine="trl", lora_dropout=0.1, max_steps=1)
    assert trl["lora_dropout"] == "torch"  # the reference engine keeps torch's dropout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"batch_size": 4, "micro_batch_size": 3}, "must divide batch_size"),
        ({"batch_size": 4, "micro_batch_size": 2, "concatenate_rows": True}, "already the whole step"),
        ({"batch_size": 4, "micro_batch_size": 2, "attention": "flex"}, "already the whole step"),
        ({"processes": 2, "extra": {"fsdp": "full_shard"}}, "fsdp needs engine trl"),
    ],
)
def test_micro_batches_must_fit_the_step(settings, message) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        TrainSettings(**settings)
    assert TrainSettings(batch_size=4, micro_batch_size=2).micro_batch_size == 2


def test_bf16_auto_takes_what_was_measured_faster(monkeypatch) -> None:
    from leap.models import transformers_backend
    from leap.train import _use_bf16

    def auto(device: str, **settings) -> bool:
        return _use_bf16(TrainSettings(**settings), device)

    # on a GPU the leap engine's SFT stays in fp32 (bf16 autocast was slower on an H200)
    assert auto("cuda") is False and auto("cuda:1", engine="leap") is False
    assert auto("cuda", engine="trl") is True and auto("cuda", rule="dpo", batch_size=2) is True
    assert auto("cuda", bf16=True) is True  # an explicit choice holds
    for fast in (True, False):
        monkeypatch.setattr(transformers_backend, "cpu_has_fast_bf16", lambda fast=fast: fast)
        assert auto("cpu") is fast and auto("cpu", engine="trl") is fast
    assert auto("cpu", bf16=False) is False


def test_micro_batches_auto_batch_the_step_on_a_gpu_only() -> None:
    from leap.train import GPU_MICRO_BATCH_ROWS, _micro_batch_size

    def rows(device: str, gpu_memory: float = 141e9, **settings) -> int:
        return _micro_batch_size(TrainSettings(**settings), device, gpu_memory)

    assert rows("cpu") == 1 and rows("cpu", batch_size=16) == 1
    assert rows("cuda", batch_size=4) == 4 and rows("cuda:0", batch_size=1) == 1
    assert GPU_MICRO_BATCH_ROWS == 16
    assert rows("cuda", batch_size=64) == 16 and rows("cuda", batch_size=24) == 12
    assert rows("cuda", batch_size=17) == 1  # a prime above the cap: one row at a time
    # a smaller GPU holds fewer rows: 24 GB at most 5, so 4 of a step of 16
    assert rows("cuda", 24e9, batch_size=16) == 4 and rows("cuda", 80e9, batch_size=16) == 16
    assert rows("cuda", 4e9, batch_size=16) == 1
    assert rows("cuda", batch_size=8, micro_batch_size=2) == 2  # an explicit choice holds


def test_rows_side_by_side_in_lanes_train_as_padded_rows_with_less_padding(
    tiny_model_path, data_file, tmp_path
) -> None:
    """A micro-batch of several packed rows puts them side by side in lanes by default: the
    same losses as padded rows and as one row per micro-batch (fp32), fewer positions computed."""
    # a short fourth demonstration fits beside a longer one
    rows = _rows_file(tmp_path, ["train/0001", "train/0002", "train/0003", "train/0007"])
    common = dict(batch_size=4, max_steps=2)
    lanes = _train(tiny_model_path, rows, tmp_path, "lanes", micro_batch_size=4, **common)
    padded = _train(tiny_model_path, rows, tmp_path, "padded", micro_batch_size=4, lanes=False, **common)
    alone = _train(tiny_model_path, rows, tmp_path, "alone", micro_batch_size=1, **common)
    assert lanes["lanes"] is True and padded["lanes"] is False and alone["lanes"] is False
    assert alone["padding_share"] == 0.0
    assert 0.0 < lanes["padding_share"] < padded["padding_share"]
    for variant in (lanes, padded):
        assert _losses(variant) == pytest.approx(_losses(alone), rel=1e-4)
        assert variant["tokens"] == alone["tokens"]


def test_the_leap_loss_reads_no_value_back_mid_step(tiny_model_path, data_file, value_reads) -> None:
    """With the labelled positions from the collator (found on the host), the leap engine's loss
    and its backward read nothing back from the device: no synchronisation mid-step on a GPU.
    Found on the device instead, the same loss needs the positions' count back."""
    from types import SimpleNamespace

    import torch
    from datasets import load_dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from leap.models.transformers_backend import load_tokenizer
    from leap.train import _packed_sft_dataset, _tree_collator, labelled_loss

    tokenizer = load_tokenizer(tiny_model_path)
    rows = _packed_sft_dataset(
        load_dataset("json", data_files=str(data_file), split="train"), tokenizer, 4096
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    config = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    losses = {}
    for positions in (True, False):
        collate = _tree_collator(config, tokenizer, "sdpa", "cpu", False, True, label_positions=positions)
        batch = collate([dict(r) for r in rows])
        assert ("label_positions" in batch) == positions
        with value_reads() as reads:
            loss = labelled_loss(model, batch)
            loss.backward()
        losses[positions] = (loss.item(), len(reads.names))
        model.zero_grad()
    assert losses[True][1] == 0 and losses[False][1] > 0
    assert losses[True][0] == pytest.approx(losses[False][0], rel=1e-6)


def test_steps_read_nothing_back_and_the_log_reads_at_its_steps_only(
    tiny_model_path, tmp_path, value_reads
) -> None:
    """Each optimizer step of the leap engine (micro-batches with a tree mask, the trainer's NaN
    check off as on a GPU) reads no value back; the log reads the loss and the gradient norm at
    the first step and every ``logging_steps``-th only, so on a GPU the host can queue the steps
    between logs ahead of the device. (A micro-batch of one plain row, without a mask, still
    reads once: transformers looks for packed sequences in its positions.)"""
    from transformers import TrainerCallback

    from leap.train import GPU_LOGGING_STEPS, _logging_steps

    assert _logging_steps(TrainSettings(), "cpu") == 1
    assert _logging_steps(TrainSettings(), "cuda:0") == GPU_LOGGING_STEPS > 1
    assert _logging_steps(TrainSettings(logging_steps=3), "cuda") == 3

    class Windows(TrainerCallback):
        """Reads within each step, and within each step's log (its end to the log's callback)."""

        def __init__(self, reads) -> None:
            self.reads, self.mark = reads, 0
            self.steps: dict[int, int] = {}
            self.logs: dict[int, int] = {}

        def _since(self) -> int:
            count, self.mark = len(self.reads.names) - self.mark, len(self.reads.names)
            return count

        def on_step_begin(self, args, state, control, **kwargs):
            self._since()

        def on_step_end(self, args, state, control, **kwargs):
            self.steps[state.global_step] = self._since()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if "loss" in (logs or {}):
                self.logs[state.global_step] = self._since()

    # four rows: two micro-batches of two rows in lanes per epoch, each with a mask
    rows = _rows_file(tmp_path, ["train/0001", "train/0002", "train/0003", "train/0007"])
    curves = {}
    for every in (1, 3):
        with value_reads() as reads:
            windows = Windows(reads)
            metrics = _train(
                tiny_model_path,
                rows,
                tmp_path,
                f"log-{every}",
                [windows],
                max_steps=6,
                micro_batch_size=2,
                logging_steps=every,
                extra={"logging_nan_inf_filter": False},
            )
        assert metrics["steps"] == 6
        assert windows.steps == dict.fromkeys(range(1, 7), 0), every
        assert list(windows.logs) == [row["step"] for row in metrics["loss_curve"]]
        assert min(windows.logs.values()) >= 2  # the loss and the gradient norm
        curves[every] = list(windows.logs)
    assert curves == {1: [1, 2, 3, 4, 5, 6], 3: [1, 3, 6]}


def test_the_leap_trainer_counts_flops_as_transformers_with_parameters_counted_once(tiny_model_path) -> None:
    """The leap engine's trainer estimates a micro-batch's FLOPs as transformers' trainer does,
    counting the model's parameters once instead of at every micro-batch."""
    from types import SimpleNamespace

    import torch
    import trl
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer

    from leap.train import _leap_sft_trainer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    leap_trainer = SimpleNamespace(model=model, _counted_parameters=None)
    ops = _leap_sft_trainer(trl).floating_point_ops
    walks = []
    counting = model.num_parameters

    def counted(*args, **kwargs):
        walks.append(1)
        return counting(*args, **kwargs)

    model.num_parameters = counted
    for width in (7, 300, 11):
        inputs = {"input_ids": torch.zeros(3, width, dtype=torch.long)}
        assert (
            ops(leap_trainer, inputs) == Trainer.floating_point_ops(SimpleNamespace(model=model), inputs) > 0
        )
    assert len(walks) == 1 + 3  # once for leap's trainer, once per call for transformers'
    assert ops(leap_trainer, {"labels": torch.zeros(1)}) == 0


@pytest.mark.slow
def test_two_processes_train_as_one_at_the_same_global_batch(tiny_model_path, tmp_path) -> None:
    """``train.processes: 2`` (torchrun, gloo on the CPU, leap's engine on each rank with lanes
    and label positions): the same losses and the same adapter as one process with the same
    global batch; with LoRA dropout on, each rank draws it sparsely."""
    from safetensors.torch import load_file

    rows = _rows_file(tmp_path, ["train/0001", "train/0002", "train/0003", "train/0007"])
    common = dict(batch_size=4, max_steps=3, micro_batch_size=2)
    one = _train(tiny_model_path, rows, tmp_path, "one", **common)
    two = _train(tiny_model_path, rows, tmp_path, "two", processes=2, **common)
    assert one["processes"] == 1 and two["processes"] == 2 and two["lanes"] is True
    assert two["steps"] == one["steps"] == 3
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
    a, b = (load_file(tmp_path / name / "adapter_model.safetensors") for name in ("one", "two"))
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max().item() < 1e-5, key
    dropout = _train(tiny_model_path, rows, tmp_path, "dropout", processes=2, lora_dropout=0.1, **common)
    assert dropout["lora_dropout"] == "sparse" and dropout["steps"] == 3
    assert not (tmp_path / "dropout.partial").exists()
    with pytest.raises(ValueError, match="multiple of micro_batch_size 2 times processes 2"):
        TrainSettings(processes=2, batch_size=2, micro_batch_size=2)
    with pytest.raises(ValueError, match="multiple of processes 2"):
        TrainSettings(processes=2, batch_size=3)
