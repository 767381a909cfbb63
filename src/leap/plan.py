"""``leap run --dry-run``: the resolved plan of a run and checks that its parts are reachable."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from leap.builders import RunParts
from leap.config import RunConfig
from leap.models.registry import BUILTIN_MODELS, is_adapter_dir


@dataclass
class Check:
    what: str
    #: True passed, False failed, None skipped
    ok: bool | None
    detail: str


def plan_rows(config: RunConfig) -> list[tuple[str, str]]:
    c, loop = config, config.loop
    teacher_demo = c.demos.expert == "teacher"
    expert = f"programmatic teacher at {c.demo_privilege} %" if teacher_demo else c.demos.expert
    source = str(c.demos.path) if c.demos.source == "file" else f"the {expert} on {c.env.train_split}"
    demo = f"{c.demos.n_episodes} episodes of {source}"
    teacher = {
        "programmatic": f"programmatic privileged teacher at {c.teacher.privilege} %",
        "llm": f"{c.teacher.model} at {c.teacher.privilege} %, {c.teacher.mode} mode",
        "self": f"the student itself at {c.teacher.privilege} %, {c.teacher.mode} mode",
    }[c.teacher.kind]
    steps = f"{c.train.max_steps} steps" if c.train.max_steps else f"{c.train.epochs:g} epoch(s)"
    if c.train.bc_max_steps:
        steps += f" ({c.train.for_iteration(0).max_steps} for BC)"
    rows = [
        ("run directory", str(config.run_dir)),
        ("environment", f"{c.env.name} (horizon {c.env.horizon or 'default'})"),
        (
            "student",
            f"{c.student.model}, prompt '{c.student.prompt.style}', rollouts at T={c.student.temperature}",
        ),
        ("iteration 0", f"behaviour cloning on {demo}, reasons: {c.demos.reasons}"),
    ]
    kept = "every corrected step" if loop.correction_steps == "all" else "the steps where the student erred"
    if loop.max_repeats_per_episode:
        kept += f", each action at most {loop.max_repeats_per_episode}x per episode"
    if loop.corrections == "takeover":
        kept = "the teacher's steps after it takes over (between the student's first error and its end)"
    for k in range(1, loop.iterations + 1):
        rows.append(
            (
                f"iteration {k}",
                f"roll out on {loop.rollouts_per_iteration} {c.env.train_split} tasks; {teacher} corrects "
                f"episodes scoring < {loop.failure_threshold:g}; training on {kept}; {c.train.rule} on "
                f"D_0..D_{k} from the {loop.init} model",
            )
        )
    tested = "every iteration" if loop.test_iterations == "all" else "BC and the best iteration"
    beside = []
    if loop.matched_bc:
        start = "BC's adapter" if loop.matched_bc_init == "bc" else "the base model"
        beside.append(f"the budget-matched BC (from {start})")
    if loop.reference_experts:
        beside.append("the environment's experts")
    if loop.reference_zero_shot:
        beside.append("the zero-shot student")
    also = f", beside {', '.join(beside)}" if beside else ""
    rows += [
        (
            "training",
            f"LoRA r {c.train.lora_r}, alpha {c.train.lora_alpha}, lr {c.train.learning_rate:g}, {steps}, "
            f"batch {c.train.batch_size}x{c.train.gradient_accumulation_steps}",
        ),
        ("validation", f"{c.env.n_valid or 'all'} {c.env.valid_split} tasks after every iteration"),
        ("test", f"{tested} on {c.env.n_test or 'all'} {c.env.test_split} tasks{also}"),
        (
            "budget",
            f"tokens {c.budget.max_teacher_tokens or 'unlimited'}, cost "
            + (f"${c.budget.max_cost_usd:.2f}" if c.budget.max_cost_usd else "unlimited"),
        ),
    ]
    return rows


def _check_model(what: str, spec: str) -> Check:
    if spec in BUILTIN_MODELS:
        return Check(what, True, f"{spec}: built-in")
    if is_adapter_dir(spec) or Path(spec, "config.json").is_file():
        return Check(what, True, f"{spec}: local directory")
    if Path(spec).exists():
        return Check(what, False, f"{spec}: exists but holds no config.json or adapter_config.json")
    return Check(what, None, f"{spec}: not local; transformers will look it up as a hub id")


def _check_server(spec: str, base_url: str | None, api_key_env: str) -> Check:
    what = "teacher server"
    if not os.environ.get(api_key_env) and base_url is None:
        return Check(what, None, f"{api_key_env} is not set")
    import openai

    client = openai.OpenAI(
        base_url=base_url, api_key=os.environ.get(api_key_env) or "not-needed", max_retries=0, timeout=10
    )
    try:
        client.models.list()
    except openai.OpenAIError as exc:
        return Check(
            what, False, f"{base_url or 'api.openai.com'}: {type(exc).__name__}: {exc}".splitlines()[0]
        )
    finally:
        client.close()
    return Check(what, True, f"{base_url or 'api.openai.com'} answers for {spec}")


def run_checks(config: RunConfig) -> list[Check]:
    checks: list[Check] = []
    parts = RunParts(config, config.layout)
    try:
        env = parts.make_env()
        sizes = {
            s: len(env.task_ids(s))
            for s in (config.env.train_split, config.env.valid_split, config.env.test_split)
        }
        checks.append(Check("environment", True, ", ".join(f"{s}: {n} tasks" for s, n in sizes.items())))
        env.close()
    except Exception as exc:  # any failure to build the environment is what a dry run reports
        checks.append(Check("environment", False, f"{type(exc).__name__}: {exc}"))
    if config.teacher.kind == "programmatic":
        teacher = parts.teacher(1)
        levels = ", ".join(map(str, parts.env.teacher_levels))
        checks.append(Check("teacher", True, f"{teacher.name} (programmatic; levels {levels})"))
    checks.append(_check_model("student model", config.student.model))
    if config.teacher.kind == "llm" or config.demos.reasons == "llm":
        spec = config.teacher.model
        if spec is None:
            checks.append(Check("teacher model", False, "teacher.model is not set"))
        elif spec.startswith("openai:"):
            checks.append(_check_server(spec, config.teacher.base_url, config.teacher.api_key_env))
        else:
            checks.append(_check_model("teacher model", spec))
    if config.demos.source == "file":
        path = config.demos.path
        ok = path is not None and path.is_file()
        checks.append(Check("demonstrations", ok, f"{path}" + ("" if ok else ": no such file")))
    return checks
