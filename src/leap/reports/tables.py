"""The report's tables, built from a run's metric rows: plain headers and formatted cells."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leap.evaluate import SCORE_PARTS, rates_interval
from leap.reports.rundata import RunData
from leap.stats import difference_text


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str = ""


def pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def num(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _label(run: RunData, k: int) -> str:
    label = "BC (iteration 0)" if k == 0 else f"LEAP iteration {k}"
    return label + (" *" if k == run.best_iteration else "")


#: the columns of ``_headline_cells``
HEADLINE = ["success %", "95 % CI", "n", "mean #actions", "invalid %"]


def _headline_cells(row: dict[str, Any] | None) -> list[str]:
    """Success % with its Wilson 95 % interval and episode count, mean #actions and invalid % of
    an evaluation row (blank when there is none)."""
    if row is None:
        return [""] * len(HEADLINE)
    return [
        pct(row["success_rate"]),
        rates_interval(row),
        str(row["n_episodes"]),
        num(row["mean_actions"]),
        pct(row["invalid_action_rate"]),
    ]


def _score_cells(run: RunData, row: dict[str, Any] | None) -> list[str]:
    if not run.has_score_parts:
        return []
    if row is None:
        return [""] * (1 + len(SCORE_PARTS))
    parts = row.get("score_parts") or {}
    return [pct(row.get("mean_score")), *(pct(parts.get(p)) for p in SCORE_PARTS)]


def _score_header(run: RunData) -> list[str]:
    return ["score", *SCORE_PARTS] if run.has_score_parts else []


def _category_cells(run: RunData, row: dict[str, Any] | None) -> list[str]:
    per = (row or {}).get("per_category", {})
    return [pct(per[c]["success_rate"]) if c in per else "" for c in run.categories]


def test_table(run: RunData) -> Table:
    """The paper's table on the test split: BC, the tested LEAP iteration(s) and the references."""
    table = Table(
        f"Test split ({run.config.get('env', {}).get('test_split', 'test')})",
        ["policy", *HEADLINE, *_score_header(run), *run.categories],
        note="success % per category in the last columns; * marks the iteration chosen on validation; "
        "95 % CI: Wilson interval."
        + "".join(
            f" LEAP iteration {c['leap_iteration']} − {c['against']}, paired on the same tasks: "
            f"{difference_text(c)} (bootstrap 95 % interval)."
            for c in run.comparisons
        ),
    )
    for k in run.iterations:
        if (row := run.row("test", k)) is not None:
            table.rows.append([_label(run, k), *_result_cells(run, row)])
    if (row := run.row("matched_bc_test", None)) is not None:
        table.rows.append([row.get("label", "BC, budget-matched"), *_result_cells(run, row)])
    for name, row in sorted(run.references.items()):
        table.rows.append([f"reference: {name} ({row.get('policy', name)})", *_result_cells(run, row)])
    return table


def mistakes_table(run: RunData) -> Table | None:
    """What each tested policy got wrong on the test split, by kind (``leap.envs.alfred.mistakes``);
    None where the environment counts no mistakes."""
    rows: list[tuple[str, dict[str, Any]]] = [
        (_label(run, k), row) for k in run.iterations if (row := run.row("test", k)) is not None
    ]
    if (row := run.row("matched_bc_test", None)) is not None:
        rows.append((row.get("label", "BC, budget-matched"), row))
    rows += [(f"reference: {name}", row) for name, row in sorted(run.references.items())]
    rows = [(label, row) for label, row in rows if row.get("mistakes")]
    if not rows:
        return None
    kinds = list(dict.fromkeys(kind for _, row in rows for kind in row["mistakes"]))
    table = Table(
        "Mistakes on the test split",
        ["policy", "success %", "n", *(k.replace("_", " ") for k in kinds)],
        note="steps of each kind, and in brackets the episodes with at least one "
        "(leap.envs.alfred.mistakes says what each kind counts)",
    )
    for label, row in rows:
        cells = [f"{c['steps']} ({c['episodes']})" if (c := row["mistakes"].get(k)) else "" for k in kinds]
        table.rows.append([label, pct(row["success_rate"]), str(row["n_episodes"]), *cells])
    return table


def _result_cells(run: RunData, row: dict[str, Any]) -> list[str]:
    return [*_headline_cells(row), *_score_cells(run, row), *_category_cells(run, row)]


def validation_table(run: RunData) -> Table:
    table = Table(
        f"Validation per iteration ({run.config.get('env', {}).get('valid_split', 'valid')})",
        [
            "iteration",
            *HEADLINE,
            *_score_header(run),
            "train-rollout success %",
            *run.categories,
        ],
        note="train-rollout success: iteration k's rollouts on fresh training tasks, made by the "
        "model of iteration k-1 before the teacher corrected them.",
    )
    for k in run.iterations:
        row = run.row("valid", k)
        rollout = run.row("rollout", k)
        table.rows.append(
            [
                _label(run, k),
                *_headline_cells(row),
                *_score_cells(run, row),
                pct(rollout["success_rate"]) if rollout else "",
                *_category_cells(run, row),
            ]
        )
    return table


def teacher_table(run: RunData) -> Table:
    table = Table(
        "Teacher per iteration",
        [
            "iteration",
            "teacher",
            "episodes corrected",
            "steps accepted",
            "steps rejected",
            "rejections by cause",
            "leakage %",
            "prompt tokens",
            "completion tokens",
            "cost $",
        ],
    )
    demos = run.row("demos", 0)
    if demos:  # behaviour cloning: demonstrations, nothing corrected
        what = f"none: BC on {demos['episodes']} demonstrations ({demos['samples']} samples)"
        table.rows.append(["0", what, *[""] * 8])
    for k in run.iterations:
        row = run.row("correct", k)
        if row is None:
            continue
        usage = row.get("usage") or {}
        causes = ", ".join(f"{c} {n}" for c, n in sorted(row.get("rejections", {}).items()))
        table.rows.append(
            [
                str(k),
                str(row.get("teacher", "")),
                str(row["episodes_corrected"]),
                str(row["steps_accepted"]),
                str(row["steps_rejected"]),
                causes,
                pct(row["leakage_rate"]),
                str(usage.get("prompt_tokens", 0)),
                str(usage.get("completion_tokens", 0)),
                num(row.get("cost_usd", 0.0), 4),
            ]
        )
    return table


def training_table(run: RunData) -> Table:
    table = Table(
        "Training per iteration",
        [
            "iteration",
            "rule",
            "rows (iterations 0..k)",
            "optimizer steps",
            "mean loss",
            "last loss",
            "seconds",
        ],
    )
    rule = run.config.get("train", {}).get("rule", "sft")
    for k in run.iterations:
        row = run.row("train", k)
        if row is None:
            continue
        curve = row.get("loss_curve") or []
        table.rows.append(
            [
                str(k),
                "sft" if k == 0 else rule,
                str(row["rows"]),
                str(row["steps"]),
                num(row["train_loss"], 4),
                num(curve[-1]["loss"], 4) if curve else "",
                num(row["train_runtime_s"], 0),
            ]
        )
    return table
