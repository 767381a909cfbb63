"""``leap report``: report.md and a self-contained report.html for a run or a sweep directory.

The Markdown is rendered from a Jinja template; the HTML is that Markdown converted, with the
PNG plots embedded as data URIs so that the file can be mailed or attached as is.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import markdown

from leap.evaluate import NOT_PRIVILEGED, rates_interval
from leap.io import atomic_write_text
from leap.layout import RunLayout, SweepLayout
from leap.reports import plots
from leap.reports.rundata import NotARunError, RunData
from leap.reports.tables import (
    Table,
    mistakes_table,
    pct,
    teacher_table,
    test_table,
    training_table,
    validation_table,
)
from leap.stats import difference_text, mean_interval, paired_difference
from leap.sweep import value_text


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    plots: list[Path]


def _cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, HTML neutralised, one line."""
    return html.escape(str(value)).replace("|", "\\|").replace("\n", " ")


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leap.reports", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown; cells are escaped by the `cell` filter
    )
    env.filters["cell"] = _cell
    return env


def _write(
    directory: Path,
    title: str,
    facts: list[tuple[str, str]],
    tables: list[Table],
    figures: list[tuple[str, Path]],
) -> ReportFiles:
    env = _templates()
    relative = [(caption, path.relative_to(directory).as_posix()) for caption, path in figures]
    md_text = env.get_template("report.md.j2").render(
        title=title, facts=facts, tables=tables, figures=relative
    )
    md_path, html_path = directory / "report.md", directory / "report.html"  # a run or a sweep
    atomic_write_text(md_path, md_text)
    body = markdown.markdown(md_text, extensions=["tables"])

    def inline(match: re.Match[str]) -> str:
        data = base64.b64encode((directory / match.group(1)).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    page = env.get_template("page.html.j2").render(title=html.escape(title), body=body)
    atomic_write_text(html_path, page)
    return ReportFiles(md_path, html_path, [p for _, p in figures])


def _run_facts(run: RunData) -> list[tuple[str, str]]:
    c = run.config
    teacher = c.get("teacher", {})
    facts = [
        ("environment", f"{run.env} (horizon {c.get('env', {}).get('horizon') or 'default'})"),
        ("student", str(c.get("student", {}).get("model", "?"))),
        (
            "teacher",
            f"{teacher.get('kind', '?')} at privilege {teacher.get('privilege', '?')} %",
        ),
        ("update rule", str(c.get("train", {}).get("rule", "sft"))),
        ("iterations trained", ", ".join(map(str, run.iterations)) or "none yet"),
    ]
    if run.summary:
        facts.append(("best iteration on validation", str(run.best_iteration)))
        if run.summary.get("stopped_early"):
            facts.append(("stopped early", str(run.summary["stopped_early"])))
    else:
        facts.append(("status", "not finished (no summary.json yet)"))
    if run.has_score_parts:
        facts.append(
            (
                "scores",
                "0-100 on the synthetic-goal setting of this environment; not comparable with "
                "the paper's human-goal, full-catalogue numbers",
            )
        )
    return facts


def build_run_report(run_dir: str | Path) -> ReportFiles:
    run = RunData.load(run_dir)
    out = RunLayout(run.dir).plots
    figures = [
        (
            "Success % against iteration",
            plots.metric_by_iteration(run, "success_rate", "success %", out / "success.png", 100),
        ),
        (
            "Mean #actions against iteration",
            plots.metric_by_iteration(run, "mean_actions", "mean #actions", out / "actions.png"),
        ),
        ("Success % per category", plots.category_bars(run, out / "categories.png")),
        ("Training loss", plots.loss_curves(run, out / "loss.png")),
    ]
    tables = [test_table(run), validation_table(run), teacher_table(run), training_table(run)]
    if (mistakes := mistakes_table(run)) is not None:
        tables.insert(1, mistakes)
    return _write(run.dir, f"LEAP run · {run.name}", _run_facts(run), tables, figures)


# -- sweeps ---------------------------------------------------------------------------------------
def _sweep_row(run: RunData, overrides: dict[str, Any]) -> list[str]:
    leap = run.best_leap_iteration
    corrections = [r for k in run.iterations if (r := run.row("correct", k))]
    accepted = sum(r["steps_accepted"] for r in corrections)
    leaked = sum(r["leaked_steps"] for r in corrections)
    return [
        run.name,
        *(value_text(v) for v in overrides.values()),
        pct(run.success("valid", 0)),
        pct(run.success("test", 0)),
        str(leap) if leap is not None else "",
        pct(run.success("valid", leap)),
        pct(run.success("test", leap)),
        str(accepted),
        pct(leaked / accepted) if accepted else "",
        "done" if run.summary else "running or stopped",
    ]


def build_sweep_report(sweep_dir: str | Path) -> ReportFiles:
    sweep = SweepLayout(Path(sweep_dir))
    manifest = json.loads(sweep.manifest.read_text())
    keys = list(manifest["grid"])
    table = Table(
        f"Sweep {manifest['name']}: one run per grid point",
        [
            "run",
            *keys,
            "BC valid %",
            "BC test %",
            "best LEAP iteration",
            "LEAP valid %",
            "LEAP test %",
            "corrected steps",
            "leakage %",
            "status",
        ],
        note="LEAP: the best LEAP iteration (1 and up) on validation, tested next to BC.",
    )
    runs: list[RunData] = []
    points: dict[tuple[str, ...], list[RunData]] = {}
    for entry in manifest["runs"]:
        point = tuple(value_text(entry["overrides"][k]) for k in keys)
        try:
            run = RunData.load(sweep.run(entry["name"]).root)
        except NotARunError:
            table.rows.append([entry["name"], *point, *[""] * 7, "not started"])
            continue
        runs.append(run)
        points.setdefault(point, []).append(run)
        table.rows.append(_sweep_row(run, {k: entry["overrides"][k] for k in keys}))
    tables = [table]
    if manifest.get("seeds"):
        tables.append(_seeds_table(keys, points, manifest["seeds"]))
        tables += [_evidence_table(point, keys, runs) for point, runs in points.items()]
    budgeted = [r for r in runs if any(p["policy"] == "BC, budget-matched" for p in r.budget())]
    if budgeted:
        tables.append(_budget_table(budgeted))
    labels = [r.name for r in runs]
    series = {
        "BC": [100 * (r.success("test", 0) or 0.0) for r in runs],
        "best LEAP iteration": [100 * (r.success("test", r.best_leap_iteration) or 0.0) for r in runs],
    }
    figures = [
        (
            "Test success % per run",
            plots.sweep_bars(labels, series, f"sweep {manifest['name']}", sweep.plots / "sweep.png"),
        )
    ]
    if budgeted:
        figures.append(
            (
                "Test success % against the training budget",
                plots.budget_curves(budgeted, f"sweep {manifest['name']}", sweep.plots / "budget.png"),
            )
        )
    if len({r.config.get("demos", {}).get("n_episodes") for r in runs}) > 1:
        figures.append(
            (
                "BC's test success against the demonstrations",
                plots.learning_curve(runs, f"sweep {manifest['name']}", sweep.plots / "learning_curve.png"),
            )
        )
    facts = [
        ("base config", str(manifest["base"])),
        ("grid", ", ".join(f"{k} = {manifest['grid'][k]}" for k in keys)),
        ("runs", f"{len(runs)} of {len(manifest['runs'])} started"),
    ]
    return _write(sweep.root, f"LEAP sweep · {manifest['name']}", facts, tables, figures)


def _budget_table(runs: list[RunData]) -> Table:
    """Per run: what BC, the tested LEAP iteration and the budget-matched BC trained on, their
    test success with its Wilson interval, and LEAP's paired difference to each baseline."""
    table = Table(
        "Test success against the training budget",
        ["run", "policy", "samples", "optimizer steps", "success %", "95 % CI", "n", "LEAP − it (paired)"],
        note="LEAP − it: the tested LEAP iteration minus that row's policy on the same tasks, with its "
        "bootstrap 95 % interval; steps of LEAP count every iteration up to the tested one.",
    )
    for run in runs:
        for point in run.budget():
            paired = next(
                (c for c in run.comparisons if c.get("against", "").startswith(point["policy"])), None
            )
            table.rows.append(
                [
                    run.name,
                    point["policy"],
                    str(point["samples"]),
                    str(point["steps"]),
                    pct(point["success_rate"]),
                    rates_interval(point),
                    str(point["n_episodes"]),
                    difference_text(paired) if paired else "",
                ]
            )
    return table


def _seeds_table(keys: list[str], points: dict[tuple[str, ...], list[RunData]], seeds: list[int]) -> Table:
    """Per grid point, over its seeds: the mean test success of BC and of the best LEAP
    iteration, and of their difference, each with a Student's t 95 % interval over seeds."""
    table = Table(
        f"Over seeds {', '.join(map(str, seeds))}: mean test success % [95 % interval over seeds]",
        [*keys, "finished seeds", "BC test %", "LEAP test %", "LEAP − BC (points)"],
        note="Only runs that finished (tested both) count; one seed gives no interval.",
    )

    def cell(values: list[float]) -> str:
        if not values:
            return ""
        mean, low, high = mean_interval(values)
        if low is None or high is None:
            return f"{100 * mean:.1f}"
        return f"{100 * mean:.1f} [{100 * low:.1f}, {100 * high:.1f}]"

    for point, runs in points.items():
        tested = [(r.success("test", 0), r.success("test", r.best_leap_iteration)) for r in runs]
        pairs = [(bc, leap) for bc, leap in tested if bc is not None and leap is not None]
        table.rows.append(
            [
                *point,
                str(len(pairs)),
                cell([bc for bc, _ in pairs]),
                cell([leap for _, leap in pairs]),
                cell([leap - bc for bc, leap in pairs]),
            ]
        )
    return table


def _evidence_table(point: tuple[str, ...], keys: list[str], runs: list[RunData]) -> Table:
    """One grid point over its seeds: per seed the test success of BC, the tested LEAP iteration,
    the budget-matched BC and each reference that acts without privilege (the teacher without its
    privilege), and LEAP's paired differences to them; then their means with Student's t 95 %
    intervals over seeds, and the paired differences pooled over every seed's tasks."""
    finished = [r for r in runs if r.summary and r.best_leap_iteration is not None]
    unprivileged = sorted(
        {c["against"] for r in finished for c in r.comparisons if c["against"].endswith(NOT_PRIVILEGED)}
    )
    # (column label, key in RunData.test_successes, label prefix of LEAP's comparison with it)
    policies = [("BC", "BC (iteration 0)", "BC (iteration 0)"), ("LEAP", "LEAP", None)]
    policies += [("matched BC", "matched", "BC, budget-matched")]
    policies += [(label, label.removesuffix(NOT_PRIVILEGED), label) for label in unprivileged]
    baselines = [(label, key, against) for label, key, against in policies if against is not None]
    where = ", ".join(f"{k} = {v}" for k, v in zip(keys, point, strict=True)) or "the base config"
    table = Table(
        f"Evidence over seeds ({where}): test success % and LEAP's paired differences",
        ["seed", *(f"{label} %" for label, _, _ in policies), *(f"LEAP − {b}" for b, _, _ in baselines)],
        note="per seed: success on the same test tasks, and LEAP minus each policy on those tasks in "
        "points with its bootstrap 95 % interval (tasks won/lost). Mean: over seeds, with a Student's t "
        "95 % interval (the one to judge by: it counts the variation between training runs). Pooled: "
        "every seed's tasks as one paired sample, a bootstrap interval that leaves that variation out.",
    )
    rates: dict[str, list[float]] = {}
    differences: dict[str, list[float]] = {}
    pooled: dict[str, dict[str, float]] = {}
    for run in finished:
        successes = run.test_successes()
        row = [str(run.config.get("seed", "?"))]
        for label, key, _ in policies:
            tasks = successes.get(key)
            row.append(pct(sum(tasks.values()) / len(tasks)) if tasks else "")
            if tasks:
                rates.setdefault(label, []).append(sum(tasks.values()) / len(tasks))
                seed = run.config.get("seed")
                pooled.setdefault(label, {}).update((f"{seed}/{t}", v) for t, v in tasks.items())
        for label, _, against in baselines:
            c = run.comparison(against)
            row.append(_difference_cell(c))
            if c is not None:
                differences.setdefault(label, []).append(c["difference"])
        table.rows.append(row)
    table.rows.append(
        [
            f"mean of {len(finished)}",
            *(_mean_cell(rates.get(label), sign=False) for label, _, _ in policies),
            *(_mean_cell(differences.get(label), sign=True) for label, _, _ in baselines),
        ]
    )
    leap = pooled.get("LEAP")
    table.rows.append(
        [
            "pooled",
            *[""] * len(policies),
            *(
                _difference_cell(paired_difference(pooled[label], leap)) if leap and label in pooled else ""
                for label, _, _ in baselines
            ),
        ]
    )
    return table


def _mean_cell(values: list[float] | None, *, sign: bool) -> str:
    """Mean over seeds (in %, or points with ``sign``) with its Student's t 95 % interval."""
    if not values:
        return ""
    fmt = "+.1f" if sign else ".1f"
    mean, low, high = mean_interval(values)
    if low is None or high is None:
        return f"{100 * mean:{fmt}}"
    return f"{100 * mean:{fmt}} [{100 * low:{fmt}}, {100 * high:{fmt}}]"


def _difference_cell(c: dict[str, Any] | None) -> str:
    if c is None:
        return ""
    return (
        f"{100 * c['difference']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}] "
        f"({c.get('wins', 0)}/{c.get('losses', 0)})"
    )


def build_report(path: str | Path) -> ReportFiles:
    """The report of a run directory, or the comparison of a sweep directory."""
    path = Path(path)
    if SweepLayout(path).manifest.is_file():
        return build_sweep_report(path)
    return build_run_report(path)
