"""The ``leap`` command."""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from leap.agents import PROMPT_STYLES, PromptSettings

_T = TypeVar("_T")

app = typer.Typer(
    help="LEAP: train small LLM agents from privileged expert teachers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
# Logs and CI capture output to files, where rich would fall back to 80 columns.
console = Console(width=None if sys.stdout.isatty() else 120)


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[-60:]


def _note(message: str) -> None:
    """A finished stage's line: where it ran and how fast."""
    console.print(f"[dim]{message}[/dim]")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code=2)


@app.command("eval")
def eval_command(
    env: Annotated[
        str, typer.Option("--env", "-e", help="Environment name (see `leap envs`).")
    ] = "household",
    split: Annotated[str, typer.Option("--split", "-s", help="Task split to evaluate on.")] = "valid",
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            "-p",
            help="An expert of the environment (planner, searcher, ...), a model name (smollm2-135m, "
            "tiny-random), a model or LoRA adapter directory, or openai:MODEL.",
        ),
    ] = "planner",
    n: Annotated[int | None, typer.Option("-n", help="Evaluate the first N tasks of the split.")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: runs/eval/ENV-SPLIT-POLICY)."),
    ] = None,
    batch_size: Annotated[
        int, typer.Option(help="Episodes advanced together (one model call per step).")
    ] = 16,
    horizon: Annotated[
        int | None, typer.Option(help="Max actions per episode (default: the environment's).")
    ] = None,
    prompt: Annotated[
        str, typer.Option(help=f"Prompt style for models: {', '.join(PROMPT_STYLES)}.")
    ] = "react",
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 0.0,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens generated per step.")] = 64,
    constrain_actions: Annotated[
        bool,
        typer.Option(help="Decode the ACTION line as one of the candidates (local models)."),
    ] = False,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N (local models).")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16, float16 (local models).")] = "auto",
    base_url: Annotated[str | None, typer.Option(help="Server URL for openai:MODEL policies.")] = None,
    api_key_env: Annotated[str, typer.Option(help="Variable holding the API key.")] = "OPENAI_API_KEY",
    engine: Annotated[
        str, typer.Option(help="leap (transformers in this process) or vllm (a vLLM server, local models).")
    ] = "leap",
    resume: Annotated[
        bool,
        typer.Option(
            help="Keep the episodes an interrupted evaluation already finished in OUT "
            "(episodes.jsonl.partial); run it with the same settings."
        ),
    ] = False,
) -> None:
    """Evaluate a policy on a split: results table, episodes.jsonl and summary.json."""
    from pydantic import ValidationError

    from leap.agents import StudentSettings
    from leap.builders import build_policy
    from leap.config import validation_message
    from leap.envs import EnvError, UnknownEnvironmentError
    from leap.evaluate import evaluate, results_table
    from leap.models import ModelError

    for flag, value in (("-n", n), ("--horizon", horizon)):
        if value is not None and value < 1:
            raise _fail(f"{flag} must be at least 1, not {value}")
    try:
        student = StudentSettings(
            model=policy,
            prompt=PromptSettings(style=prompt),
            eval_temperature=temperature,
            max_new_tokens=max_new_tokens,
            constrain_actions=constrain_actions,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            base_url=base_url,
            api_key_env=api_key_env,
            engine=engine,
        )
    except ValidationError as exc:
        flags = {"eval_temperature": "--temperature", "style": "--prompt"}
        raise _fail(
            validation_message(exc, lambda key: flags.get(key, "--" + key.replace("_", "-")))
        ) from None
    chosen = None
    try:
        chosen = build_policy(policy, env, student, seed)
        out_dir = out or Path("runs") / "eval" / _slug(f"{env}-{split}-{policy}")
        summary = evaluate(
            env, split, chosen, n=n, out_dir=out_dir, batch_size=batch_size, horizon=horizon, resume=resume
        )
    except (EnvError, UnknownEnvironmentError, ModelError, ValueError) as exc:
        raise _fail(str(exc)) from None
    finally:  # a served student's server stops with the evaluation
        model = getattr(chosen, "model", None)
        if model is not None:
            model.close()
    console.print(results_table(summary, f"{env} · {split} · {policy}"))
    console.print(f"wrote {out_dir}/episodes.jsonl and summary.json ({summary['wall_seconds']:.1f} s)")


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    import yaml

    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--set expects KEY=VALUE, got {pair!r}")
        result[key.strip()] = yaml.safe_load(value)
    return result


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(help="Run configuration (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan and check the parts; do not run.")
    ] = False,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config key, e.g. --set loop.iterations=1 (repeatable)."),
    ] = None,
) -> None:
    """Run LEAP: behaviour cloning, LEAP iterations, best-iteration selection and a test
    evaluation. Killed runs resume where they stopped when run again."""
    from leap.config import ConfigError, load_config

    try:
        cfg = load_config(config, _overrides(set_))
        cfg.check_resume()
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None
    if dry_run:
        _print_plan(cfg)
        return
    from leap.loop import LeapRun
    from leap.models import ModelError

    started = time.perf_counter()
    try:
        summary = LeapRun(cfg, on_stage=lambda m: console.rule(f"[bold]{m}"), on_note=_note).run()
    except ConfigError as exc:  # what only the built environment can tell (its splits)
        raise _fail(f"config error: {exc}") from None
    except ModelError as exc:  # e.g. the served student's server died: what was done is kept
        raise _fail(f"{exc}; run the same command again to resume") from None
    _print_run_summary(summary)
    console.print(
        f"run directory: {cfg.run_dir}  ({(time.perf_counter() - started) / 60:.1f} min this session)"
    )
    _write_report(cfg.run_dir)


def _write_report(path: Path) -> None:
    from leap.reports import build_report

    files = build_report(path)
    console.print(f"report: {files.html} (and {files.markdown.name}, plots/)")


@app.command("report")
def report_command(
    path: Annotated[Path, typer.Argument(help="A run directory, or a sweep directory to compare its runs.")],
) -> None:
    """Write report.md and a self-contained report.html (tables, plots) into a run or sweep directory."""
    _from_run_dir(path, _write_report)


def _from_run_dir(path: Path, build: Callable[[Path], _T]) -> _T:
    """``build(path)``, with one-line errors for a missing directory or one that is not a run."""
    from leap.reports import NotARunError

    if not path.is_dir():
        raise _fail(f"{path}: no such directory")
    try:
        return build(path)
    except NotARunError as exc:
        raise _fail(str(exc)) from None


@app.command("view")
def view_command(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the viewer in the default web browser.")
    ] = False,
) -> None:
    """Build the static trajectory viewer of a run (RUN/viewer/index.html) and print its path."""
    from leap.reports.viewer import build_viewer

    page = _from_run_dir(run_dir, build_viewer)
    console.print(f"viewer: {page.resolve()}")
    if open_browser:
        import webbrowser

        if not webbrowser.open(page.resolve().as_uri()):
            console.print("[yellow]no web browser found here; open the path above in one[/yellow]")


@app.command("sweep")
def sweep_command(
    sweep: Annotated[Path, typer.Argument(help="Sweep file (YAML): a base config and a grid of keys.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs of the grid; do not run.")
    ] = False,
) -> None:
    """Run a grid of LEAP runs one after another (resumable), then compare them in one report."""
    from leap.config import ConfigError
    from leap.sweep import load_sweep, run_sweep

    try:
        spec, runs = load_sweep(sweep)
        for r in runs:  # an edited sweep file must not resume runs of its old grid point
            r.config.check_resume()
    except ConfigError as exc:
        raise _fail(f"config error: {exc}") from None
    if dry_run:
        table = Table(title=f"sweep · {spec.name} · {len(runs)} runs", title_justify="left")
        table.add_column("run")
        table.add_column("directory")
        for r in runs:
            table.add_row(r.name, str(r.config.run_dir))
        console.print(table)
        return
    from leap.loop import LeapRun

    def run_one(cfg: Any) -> dict[str, Any]:
        summary = LeapRun(
            cfg, on_stage=lambda m: console.rule(f"[bold]{cfg.name} · {m}"), on_note=_note
        ).run()
        _print_run_summary(summary)
        _write_report(cfg.run_dir)
        return summary

    directory = run_sweep(
        sweep, run_one, on_run=lambda i, n, r: console.rule(f"[bold magenta]run {i + 1} of {n}: {r.name}")
    )
    _write_report(directory)


def _print_plan(cfg: Any) -> None:
    from leap.plan import plan_rows, run_checks

    table = Table(title=f"plan · {cfg.name}", title_justify="left", show_header=False)
    table.add_column("stage", style="bold")
    table.add_column("what")
    for stage, what in plan_rows(cfg):
        table.add_row(stage, what)
    console.print(table)
    checks = run_checks(cfg)
    marks = {True: "[green]ok[/green]", False: "[red]FAIL[/red]", None: "[yellow]skipped[/yellow]"}
    for check in checks:
        console.print(f"{marks[check.ok]:>24}  {check.what}: {check.detail}")
    if any(c.ok is False for c in checks):
        raise typer.Exit(code=1)


def _rate_cell(r: dict[str, Any] | None) -> str:
    """'12.5 % [2.2, 47.1] (n=8)': success % with its Wilson 95 % interval and episode count."""
    from leap.stats import rate_text

    return rate_text(r["success_rate"], r["n_episodes"], r.get("n_successes")) if r else ""


def _print_run_summary(summary: dict[str, Any]) -> None:
    table = Table(
        title=f"{summary['name']} · best iteration {summary['best_iteration']}",
        title_justify="left",
        caption="success % with its Wilson 95 % interval and the number of episodes",
    )
    for col in ("iteration", "valid success %", "test success %", "test #actions", "test invalid %"):
        table.add_column(col, justify="right")
    for row in summary["iterations"]:
        v, t = row["valid"], row["test"]
        label = "BC (0)" if row["iteration"] == 0 else str(row["iteration"])
        if row["iteration"] == summary["best_iteration"]:
            label += " *"
        table.add_row(
            label,
            _rate_cell(v),
            _rate_cell(t),
            f"{t['mean_actions']:.2f}" if t else "",
            f"{100 * t['invalid_action_rate']:.1f}" if t else "",
        )
    if m := summary.get("matched_bc"):
        actions, invalid = f"{m['mean_actions']:.2f}", f"{100 * m['invalid_action_rate']:.1f}"
        table.add_row("BC, matched", "", _rate_cell(m), actions, invalid)
    for name, r in (summary.get("references") or {}).items():
        actions, invalid = f"{r['mean_actions']:.2f}", f"{100 * r['invalid_action_rate']:.1f}"
        table.add_row(f"{name} (reference)", "", _rate_cell(r), actions, invalid)
    console.print(table)
    from leap.stats import difference_text

    for c in (summary.get("comparisons") or {}).values():
        console.print(f"LEAP iteration {c['leap_iteration']} − {c['against']} on test: {difference_text(c)}")
    if summary.get("stopped_early"):
        console.print(f"[yellow]stopped early:[/yellow] {summary['stopped_early']}")


@app.command("mistakes")
def mistakes_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Run directories (their tested policies), rollout directories, episodes files."),
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the counts to this JSON file.")
    ] = None,
) -> None:
    """What policies get wrong, by kind of mistake (household, ALFWorld: revisits, objects named
    before they were seen, wrong objects taken, misplaced, invalid, out of steps): steps of each
    kind, and in brackets the episodes with at least one."""
    from leap.evaluate import evaluations, mistakes
    from leap.io import atomic_write_json, read_jsonl
    from leap.rollout import Episode

    rows: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            raise _fail(f"{path}: no such file or directory")
        found = evaluations(path)
        if not found:
            raise _fail(f"{path}: no evaluations (episodes.jsonl) found there")
        for label, file in found.items():
            episodes = [Episode.from_record(r) for r in read_jsonl(file)]
            if not episodes:
                continue
            counts = mistakes(episodes[0].env, episodes)
            if counts is None:
                raise _fail(f"{file}: environment {episodes[0].env!r} counts no mistakes")
            n, solved = len(episodes), sum(e.success for e in episodes)
            steps = sum(e.n_actions for e in episodes)
            rows[label] = {"n_episodes": n, "success_rate": solved / n, "steps": steps, "mistakes": counts}
    kinds = list(dict.fromkeys(kind for row in rows.values() for kind in row["mistakes"]))
    table = Table(
        title="mistakes: steps of each kind (episodes with one)",
        title_justify="left",
        caption="leap.envs.alfred.mistakes says what each kind counts",
    )
    for col in ("evaluation", "episodes", "success %", "steps", *(k.replace("_", " ") for k in kinds)):
        table.add_column(col, justify="left" if col == "evaluation" else "right", overflow="fold")
    for label, row in rows.items():
        cells = [f"{c['steps']} ({c['episodes']})" for c in row["mistakes"].values()]
        success = f"{100 * row['success_rate']:.1f}"
        table.add_row(label, str(row["n_episodes"]), success, str(row["steps"]), *cells)
    console.print(table)
    if json_out is not None:
        atomic_write_json(json_out, rows)
        console.print(f"written: {json_out}")


@app.command("envs")
def envs_command() -> None:
    """List the registered environments, their splits and programmatic experts."""
    from leap.envs import EnvError, env_spec, list_envs

    table = Table(title="environments", title_justify="left")
    for col in ("name", "splits (tasks)", "horizon", "experts", "teacher %"):
        table.add_column(col)
    for name in list_envs():
        spec = env_spec(name)
        experts = ", ".join(sorted(spec.experts))
        levels = ",".join(map(str, spec.teacher_levels)) if spec.teacher else "none"
        try:
            env = spec.make()
        except EnvError as exc:  # e.g. its data is not installed
            table.add_row(name, f"[yellow]unavailable:[/yellow] {exc}", "", experts, levels)
            continue
        splits = ", ".join(f"{s} ({len(ids)})" for s, ids in env.splits().items())
        table.add_row(name, splits, str(env.horizon), experts, levels)
        env.close()
    console.print(table)


@app.command("models")
def models_command(
    prepare: Annotated[
        list[str] | None,
        typer.Option("--prepare", help="Build these registry models into the cache now (e.g. smollm2-135m)."),
    ] = None,
) -> None:
    """List the built-in model names and where they are cached; optionally prepare them."""
    from leap.models.registry import BUILTIN_MODELS, builtin_model_dir, cache_dir, resolve_model_path

    for name in prepare or []:
        if name not in BUILTIN_MODELS:
            raise _fail(f"unknown model {name!r}; built-in: {', '.join(BUILTIN_MODELS)}")
        console.print(f"{name}: {resolve_model_path(name)}")
    table = Table(title=f"built-in models (cache: {cache_dir()})", title_justify="left")
    table.add_column("name")
    table.add_column("cached")
    for name in BUILTIN_MODELS:
        table.add_row(
            name, str(builtin_model_dir(name)) if (builtin_model_dir(name) / "config.json").exists() else "no"
        )
    console.print(table)


@app.command("baselines")
def baselines_command(
    n: Annotated[int, typer.Option("-n", help="Held-out tasks per policy.")] = 30,
    split: Annotated[str, typer.Option(help="Household split.")] = "test_ood",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/baselines"),
) -> None:
    """Reference rows: planner, searcher and zero-shot SmolLM2 on household, side by side."""
    from leap.agents import StudentSettings
    from leap.builders import build_policy
    from leap.evaluate import evaluate

    student = StudentSettings(prompt=PromptSettings(style="react"), max_new_tokens=64, batch_size=n)
    rows = []
    for spec in ("planner", "searcher", "smollm2-135m"):
        policy = build_policy(spec, "household", student)
        summary = evaluate("household", split, policy, n=n, out_dir=out / _slug(spec), batch_size=n)
        rows.append((spec, summary))
    table = Table(title=f"household · {split} · first {n} tasks", title_justify="left")
    for col in ("policy", "success %", "mean #actions", "invalid %", *rows[0][1]["per_category"]):
        table.add_column(col, justify="left" if col == "policy" else "right")
    for spec, s in rows:
        per = [f"{100 * c['success_rate']:.0f}" for c in s["per_category"].values()]
        table.add_row(
            spec,
            f"{100 * s['success_rate']:.1f}",
            f"{s['mean_actions']:.2f}",
            f"{100 * s['invalid_action_rate']:.1f}",
            *per,
        )
    console.print(table)
    console.print(f"episodes and summaries under {out}/")
