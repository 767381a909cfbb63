"""Fine-tuning with TRL and PEFT LoRA: SFT (default), DPO or KTO on the aggregated dataset."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from leap.io import atomic_write_json

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """Trainer settings; defaults follow the paper where it gives them (LoRA r 64, alpha 128,
    dropout 0.05, cosine schedule, one epoch; DPO/KTO beta 0.01)."""

    rule: Literal["sft", "dpo", "kto"] = "sft"
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    learning_rate: float = 3e-5
    epochs: float = 1.0
    #: if set, this many optimizer steps on the shuffled data instead of whole epochs
    max_steps: int | None = None
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 2048
    warmup_ratio: float = 0.03
    beta: float = 0.01
    #: "auto": bf16 where the hardware has it (GPU or a CPU with bf16 instructions)
    bf16: bool | Literal["auto"] = "auto"
    gradient_checkpointing: bool = False
    device: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


#: update rule -> (TRL config class, TRL trainer class)
TRAINERS = {
    "sft": ("SFTConfig", "SFTTrainer"),
    "dpo": ("DPOConfig", "DPOTrainer"),
    "kto": ("KTOConfig", "KTOTrainer"),
}


def _use_bf16(settings: TrainSettings, device: str) -> bool:
    if settings.bf16 != "auto":
        return bool(settings.bf16)
    from leap.models.transformers_backend import cpu_has_fast_bf16

    return device.startswith("cuda") or cpu_has_fast_bf16()


def sft_features(tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> dict:
    """Token ids of a prompt/completion conversation and a mask that is 1 on the tokens of the
    completion's assistant turns (their text and end-of-turn token), 0 elsewhere: user turns
    inside a packed completion are context, never targets."""

    def ids(messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    messages = [*prompt, *completion]
    full = ids(messages, False)
    mask = [0] * len(full)
    for j in range(len(prompt), len(messages)):
        if messages[j]["role"] != "assistant":
            continue
        before, after = ids(messages[:j], True), ids(messages[: j + 1], False)
        if after[: len(before)] != before or full[: len(after)] != after:
            raise ValueError("the chat template does not render a conversation as the sum of its turns")
        mask[len(before) : len(after)] = [1] * (len(after) - len(before))
    return {"input_ids": full, "assistant_masks": mask}


def train_adapter(
    base_model: str,
    data_file: Path,
    out_dir: Path,
    settings: TrainSettings,
    *,
    init_adapter: Path | None = None,
) -> dict[str, Any]:
    """Train a LoRA adapter on ``data_file`` and save it to ``out_dir`` (atomically).

    ``init_adapter`` continues training a previous iteration's adapter instead of a fresh one.
    Returns the training metrics, also written to ``out_dir/train_metrics.json``.
    """
    import torch
    from datasets import load_dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    from leap.models.transformers_backend import load_tokenizer, resolve_device

    device = resolve_device(settings.device)
    dataset = load_dataset("json", data_files=str(data_file), split="train")
    if len(dataset) == 0:
        raise ValueError(f"{data_file}: no training rows")
    tokenizer = load_tokenizer(base_model)
    tokenizer.padding_side = "right"
    if settings.rule == "sft":
        # tokenised here so that packed rows (several turns in one completion) train on their
        # assistant turns only; TRL takes input_ids + assistant_masks as they are
        dataset = dataset.map(
            lambda row: sft_features(tokenizer, row["prompt"], row["completion"]),
            remove_columns=dataset.column_names,
        )
        too_long = sum(len(ids) > settings.max_length for ids in dataset["input_ids"])
        if too_long:
            limit = settings.max_length
            log.warning("%d of %d rows exceed max_length %d and are cut", too_long, len(dataset), limit)
    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
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

    work = Path(tempfile.mkdtemp(prefix="leap-train-"))
    common: dict[str, Any] = dict(
        output_dir=str(work),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=settings.warmup_ratio,  # a float below 1 is a ratio of the total steps
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=_use_bf16(settings, device),
        gradient_checkpointing=settings.gradient_checkpointing,
        max_length=settings.max_length,
        seed=settings.seed,
        max_steps=settings.max_steps or -1,
        dataloader_num_workers=0,
        disable_tqdm=False,
        **settings.extra,
    )
    if settings.rule not in TRAINERS:
        raise ValueError(f"unknown update rule {settings.rule!r}; use sft, dpo or kto")
    if settings.rule == "kto" and settings.batch_size < 2:
        raise ValueError("KTO needs batch_size >= 2 (it estimates a KL term across the batch)")
    import trl

    config_name, trainer_name = TRAINERS[settings.rule]
    rule_args = {} if settings.rule == "sft" else {"beta": settings.beta}
    trainer = getattr(trl, trainer_name)(
        model=model,
        args=getattr(trl, config_name)(**rule_args, **common),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    result = trainer.train()
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    trainer.model.save_pretrained(staging)
    history = [row for row in trainer.state.log_history if "loss" in row]
    metrics = {
        "rule": settings.rule,
        "rows": len(dataset),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_runtime_s": result.metrics.get("train_runtime"),
        "loss_curve": [{"step": r["step"], "loss": r["loss"]} for r in history],
        "base_model": base_model,
        "init_adapter": None if init_adapter is None else str(init_adapter),
    }
    atomic_write_json(staging / "train_metrics.json", metrics)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    log.info("trained %s adapter on %d rows: loss %.4f", settings.rule, len(dataset), result.training_loss)
    return json.loads((out_dir / "train_metrics.json").read_text())
