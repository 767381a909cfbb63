"""PNG plots of a run or a sweep (matplotlib's object API: no display, no global state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from leap.reports.rundata import RunData
from leap.stats import wilson

#: one colour per reference row, the same in every plot
REFERENCE_STYLES = ("tab:gray", "tab:purple", "tab:brown", "tab:olive", "tab:cyan")
#: the y range of a percentage axis: a little above 100, so a policy at 100 % is not hidden by the frame
PERCENT_TOP = 103


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _references(ax: Axes, run: RunData, key: str, scale: float) -> None:
    for (name, row), colour in zip(sorted(run.references.items()), REFERENCE_STYLES, strict=False):
        ax.axhline(scale * row[key], linestyle="--", linewidth=1, color=colour, label=f"{name} (test)")


def metric_by_iteration(run: RunData, key: str, label: str, path: Path, scale: float = 1.0) -> Path:
    """``key`` on validation (line) and test (points) against the iteration, with reference lines."""
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    its = run.iterations
    valid = [(k, row[key]) for k in its if (row := run.row("valid", k))]
    test = [(k, row[key]) for k in its if (row := run.row("test", k))]
    if valid:
        ax.plot([k for k, _ in valid], [scale * v for _, v in valid], marker="o", label="validation")
    if test:
        ax.plot([k for k, _ in test], [scale * v for _, v in test], "s", markersize=9, label="test")
    _references(ax, run, key, scale)
    ax.set_xlabel("iteration (0 = BC)")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0, top=PERCENT_TOP if scale == 100 else None)
    ax.set_xticks(its or [0])
    ax.set_title(f"{run.name}: {label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _grouped_bars(ax: Axes, groups: Sequence[str], series: dict[str, Sequence[float]]) -> None:
    width = 0.8 / max(len(series), 1)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right")


def category_bars(run: RunData, path: Path) -> Path:
    """Success % per category on the test split: BC, the best LEAP iteration and the references
    (validation per iteration when nothing was tested yet)."""
    cats = run.categories
    series: dict[str, list[float]] = {}
    stage = "test" if any(run.row("test", k) for k in run.iterations) else "valid"
    for k in run.iterations:
        row = run.row(stage, k)
        if row:
            label = "BC" if k == 0 else f"LEAP iter {k}"
            series[label] = [100 * row["per_category"].get(c, {}).get("success_rate", 0.0) for c in cats]
    if stage == "test":
        for name, row in sorted(run.references.items()):
            series[name] = [100 * row["per_category"].get(c, {}).get("success_rate", 0.0) for c in cats]
    fig = Figure(figsize=(max(6.4, 1.1 * len(cats) + 2), 3.8))
    ax = fig.add_subplot()
    _grouped_bars(ax, cats, series)
    ax.set_ylabel("success %")
    ax.set_ylim(0, PERCENT_TOP)
    ax.set_title(f"{run.name}: success per category ({stage})")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def loss_curves(run: RunData, path: Path) -> Path:
    fig = Figure(figsize=(6.4, 3.8))
    ax = fig.add_subplot()
    for k in run.iterations:
        row = run.row("train", k)
        curve = (row or {}).get("loss_curve") or []
        if curve:
            ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], label=f"iteration {k}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.set_title(f"{run.name}: training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def sweep_bars(labels: Sequence[str], series: dict[str, Sequence[float]], title: str, path: Path) -> Path:
    """One group of bars per run of a sweep (test success % of BC and of the best LEAP iteration)."""
    fig = Figure(figsize=(max(6.4, 1.2 * len(labels) + 2), 3.8))
    ax = fig.add_subplot()
    _grouped_bars(ax, labels, series)
    ax.set_ylabel("test success %")
    ax.set_ylim(0, PERCENT_TOP)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _series_name(policy: str) -> str:
    return "LEAP (tested iteration)" if policy.startswith("LEAP") else policy


def budget_figure(runs: Sequence[RunData], title: str) -> Figure:
    """Success % on the runs' test split (Wilson 95 % error bars) against the training budget,
    in samples and in optimizer steps, for BC, the tested LEAP iteration and the budget-matched
    BC of each run; the points of one kind are joined in budget order. LEAP and its matched BC
    share a budget by design, so each kind is nudged sideways by 1 % to keep the error bars
    apart."""
    series: dict[str, list[dict]] = {}
    for run in runs:
        for point in run.budget():
            series.setdefault(_series_name(point["policy"]), []).append(point)
    splits = ", ".join(sorted({run.test_split for run in runs}))
    fig = Figure(figsize=(10, 3.8))
    for i, (key, label) in enumerate((("samples", "training samples"), ("steps", "optimizer steps"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for j, (name, points) in enumerate(series.items()):
            nudged = [
                (p[key] * (1 + 0.01 * (j - 1)), p["success_rate"], p["n_episodes"])
                for p in points
                if p[key] is not None
            ]
            _with_errors(ax, nudged, marker="o", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel(f"success % on {splits} (95 % CI)")
        ax.set_ylim(0, PERCENT_TOP)
        ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return fig


def budget_curves(runs: Sequence[RunData], title: str, path: Path) -> Path:
    """The budget figure (``budget_figure``) saved as ``path``."""
    return _save(budget_figure(runs, title), path)


def _demonstrator(run: RunData) -> str:
    demos = run.config.get("demos", {})
    expert = demos.get("expert", "teacher")
    if expert != "teacher":
        return f"BC on the {expert}"
    level = demos.get("privilege") or run.config.get("teacher", {}).get("privilege")
    return f"BC on the teacher at {level} %"


def _with_errors(ax: Axes, points: Sequence[tuple[float, float, int]], **style: object) -> None:
    """(x, success rate, episodes) points with Wilson 95 % error bars, joined in x order."""
    points = sorted(points)
    rates = [100 * rate for _, rate, _ in points]
    bounds = [wilson(round(rate * n), n) for _, rate, n in points]
    errors = [
        [r - 100 * low for r, (low, _) in zip(rates, bounds, strict=True)],
        [100 * high - r for r, (_, high) in zip(rates, bounds, strict=True)],
    ]
    ax.errorbar([x for x, _, _ in points], rates, yerr=errors, capsize=3, **style)  # type: ignore[arg-type]


def learning_curve_figure(runs: Sequence[RunData], title: str) -> Figure:
    """BC's success on the runs' test split (Wilson 95 % error bars) against the number of
    demonstrations, one line per demonstrator; the tested LEAP iteration of runs that have one
    beside the BC it started from; the non-privileged references as dashed lines."""
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.add_subplot()
    curves: dict[str, list[tuple[float, float, int]]] = {}
    leap: list[tuple[float, float, int]] = []
    references: dict[str, float] = {}
    for run in runs:
        n = run.config.get("demos", {}).get("n_episodes")
        if n is None or (bc := run.row("test", 0)) is None:
            continue
        curves.setdefault(_demonstrator(run), []).append((n, bc["success_rate"], bc["n_episodes"]))
        k = run.best_leap_iteration
        if k is not None and (row := run.row("test", k)) is not None:
            leap.append((n, row["success_rate"], row["n_episodes"]))
        references.update((name, row["success_rate"]) for name, row in run.references.items())
    for name, points in sorted(curves.items()):
        _with_errors(ax, points, marker="o", label=name)
    if leap:
        _with_errors(ax, leap, marker="*", markersize=12, linestyle="none", label="LEAP (from that BC)")
    for (name, rate), colour in zip(sorted(references.items()), REFERENCE_STYLES, strict=False):
        ax.axhline(100 * rate, linestyle="--", linewidth=1, color=colour, label=f"{name} itself")
    splits = ", ".join(sorted({run.test_split for run in runs}))
    ax.set_xscale("log", base=2)
    xs = sorted({x for points in curves.values() for x, _, _ in points})
    ax.set_xticks(xs, [str(x) for x in xs])
    ax.set_xlabel("demonstration episodes (BC's steps in proportion)")
    ax.set_ylabel(f"success % on {splits} (95 % CI)")
    ax.set_ylim(0, PERCENT_TOP)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title(title)
    return fig


def learning_curve(runs: Sequence[RunData], title: str, path: Path) -> Path:
    """The learning-curve figure (``learning_curve_figure``) saved as ``path``."""
    return _save(learning_curve_figure(runs, title), path)
