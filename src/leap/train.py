"""Fine-tuning with TRL and PEFT LoRA: SFT (default), DPO or KTO on the aggregated dataset."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from leap.io import atomic_write_json
from leap.settings import StrictModel, UpdateRule

log = logging.getLogger(__name__)


class TrainSettings(StrictModel):
    """Trainer settings (``train`` in a run config); defaults follow the paper where it gives them
    (LoRA r 64, alpha 128, dropout 0.05, cosine schedule, one epoch; DPO/KTO beta 0.01)."""

    #: the update rule of LEAP iterations (behaviour cloning is always SFT)
    rule: UpdateRule = "sft"
    lora_r: int = Field(default=64, ge=1)
    lora_alpha: int = Field(default=128, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"
    learning_rate: float = Field(default=3e-5, gt=0)
    epochs: float = Field(default=1.0, gt=0)
    #: if set, train this many optimizer steps on the shuffled aggregate instead of whole epochs
    max_steps: int | None = Field(default=None, ge=1)
    #: iteration 0 (behaviour cloning starts from the base model) may need more steps than the
    #: later iterations, which continue from the previous adapter; unset: max_steps
    bc_max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=2048, ge=16)
    warmup_ratio: float = Field(default=0.03, ge=0, lt=1)
    beta: float = Field(default=0.01, gt=0)
    #: bf16 autocast; "auto": where it was measured faster (a GPU or a CPU with bf16
    #: instructions, but fp32 for the leap engine's SFT on a GPU: see ``_use_bf16``)
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"
    #: "leap": the loss computed by leap (the language-model head only at labelled positions,
    #: no per-step entropy/accuracy syncs), on CPU a LoRA dropout that draws only the dropped
    #: positions (``leap.sparse_dropout``) and on CUDA a fused optimizer; "trl": TRL's own loss
    #: and torch's dropout, the reference ``benchmarks/train_throughput.py`` compares with
    engine: Literal["leap", "trl"] = "leap"
    #: attention of packed SFT rows: "sdpa" trains one row per micro-batch with a dense tree
    #: mask; "flex" (CUDA only) puts all rows of an optimizer step in one sequence with a block
    #: mask, so only the blocks of the prefix trees are computed (measured slower than sdpa on an
    #: H200 so far: docs/speed.md)
    attention: Literal["sdpa", "flex"] = "sdpa"
    #: sdpa: put all rows of an optimizer step one after another in one sequence (one
    #: micro-batch per step, fewer kernel launches) instead of one row per micro-batch; the dense
    #: tree mask then costs the square of the step's length. Flex attention always does this.
    #: Measured slower on 2 CPU cores (docs/speed.md); for GPUs, whose small-model steps are
    #: launch-bound
    concatenate_rows: bool = False
    #: sdpa: packed rows per micro-batch (a divisor of ``batch_size``), side by side in lanes
    #: (``lanes``) or each padded to the micro-batch's longest; 1 trains one row at a time (the
    #: fastest on CPU); more rows mean fewer, larger kernel launches (5.2x faster with 16 padded
    #: rows on an H200). "auto", the default: 1 on CPU, on CUDA the step's rows up to
    #: :data:`GPU_MICRO_BATCH_ROWS` and to what the GPU's memory holds
    micro_batch_size: int | Literal["auto"] = "auto"
    #: sdpa with more than one row per micro-batch: put the rows side by side into lanes as wide
    #: as the longest row (each lane a batch row, its rows never seeing each other) instead of
    #: padding every row to the longest; the same loss with fewer positions computed (42 % of a
    #: 16-row micro-batch of household rows was padding). Off: each row a batch row of its own
    lanes: bool = True
    #: compile every decoder layer with torch.compile (regional compilation: one layer's code,
    #: compiled once, serves all of them); the first steps pay for compiling, later steps run
    #: fused kernels (docs/speed.md). "graphs": also replay each compiled layer as a CUDA graph
    #: on a GPU (torch.compile's "reduce-overhead": a launch per layer, not per operator), with
    #: lanes padded to a multiple of :data:`GRAPH_WIDTH_MULTIPLE` tokens so that few shapes need
    #: recording; on a CPU the same compiled layers without graphs
    compile: bool | Literal["graphs"] = False
    #: on a GPU: let attention use cuDNN's fused kernels where PyTorch tries them first (H100,
    #: H200, B200 with CUDA 13 wheels); off: flash, memory-efficient and math only
    #: (``leap.models.attention_kernels``)
    cudnn_attention: bool = False
    #: optimizer steps per logged loss, gradient norm and learning rate (the first step is
    #: always logged); "auto": every step on a CPU, every :data:`GPU_LOGGING_STEPS` on a GPU,
    #: where each log reads values back and so makes the host wait for the device
    logging_steps: int | Literal["auto"] = "auto"
    #: training processes (data parallel: one per GPU, or CPU processes reducing over gloo),
    #: started with torchrun for each training and ended with it; batch_size stays the global
    #: batch (each process takes its share of every step's rows). 1: this process
    processes: int = Field(default=1, ge=1)
    #: more torchrun flags, e.g. several nodes: [--nnodes, "2", --node-rank, "0",
    #: --rdzv-endpoint, "host:29400"] (README, Training across processes)
    launcher_args: list[str] = Field(default_factory=list)
    #: further TRL trainer arguments, passed as they are (fsdp, fsdp_config, ddp_backend...)
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _micro_batches_fit(self) -> TrainSettings:
        if self.logging_steps != "auto" and self.logging_steps < 1:
            raise ValueError(f"logging_steps must be 'auto' or at least 1, not {self.logging_steps}")
        if self.micro_batch_size != "auto" and self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be 'auto' or at least 1, not {self.micro_batch_size}")
        if self.micro_batch_size != "auto" and self.micro_batch_size > 1:
            if self.batch_size % self.micro_batch_size:
                raise ValueError(
                    f"micro_batch_size {self.micro_batch_size} must divide batch_size {self.batch_size}"
                )
            if self.batch_size % (self.micro_batch_size * self.processes):
                raise ValueError(
                    f"batch_size {self.batch_size} must be a multiple of micro_batch_size "
                    f"{self.micro_batch_size} times processes {self.processes}"
                )
            if self.concatenate_rows or self.attention == "flex":
                raise ValueError(
                    "micro_batch_size: with concatenate_rows or flex attention a micro-batch is "
                    "already the whole step's rows in one sequence"
                )
        if "fsdp" in self.extra and self.engine == "leap":
            raise ValueError(
                "extra.fsdp needs engine trl: leap's engine calls the decoder past the FSDP wrapper"
            )
        if self.batch_size % self.processes:
            raise ValueError(f"batch_size {self.batch_size} must be a multiple of processes {self.processes}")
        return self

    def for_iteration(self, k: int) -> TrainSettings:
        """The settings iteration ``k`` trains with: behaviour cloning (k = 0) is SFT, on its
        own step budget where ``bc_max_steps`` is set."""
        if k > 0:
            return self
        steps = self.bc_max_steps or self.max_steps
        return self.model_copy(update={"rule": "sft", "max_steps": steps})


#: rows per micro-batch on CUDA for ``micro_batch_size: auto`` (at most; a divisor of the step's
#: rows): on an H200, 16 rows per micro-batch trained 5.2x faster than one (0.55 against 2.87 s
#: per step of 16 rows), 32 no faster per token than 16, and 64 ran out of its 139 GB (fp32)
GPU_MICRO_BATCH_ROWS = 16
#: GPU memory "auto" allows per row of a micro-batch: a 1,600-token packed row's activations
#: took about 4.5 GB in training (fp32), so a 24 GB GPU gets at most 5 rows, an 80 GB one 16
GPU_BYTES_PER_ROW = 4.5e9

#: ``train.compile: graphs`` pads a micro-batch's lanes to a multiple of this many tokens: a CUDA
#: graph is recorded for every new shape, and household rows of 288 to 1,235 tokens in 16-row
#: micro-batches then take 10 shapes in their first 30 steps and 11 in 200, against 19 and 47
#: unpadded (``benchmarks/train_throughput.py --padding``), for up to 255 padding tokens a lane
GRAPH_WIDTH_MULTIPLE = 256

#: on CPU, LoRA dropout draws only the positions it drops (``leap.sparse_dropout``: the same
#: distribution); off only to measure what that saves (benchmarks/train_throughput.py)
SPARSE_DROPOUT_ON_CPU = True

#: in bf16 autocast, the leap engine stores the frozen weights of the LoRA-wrapped linear layers
#: in bf16 (:func:`frozen_weights_to_bf16`); off only to measure what that saves
BF16_FROZEN_WEIGHTS = True

#: the leap engine's step reads no value back mid-step: the labelled positions come from the
#: collator (:func:`labelled_loss`) and, on a GPU, the trainer does not check each micro-batch's
#: loss for NaN (``logging_nan_inf_filter``); off only to measure what that saves
SYNC_FREE_STEPS = True

#: optimizer steps per log on a GPU for ``logging_steps: auto``. A log reads the loss and the
#: gradient norm back from the GPU (a synchronisation): until the device has finished the step,
#: the host can neither collate the next micro-batch nor queue its work, so the GPU idles while
#: it does. Between logs a step reads nothing back (with :data:`SYNC_FREE_STEPS` and
#: :data:`EVENT_TIMING`)
GPU_LOGGING_STEPS = 10

#: on a GPU, the throughput figures time each optimizer step with CUDA events recorded in the
#: device's queue, read once after training, instead of synchronising with the device at every
#: step; off only to measure what that saves (benchmarks/train_throughput.py)
EVENT_TIMING = True

#: trainer arguments for SFT rows that arrive tokenised and packed (with their own collator)
PACKED_SFT_ARGS = {"remove_unused_columns": False, "dataset_kwargs": {"skip_prepare_dataset": True}}

#: update rule -> (TRL config class, TRL trainer class)
TRAINERS = {
    "sft": ("SFTConfig", "SFTTrainer"),
    "dpo": ("DPOConfig", "DPOTrainer"),
    "kto": ("KTOConfig", "KTOTrainer"),
}


def _checkpointing_argument() -> str:
    """The training argument that turns on activation checkpointing: ``activation_checkpointing``
    since transformers 5.24 (``gradient_checkpointing`` before, deprecated there)."""
    from transformers import TrainingArguments

    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    return "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"


def _micro_batch_size(settings: TrainSettings, device: str, gpu_memory: float | None = None) -> int:
    """Packed rows per micro-batch: ``micro_batch_size``, or for "auto" one row on CPU (measured
    fastest there) and on CUDA the largest divisor of ``batch_size`` up to
    :data:`GPU_MICRO_BATCH_ROWS` and to what the GPU's memory holds (``gpu_memory`` bytes, read
    from the device where not given) at :data:`GPU_BYTES_PER_ROW`."""
    if settings.micro_batch_size != "auto":
        return settings.micro_batch_size
    if not device.startswith("cuda"):
        return 1
    if gpu_memory is None:
        import torch

        gpu_memory = torch.cuda.get_device_properties(torch.device(device)).total_memory
    most = min(settings.batch_size, GPU_MICRO_BATCH_ROWS, max(1, int(gpu_memory // GPU_BYTES_PER_ROW)))
    return max(n for n in range(1, most + 1) if settings.batch_size % n == 0)


def _logging_steps(settings: TrainSettings, device: str) -> int:
    """Optimizer steps per log: ``logging_steps``, or for "auto" every step on a CPU (a step
    takes seconds there) and every :data:`GPU_LOGGING_STEPS` on any other device."""
    if settings.logging_steps != "auto":
        return settings.logging_steps
    return 1 if device.startswith("cpu") else GPU_LOGGING_STEPS


def _use_bf16(settings: TrainSettings, device: str) -> bool:
    """Whether the trainer computes in bf16 autocast; for ``bf16: auto`` whichever was measured
    faster (docs/speed.md): bf16 on a CPU with bf16 instructions (the leap engine 1.43x faster
    than in fp32 on 2 AVX512-BF16 cores) and on CUDA, except the leap engine's SFT on CUDA, which
    stays in fp32 (bf16 autocast measured 1.9x slower on an H200: 16 packed rows per
    micro-batch, 1.13 against 0.60 s per step; not yet understood)."""
    if settings.bf16 != "auto":
        return bool(settings.bf16)
    if device.startswith("cuda"):
        return not (settings.engine == "leap" and settings.rule == "sft")
    from leap.models.transformers_backend import cpu_has_fast_bf16

    return cpu_has_fast_bf16()


def _packed_sft_dataset(dataset: Any, tokenizer: Any, max_length: int) -> Any:
    """SFT rows tokenised here (loss on assistant turns only, so packed episode rows train on
    every step's reply and never on observations) and packed by shared prefix (a failed episode's
    corrections share its transcript: it is computed once); see ``leap.packing``."""
    from datasets import Dataset

    from leap.packing import pack_shared_prefixes, sft_features

    rows = [sft_features(tokenizer, row["prompt"], row["completion"]) for row in dataset]
    too_long = sum(len(r["input_ids"]) > max_length for r in rows)
    if too_long:
        log.warning("%d of %d rows exceed max_length %d and are cut", too_long, len(rows), max_length)
    packed = pack_shared_prefixes(rows, max_length)
    tokens = [sum(len(r["input_ids"]) for r in rs) for rs in (rows, packed)]
    log.info("packed %d rows into %d seqs: %d tokens (%d unpacked)", len(rows), len(packed), *tokens[::-1])
    return Dataset.from_list(packed)


def _attention(settings: TrainSettings, device: str) -> Literal["sdpa", "flex"]:
    """The attention packed SFT rows train with (``TrainSettings.attention``)."""
    if settings.attention == "flex" and not device.startswith("cuda"):
        raise ValueError("train.attention: flex attention trains on CUDA only (PyTorch has no CPU backward)")
    return settings.attention


def _tree_collator(
    model: Any,
    tokenizer: Any,
    attention: str,
    device: str,
    concatenate: bool,
    lanes: bool,
    label_positions: bool = False,
    multiple_of: int = 1,
) -> Any:
    """Packed rows need a tree mask: a block mask over one sequence per micro-batch for flex
    attention, a dense 4D mask otherwise (boolean for sdpa, additive for eager), per row, per
    lane of rows side by side (``lanes``) or over the micro-batch's rows in one sequence
    (``concatenate``), padded to a multiple of ``multiple_of`` tokens; ``label_positions`` for
    :func:`labelled_loss`."""
    from leap.packing import PrefixTreeCollator

    pad = tokenizer.pad_token_id
    if attention == "flex":
        # lengths padded to 1,024: few distinct shapes, so the compiled flex attention is not
        # recompiled at every step (a new length each step measured slower than sdpa on an H200)
        return PrefixTreeCollator(
            pad,
            mask="block",
            concatenate=True,
            multiple_of=1024,
            device=device,
            label_positions=label_positions,
        )
    implementation = getattr(model.config, "_attn_implementation", None) or "eager"
    if implementation not in ("sdpa", "eager"):
        raise ValueError(f"packed SFT needs sdpa or eager attention (4D masks), not {implementation!r}")
    return PrefixTreeCollator(
        pad,
        mask="bool" if implementation == "sdpa" else "float",
        concatenate=concatenate,
        lanes=lanes,
        multiple_of=multiple_of,
        device=device,
        label_positions=label_positions,
    )


def compile_layers(model: Any, mode: str | None = None) -> int:
    """Compile each decoder layer of ``model`` (a transformers causal LM, or a PEFT model around
    one) in place with torch.compile in ``mode`` (its default where None); returns how many. The
    layers compile at their first call, so adapters added afterwards are compiled with them.

    One compilation serves every layer and micro-batch: shapes are dynamic from the start (the
    lanes' count and width change from one micro-batch to the next, and each new kind of change
    compiled again: 3 compilations before the shapes settled), and the first layer's input
    takes a gradient like every other layer's (the frozen embeddings' output takes none, which
    compiled that layer separately). The hidden size stays fixed, as the weights fix it."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(base.get_decoder(), "layers", None)
    if not layers:
        raise ValueError(f"train.compile: {type(base).__name__} has no decoder layers to compile")
    base.enable_input_require_grads()
    for layer in layers:
        layer.compile(dynamic=True, **({"mode": mode} if mode else {}))
    return len(layers)


def _graph_steps() -> Any:
    """A trainer callback that tells torch.compile's CUDA graphs where each optimizer step begins
    (``torch.compiler.cudagraph_mark_step_begin``): the step's passes may then reuse the memory of
    the previous step's recorded layers, whose outputs nothing holds any more (the optimizer has
    taken the gradients and the trainer has set them to None). Not between the micro-batches of
    a step: the gradients summed over them may still be the recorded backward passes' outputs,
    which torch.compile then keeps apart from the next pass's memory on its own."""
    import torch
    from transformers import TrainerCallback

    class GraphSteps(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            torch.compiler.cudagraph_mark_step_begin()

    return GraphSteps()


def frozen_weights_to_bf16(model: Any) -> int:
    """Store the frozen weights of a PEFT model's LoRA-wrapped linear layers in bf16, in place;
    returns how many. bf16 autocast casts an fp32 weight that takes no gradient afresh at every
    use (it caches only the casts of trainable leaves): with SmolLM2-135M, every micro-batch cast
    the whole model's linear weights again. The cast is the same rounding ahead of time, so the
    matrix multiplies and the losses are unchanged (``tests/test_train.py``); the adapters, norms,
    embeddings and head keep their dtype."""
    import torch

    cast = 0
    for module in model.modules():
        base = getattr(module, "base_layer", None)
        if not (isinstance(base, torch.nn.Linear) and hasattr(module, "lora_A")):
            continue
        for parameter in base.parameters():
            if not parameter.requires_grad and parameter.dtype == torch.float32:
                parameter.data = parameter.data.to(torch.bfloat16)
                cast += 1
    return cast


def labelled_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
    """Cross-entropy of a causal LM computed only where a label is: the decoder runs on every
    token, the language-model head (49k outputs for SmolLM2, about a fifth of its FLOPs) only on
    the positions whose next token is a target. Summed, then divided by ``num_items_in_batch``
    (the labelled tokens of the whole optimizer step) where given, else by this batch's count:
    the same value as the model's own loss.

    Those positions come with the batch (``label_positions``, found by the collator on the
    host); without them they are found here, a boolean index whose size a GPU must report back
    to the host in the middle of the step (a synchronisation)."""
    import torch
    import torch.nn.functional as F

    from leap.packing import IGNORE

    targets = F.pad(inputs["labels"][:, 1:], (0, 1), value=IGNORE).flatten()
    positions = inputs.get("label_positions")
    if positions is None:
        positions = (targets != IGNORE).nonzero().squeeze(1)
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = base.get_decoder()(
        input_ids=inputs["input_ids"],
        attention_mask=inputs.get("attention_mask"),
        position_ids=inputs.get("position_ids"),
        use_cache=False,
    ).last_hidden_state
    logits = base.get_output_embeddings()(hidden.flatten(0, 1).index_select(0, positions)).float()
    loss = F.cross_entropy(logits, targets.index_select(0, positions), reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else positions.numel()
    return loss / torch.as_tensor(count, device=loss.device).clamp(min=1)


def average_gradients(model: Any) -> None:
    """Average the trainable parameters' gradients over the training processes, in one
    all-reduce. The leap engine calls the decoder past the DDP wrapper's forward (whose
    bookkeeping is what makes DDP reduce gradients in backward), so it reduces them itself,
    once per optimizer step, before gradient clipping."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def _leap_sft_trainer(trl: Any) -> type:
    """TRL's SFT trainer with :func:`labelled_loss` as its loss."""

    class LeapSFTTrainer(trl.SFTTrainer):
        #: the model's parameters without embeddings, counted once (:meth:`floating_point_ops`)
        _counted_parameters: int | None = None

        def floating_point_ops(self, inputs: dict[str, Any]) -> int:
            """The trainer's estimate, 6 x tokens x parameters, with the parameters counted
            once: transformers counts them anew at every micro-batch, a walk over every
            parameter that took 3 to 4 ms of host time per micro-batch for SmolLM2-135M with
            LoRA adapters (2 CPU cores), time a GPU step's host has little of."""
            main = getattr(self.model, "main_input_name", "input_ids")
            if main not in inputs or not hasattr(self.model, "num_parameters"):
                return 0
            if self._counted_parameters is None:
                self._counted_parameters = self.model.num_parameters(exclude_embeddings=True)
            return 6 * inputs[main].numel() * self._counted_parameters

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs:
                raise NotImplementedError("the leap engine computes no logits to return")
            # the decoder is called directly, past the autocast that accelerate wraps around
            # model.forward: without this context bf16 training ran in fp32
            with self.accelerator.autocast():
                loss = labelled_loss(self.accelerator.unwrap_model(model), inputs, num_items_in_batch)
            processes = self.accelerator.num_processes
            if processes > 1 and num_items_in_batch is not None and self.args.average_tokens_across_devices:
                # num_items_in_batch counts every process's labelled tokens: the gradients are
                # averaged over processes below, so each process's share is scaled back up (as
                # transformers' own compute_loss does)
                loss = loss * processes
            return loss

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
                average_gradients(self.accelerator.unwrap_model(model))
            return loss

    return LeapSFTTrainer


def _throughput_callback(collator: Any, device: str) -> Any:
    """A trainer callback that times optimizer steps and counts the tokens of the micro-batches
    they trained on, for tokens per second after the first (warm-up) step. On CUDA each step's
    end is a CUDA event in the device's queue (:data:`EVENT_TIMING`), read after training: the
    time the device reached it, with no synchronisation in between."""
    import time
    from itertools import pairwise

    import torch
    from transformers import TrainerCallback

    events = device.startswith("cuda") and EVENT_TIMING

    class Throughput(TrainerCallback):
        def __init__(self) -> None:
            #: (a time in seconds, or a CUDA event; the tokens trained so far) at the start and
            #: at every optimizer step's end
            self.marks: list[tuple[Any, int]] = []
            #: micro-batches trained so far (an epoch's last step may have fewer than the
            #: accumulation steps, and the data loader fetches one micro-batch ahead)
            self.micro_batches = 0

        def _mark(self) -> None:
            if events:
                moment: Any = torch.cuda.Event(enable_timing=True)
                moment.record()
            else:
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                moment = time.perf_counter()
            counts = getattr(collator, "counts", [])
            self.marks.append((moment, sum(counts[: self.micro_batches])))

        def _seconds(self) -> list[float]:
            """The marks' times in seconds (the events' from the first, read once here)."""
            if not events:
                return [moment for moment, _ in self.marks]
            torch.cuda.synchronize()
            start = self.marks[0][0]
            return [start.elapsed_time(moment) / 1000 for moment, _ in self.marks]

        def on_train_begin(self, args, state, control, **kwargs):
            self._mark()

        def on_substep_end(self, args, state, control, **kwargs):
            self.micro_batches += 1

        def on_step_end(self, args, state, control, **kwargs):
            self.micro_batches += 1
            self._mark()

        def summary(self) -> dict[str, Any]:
            """Steady-state figures: from the end of the first step to the end of the last (the
            first holds compilation and warm-up), or the whole run where it had one step."""
            if len(self.marks) < 2:
                return {}
            first = 1 if len(self.marks) > 2 else 0
            times = self._seconds()
            marks = [(t, n) for t, (_, n) in zip(times, self.marks, strict=True)]
            (t0, n0), (t1, n1) = marks[first], marks[-1]
            out: dict[str, Any] = {
                "seconds_per_step": (t1 - t0) / (len(self.marks) - 1 - first),
                "micro_batches": self.micro_batches,
                # every step's seconds and tokens (compiled layers may compile again in later
                # steps, as new shapes come)
                "step_seconds": [round(b[0] - a[0], 4) for a, b in pairwise(marks)],
                "step_tokens": [b[1] - a[1] for a, b in pairwise(marks)],
            }
            if n1 > n0:
                out.update(tokens=n1, tokens_per_s=(n1 - n0) / (t1 - t0))
            slots = sum(getattr(collator, "slots", [])[: self.micro_batches])
            if slots:
                out["padding_share"] = 1 - sum(getattr(collator, "counts", [])[: self.micro_batches]) / slots
            return out

    return Throughput()


def train_adapter(
    base_model: str,
    data_file: Path,
    out_dir: Path,
    settings: TrainSettings,
    *,
    init_adapter: Path | None = None,
    seed: int = 0,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on ``data_file`` and save it to ``out_dir`` (atomically).

    ``init_adapter`` continues training a previous iteration's adapter instead of a fresh one;
    ``callbacks`` are further transformers ``TrainerCallback`` objects (a profiler, say).
    Returns the training metrics, also written to ``out_dir/train_metrics.json``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if settings.processes > 1 and world == 1:
        if callbacks:
            raise ValueError("train.processes > 1: callbacks cannot reach the training processes")
        return _train_in_processes(base_model, data_file, out_dir, settings, init_adapter, seed)
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from leap.models.attention_kernels import attention_kernels, attention_label
    from leap.models.transformers_backend import load_tokenizer, resolve_device

    device = resolve_device(settings.device)
    dataset = load_dataset("json", data_files=str(data_file), split="train")
    if len(dataset) == 0:
        raise ValueError(f"{data_file}: no training rows")
    tokenizer = load_tokenizer(base_model)
    tokenizer.padding_side = "right"
    rows = len(dataset)
    packed = settings.rule == "sft"
    attention = _attention(settings, device) if packed else "sdpa"  # DPO/KTO rows are not packed
    if packed:
        dataset = _packed_sft_dataset(dataset, tokenizer, settings.max_length)
    model = AutoModelForCausalLM.from_pretrained(
        base_model, dtype=torch.float32, attn_implementation="flex_attention" if attention == "flex" else None
    )
    lora = LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )
    peft_config: LoraConfig | None = lora
    if init_adapter is not None:
        model = PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True)
        peft_config = None
    graphs = settings.compile == "graphs"
    if settings.compile:
        compile_layers(model, "reduce-overhead" if graphs else None)

    checkpointing = _checkpointing_argument()
    # packed rows under sdpa are batch rows of their own (micro_batch_size of them per
    # micro-batch), unless the step's rows are concatenated into one sequence
    separate = packed and attention == "sdpa" and not settings.concatenate_rows
    rows_per_micro_batch = _micro_batch_size(settings, device) if separate else settings.batch_size
    if settings.batch_size % (rows_per_micro_batch * world if separate else world):
        raise ValueError(
            f"train.batch_size {settings.batch_size} must be a multiple of the rows per micro-batch "
            f"({rows_per_micro_batch if separate else 1}) times the processes ({world})"
        )
    if not separate:
        rows_per_micro_batch //= world  # each process takes its share of the step's rows
    lanes = separate and settings.lanes and rows_per_micro_batch > 1
    fast = settings.engine == "leap"
    if fast and device.startswith("cuda") and "optim" not in settings.extra:
        settings = settings.model_copy(update={"extra": {"optim": "adamw_torch_fused", **settings.extra}})
    # the collator builds masks on the training device, unless it runs in data-loader worker
    # processes (which cannot use CUDA after a fork)
    mask_device = "cpu" if settings.extra.get("dataloader_num_workers") else device
    work = Path(tempfile.mkdtemp(prefix="leap-train-"))
    common: dict[str, Any] = dict(
        output_dir=str(work),
        num_train_epochs=settings.epochs,
        # packed SFT sequences (whole episodes, shared prefixes) are long: with dense masks
        # micro_batch_size of them (one by default on CPU) per micro-batch, and as many per optimizer
        # step as batch_size says (activations of four 1,600-token rows took over 20 GB on CPU;
        # one takes about 4.5 GB); concatenated (or with flex attention) a micro-batch is the
        # step's rows in one sequence
        per_device_train_batch_size=rows_per_micro_batch,
        gradient_accumulation_steps=settings.gradient_accumulation_steps
        * (settings.batch_size // (rows_per_micro_batch * world)),
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        logging_steps=_logging_steps(settings, device),
        # the first step's loss compares engines and runs (benchmarks/train_throughput.py)
        logging_first_step=True,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=_use_bf16(settings, device),
        **{checkpointing: settings.gradient_checkpointing},
        max_length=settings.max_length,
        seed=seed,
        max_steps=settings.max_steps or -1,
        dataloader_num_workers=0,
        disable_tqdm=False,
        # packed SFT rows come tokenised, with their own collator and columns
        **(PACKED_SFT_ARGS if packed else {}),
        # whose attention mask is built on the GPU already: a data loader cannot pin it
        **({"dataloader_pin_memory": False} if packed and mask_device != "cpu" else {}),
        # several processes: the rank's frozen base weights take no part in DDP
        **({"ddp_find_unused_parameters": False} if world > 1 else {}),
        # the trainer's check of every micro-batch's loss for NaN reads it back (two host
        # synchronisations per micro-batch on a GPU); a NaN loss is then logged as NaN
        **({"logging_nan_inf_filter": False} if fast and device != "cpu" and SYNC_FREE_STEPS else {}),
        **settings.extra,
    )
    if settings.rule not in TRAINERS:
        raise ValueError(f"unknown update rule {settings.rule!r}; use sft, dpo or kto")
    if settings.rule == "kto" and settings.batch_size < 2:
        raise ValueError("KTO needs batch_size >= 2 (it estimates a KL term across the batch)")
    import trl

    config_name, trainer_name = TRAINERS[settings.rule]
    rule_args = {} if settings.rule == "sft" else {"beta": settings.beta}
    trainer_class = _leap_sft_trainer(trl) if packed and fast else getattr(trl, trainer_name)
    collator = None
    if packed:
        positions = fast and SYNC_FREE_STEPS
        multiple = GRAPH_WIDTH_MULTIPLE if graphs and attention == "sdpa" else 1
        collator = _tree_collator(
            model, tokenizer, attention, mask_device, not separate, lanes, positions, multiple
        )
    throughput = _throughput_callback(collator, device)
    trainer = trainer_class(
        model=model,
        args=getattr(trl, config_name)(**rule_args, **common),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[throughput, *([_graph_steps()] if graphs else []), *(callbacks or [])],
        **({"data_collator": collator} if packed else {}),
    )
    sparse_dropout = fast and device == "cpu" and SPARSE_DROPOUT_ON_CPU
    if sparse_dropout:
        from leap.sparse_dropout import sparsify_lora_dropout

        sparse_dropout = sparsify_lora_dropout(trainer.model) > 0
    # SFT only: DPO and KTO compute their reference model's outputs where autocast may be off
    bf16_weights = packed and fast and common["bf16"] and BF16_FROZEN_WEIGHTS
    bf16_weights = bf16_weights and frozen_weights_to_bf16(trainer.model) > 0
    if graphs:
        from torch._dynamo.utils import counters

        skips_before = counters["inductor"]["cudagraph_skips"]
    with attention_kernels(device, settings.cudnn_attention):
        result = trainer.train()
    if not trainer.is_world_process_zero():  # the first process saves the adapter
        shutil.rmtree(work, ignore_errors=True)
        return {}
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    history = [row for row in trainer.state.log_history if "loss" in row]
    metrics = {
        "rule": settings.rule,
        "rows": rows,
        "sequences": len(dataset),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "device": device,
        "dtype": "bf16" if common["bf16"] else "fp32",
        "attention": attention_label(attention, device, settings.cudnn_attention),
        "engine": settings.engine,
        "concatenate_rows": not separate and packed,
        "micro_batch_size": rows_per_micro_batch,
        "lanes": lanes,
        "compile": settings.compile,
        # compiled layers that torch.compile ran without a CUDA graph (it says why in its log):
        # all of them on a CPU
        **({"cudagraph_skips": counters["inductor"]["cudagraph_skips"] - skips_before} if graphs else {}),
        "cudnn_attention": settings.cudnn_attention,
        "frozen_weights": "bf16" if bf16_weights else "fp32",
        "lora_dropout": "sparse" if sparse_dropout else ("torch" if settings.lora_dropout else "none"),
        **throughput.summary(),
        "loss_curve": [{"step": r["step"], "loss": r["loss"]} for r in history],
        "base_model": base_model,
        "init_adapter": None if init_adapter is None else str(init_adapter),
        "processes": world,
    }
    atomic_write_json(staging / "train_metrics.json", metrics)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    log.info("trained %s adapter on %d rows: loss %.4f", settings.rule, len(dataset), result.training_loss)
    return json.loads((out_dir / "train_metrics.json").read_text())


def _train_in_processes(
    base_model: str,
    data_file: Path,
    out_dir: Path,
    settings: TrainSettings,
    init_adapter: Path | None,
    seed: int,
) -> dict[str, Any]:
    """:func:`train_adapter` in ``settings.processes`` processes started with torchrun (each
    one a data-parallel rank running leap's engine; the first saves the adapter), ended with
    it. Returns the first process's metrics."""
    import subprocess
    import sys

    from leap.processes import free_port, guarded_command

    job = {
        "base_model": base_model,
        "data_file": str(data_file),
        "out_dir": str(out_dir),
        "settings": settings.model_dump(mode="json"),
        "init_adapter": None if init_adapter is None else str(init_adapter),
        "seed": seed,
    }
    # beside the adapter, where the other nodes of a training across nodes can read it
    job_file = out_dir.with_name(out_dir.name + ".job.json")
    atomic_write_json(job_file, job)
    args = [
        f"--nproc-per-node={settings.processes}",
        *([] if settings.launcher_args else ["--master-addr=127.0.0.1", f"--master-port={free_port()}"]),
        *settings.launcher_args,
        "-m", "leap.train_worker", str(job_file),
    ]  # fmt: skip
    log.info("training in %d processes (torchrun; job %s)", settings.processes, job_file)
    process = subprocess.Popen(
        guarded_command(sys.executable, "torch.distributed.run", args), start_new_session=True
    )
    try:
        code = process.wait()
    except BaseException:  # interrupted: the processes end with this one
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait()
        raise
    finally:
        job_file.unlink(missing_ok=True)
    if code != 0:
        raise RuntimeError(f"training in {settings.processes} processes failed (torchrun exited with {code})")
    return json.loads((out_dir / "train_metrics.json").read_text())
