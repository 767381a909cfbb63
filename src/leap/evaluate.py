"""Metrics over episodes and the results tables printed by ``leap eval``."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from leap.envs.registry import make_env
from leap.io import append_jsonl, atomic_write_json, atomic_write_jsonl, read_jsonl
from leap.policy import Policy
from leap.rollout import Episode, run_episodes
from leap.stats import interval_text, wilson


def _rates(episodes: Sequence[Episode]) -> dict[str, Any]:
    n = len(episodes)
    steps = sum(e.n_actions for e in episodes)
    solved = sum(e.success for e in episodes)
    return {
        "n_episodes": n,
        "n_successes": solved,
        "success_rate": solved / n if n else 0.0,
        #: the Wilson 95 % interval of the success rate
        "success_interval": list(wilson(solved, n)),
        "mean_score": sum(e.score for e in episodes) / n if n else 0.0,
        "mean_actions": steps / n if n else 0.0,
        "invalid_action_rate": sum(e.n_invalid for e in episodes) / steps if steps else 0.0,
        "n_errored": sum(e.error is not None for e in episodes),
    }


#: how a run labels its comparison with a reference policy that acts without privilege
NOT_PRIVILEGED = " (not privileged)"

#: score parts an environment may report in its final step's ``info["score_parts"]`` (WebShop)
SCORE_PARTS = {"attribute": "r_attribute", "option": "r_option", "type": "r_type", "price": "r_price"}


def score_parts(episodes: Sequence[Episode]) -> dict[str, float] | None:
    """Mean of each score part over the episodes (0 where nothing was scored; an option part
    counts only for goals that have options); None if the environment reports no parts."""
    finals = [e.steps[-1].info.get("score_parts") if e.steps else None for e in episodes]
    if not any(finals):
        return None
    out = {}
    for name, key in SCORE_PARTS.items():
        # an episode that bought nothing counts 0; a part the goal does not have (None) is skipped
        values = [float(f[key]) if f else 0.0 for f in finals if not f or f[key] is not None]
        out[name] = sum(values) / len(values) if values else 0.0
    return out


def summarize(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Success rate (0..1), mean #actions, invalid-action rate, and the same per category."""
    by_category: dict[str, list[Episode]] = defaultdict(list)
    for e in episodes:
        by_category[e.category or "?"].append(e)
    summary = _rates(episodes)
    summary["per_category"] = {c: _rates(eps) for c, eps in sorted(by_category.items())}
    if (parts := score_parts(episodes)) is not None:
        summary["score_parts"] = parts
    return summary


def mistakes(env_name: str, episodes: Sequence[Episode]) -> dict[str, dict[str, int]] | None:
    """What the episodes got wrong, by kind of mistake (the environment's ``mistakes`` counter):
    ``{kind: {"steps": steps of that kind, "episodes": episodes with at least one}}``; None if
    the environment counts none."""
    from leap.envs.registry import env_spec

    counter = env_spec(env_name).mistake_counter()
    if counter is None:
        return None
    per_episode = [counter(e) for e in episodes]
    kinds = dict.fromkeys(kind for c in per_episode for kind in c)  # in the counter's order
    return {
        kind: {"steps": sum(c[kind] for c in per_episode), "episodes": sum(c[kind] > 0 for c in per_episode)}
        for kind in kinds
    }


def evaluations(path: Path) -> dict[str, Path]:
    """The evaluations under ``path`` by label: a run directory's tested policies (BC and LEAP
    iterations, the budget-matched BC, the references), a rollout directory, or an episodes file."""
    from leap.layout import RunLayout

    if path.is_file():
        return {f"{path.parent.name}/{path.name}": path}
    if (path / "episodes.jsonl").is_file():
        return {path.name: path / "episodes.jsonl"}
    layout = RunLayout(path)
    found = {("BC (iteration 0)" if k == 0 else f"LEAP iteration {k}"): d for k, d in layout.tests().items()}
    found["BC, budget-matched"] = layout.matched_bc_test()
    found.update((f"reference: {name}", d) for name, d in layout.references().items())
    return {
        f"{path.name} · {label}": d / "episodes.jsonl"
        for label, d in found.items()
        if (d / "episodes.jsonl").is_file()
    }


def rates_interval(rates: dict[str, Any]) -> str:
    """The Wilson 95 % interval of an evaluation's success rate (``leap.stats.interval_text``)."""
    return interval_text(rates["success_rate"], rates["n_episodes"], rates.get("n_successes"))


def task_successes(episodes_file: Path) -> dict[str, float]:
    """Task id -> 1.0 if solved else 0.0, for paired comparisons of two evaluations."""
    return {r["task_id"]: float(bool(r["success"])) for r in read_jsonl(episodes_file)}


def results_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", caption="95 % CI: Wilson interval of the success rate")
    columns = ("category", "episodes", "success %", "95 % CI", "score", "mean #actions", "invalid %")
    for name in (*columns, "errored"):
        table.add_column(name, justify="left" if name == "category" else "right")

    def row(name: str, r: dict[str, Any], style: str | None = None) -> None:
        table.add_row(
            name,
            str(r["n_episodes"]),
            f"{100 * r['success_rate']:.1f}",
            rates_interval(r),
            f"{100 * r['mean_score']:.1f}",
            f"{r['mean_actions']:.2f}",
            f"{100 * r['invalid_action_rate']:.1f}",
            str(r["n_errored"]),
            style=style,
        )

    for category, r in summary["per_category"].items():
        row(category, r)
    table.add_section()
    row("all", summary, style="bold")
    if parts := summary.get("score_parts"):
        shown = " · ".join(f"{k} {100 * v:.1f}" for k, v in parts.items())
        table.caption = f"{table.caption}; score parts (0-100): {shown}"
    return table


def evaluate(
    env_name: str,
    split: str,
    policy: Policy,
    *,
    n: int | None = None,
    offset: int = 0,
    out_dir: str | Path | None = None,
    batch_size: int = 16,
    horizon: int | None = None,
    env_options: dict[str, Any] | None = None,
    show_progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Run ``policy`` on ``n`` tasks of ``split`` from ``offset`` (wrapping around the split);
    write episodes.jsonl and summary.json into ``out_dir``.

    Episodes are appended to ``episodes.jsonl.partial`` as they finish and the file is renamed
    when all are done, so a reader never takes a half-finished evaluation for a complete one.
    With ``resume``, episodes already in the partial file are kept and not run again.
    """
    options = env_options or {}
    probe = make_env(env_name, **options)
    ids = list(probe.task_ids(split))
    probe.close()
    count = len(ids) if n is None else n
    task_ids = [ids[(offset + i) % len(ids)] for i in range(min(count, len(ids)))]
    out = Path(out_dir) if out_dir is not None else None
    partial = out / "episodes.jsonl.partial" if out else None
    done: dict[str, Episode] = {}
    if partial is not None and partial.exists():
        if resume:
            done = {r["task_id"]: Episode.from_record(r) for r in read_jsonl(partial)}
            atomic_write_jsonl(partial, [e.to_record() for e in done.values()])  # drop a torn last line
        else:
            partial.unlink()
    todo = [t for t in task_ids if t not in done]
    started = time.perf_counter()
    fresh = run_episodes(
        lambda: make_env(env_name, **options),
        todo,
        policy,
        horizon=horizon,
        batch_size=batch_size,
        on_episode=(lambda e: append_jsonl(partial, e.to_record())) if partial else None,
        show_progress=show_progress,
        label=f"{env_name}/{split} · {policy.name}",
    )
    elapsed = time.perf_counter() - started
    done.update((e.task_id, e) for e in fresh)
    episodes = [done[t] for t in task_ids]
    summary = {
        "env": env_name,
        "split": split,
        "policy": policy.name,
        **summarize(episodes),
        "wall_seconds": round(elapsed, 2),
    }
    if (found := mistakes(env_name, episodes)) is not None:
        summary["mistakes"] = found
    model = getattr(policy, "model", None)
    if model is not None:
        summary["usage"] = model.usage.to_dict()
    if out is not None and partial is not None:
        atomic_write_jsonl(out / "episodes.jsonl", [e.to_record() for e in episodes])
        partial.unlink(missing_ok=True)
        atomic_write_json(out / "summary.json", summary)
    return summary
