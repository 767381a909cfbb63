"""Generation with a LoRA adapter: PEFT's side paths vs the adapter merged into the weights.

Both ways load the same base model and the same adapter (LoRA on every linear layer, random
non-zero weights, like a trained one) and generate greedily for the same batch of household
prompts. Prints seconds for each, their ratio, and whether the replies agree.

    python benchmarks/merged_adapter.py --model smollm2-135m --prompts 32 --rank 16
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from rich.console import Console
from rich.table import Table
from transformers import AutoModelForCausalLM

from leap.agents import PromptSettings, render_prompt
from leap.envs import make_env
from leap.models.registry import resolve_model_path
from leap.models.transformers_backend import TransformersChatModel
from leap.policy import AgentView


def household_prompts(n: int) -> list[list[dict[str, str]]]:
    env = make_env("household")
    prompts = []
    for task_id in list(env.task_ids("valid"))[:n]:
        step = env.reset(task_id)
        view = AgentView(task_id, env.task, step.observation, env.action_space())
        prompts.append(render_prompt(view, PromptSettings(style="student")))
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=40)
    args = parser.parse_args()

    path = resolve_model_path(args.model)
    torch.manual_seed(0)
    lora = LoraConfig(
        r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear", init_lora_weights=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        get_peft_model(AutoModelForCausalLM.from_pretrained(path), lora).save_pretrained(tmp)
        merged = TransformersChatModel(path, adapter=tmp, batch_size=args.prompts)
        unmerged = TransformersChatModel(path, batch_size=args.prompts)
        unmerged.model = PeftModel.from_pretrained(unmerged.model, tmp).eval()
        prompts = household_prompts(args.prompts)
        results = {}
        for name, model in (("PEFT side paths", unmerged), ("merged", merged)):
            model.generate(prompts[:2], max_new_tokens=4)  # warm-up
            started = time.perf_counter()
            replies = model.generate(prompts, max_new_tokens=args.max_new_tokens)
            results[name] = (time.perf_counter() - started, [r.text for r in replies])
    table = Table(title=f"{args.model} + LoRA r {args.rank}: {args.prompts} prompts, greedy")
    for col in ("way", "seconds", "speed-up"):
        table.add_column(col, justify="right")
    base_seconds = results["PEFT side paths"][0]
    for name, (seconds, _) in results.items():
        table.add_row(name, f"{seconds:.1f}", f"{base_seconds / seconds:.2f}x")
    Console().print(table)
    same = sum(a == b for a, b in zip(results["PEFT side paths"][1], results["merged"][1], strict=True))
    print(f"identical replies: {same} of {args.prompts} (bf16 rounding may differ)")


if __name__ == "__main__":
    main()
