"""Reports, the trajectory viewer (in headless Chromium), tracking sinks and sweeps, on a real
run directory made by the tiny model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_loop import _config
from typer.testing import CliRunner

from leap.cli import app
from leap.config import ConfigError, load_config
from leap.io import atomic_write_jsonl, read_jsonl
from leap.loop import LeapRun
from leap.reports import build_report
from leap.reports.plots import budget_figure, learning_curve_figure
from leap.reports.rundata import RunData
from leap.reports.viewer import build_viewer
from leap.sweep import bc_signature, load_sweep, run_sweep


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """One LEAP iteration with the tiny model, TensorBoard and offline W&B on."""
    tmp = tmp_path_factory.mktemp("reported")
    path = _config(tmp, "reported", loop={"iterations": 1}, tracking={"tensorboard": True, "wandb": True})
    config = load_config(path)
    LeapRun(config).run()
    return config.run_dir


def _last(run: Path, stage: str, **where: Any) -> dict[str, Any]:
    rows = [
        r
        for r in read_jsonl(run / "metrics.jsonl")
        if r["stage"] == stage and all(r.get(k) == v for k, v in where.items())
    ]
    assert rows, (stage, where)
    return rows[-1]


def _cells(line: str) -> list[str]:
    """The cells of a Markdown table row ('|' escaped as '\\|' inside a cell)."""
    inner = line.strip()[1:-1]
    return [c.strip() for c in re.split(r"(?<!\\)\|", inner)]


def _tables(markdown: str) -> dict[str, list[dict[str, str]]]:
    """Markdown tables under their '## title', as lists of {header: cell}."""
    tables: dict[str, list[dict[str, str]]] = {}
    for section in markdown.split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        lines = [line for line in body.splitlines() if line.startswith("|")]
        if len(lines) < 2:
            continue
        header = _cells(lines[0])
        tables[title] = [dict(zip(header, _cells(line), strict=True)) for line in lines[2:]]
    return tables


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def test_report_numbers_equal_the_metrics(tiny_run) -> None:
    files = build_report(tiny_run)
    tables = _tables(files.markdown.read_text())
    valid = tables["Validation per iteration (valid)"]
    for k, row in enumerate(valid):
        metric = _last(tiny_run, "valid", iteration=k)
        assert row["success %"] == _pct(metric["success_rate"])
        assert row["mean #actions"] == f"{metric['mean_actions']:.2f}"
        assert row["invalid %"] == _pct(metric["invalid_action_rate"])
    rollout = _last(tiny_run, "rollout", iteration=1)
    assert valid[1]["train-rollout success %"] == _pct(rollout["success_rate"])
    test = {r["policy"].split(" (")[0].removesuffix(" *"): r for r in tables["Test split (test_ood)"]}
    assert test["BC"]["success %"] == _pct(_last(tiny_run, "test", iteration=0)["success_rate"])
    for name in ("planner", "searcher", "zero-shot"):
        reference = _last(tiny_run, "reference", reference=name)
        row = test[f"reference: {name}"]
        assert row["success %"] == _pct(reference["success_rate"])
        assert row["mean #actions"] == f"{reference['mean_actions']:.2f}"
        for category, numbers in reference["per_category"].items():
            assert row[category] == _pct(numbers["success_rate"])
    assert test["reference: planner"]["success %"] == "100.0"  # the privileged planner
    # what each tested policy got wrong, from the same metric rows
    mistakes = {r["policy"]: r for r in tables["Mistakes on the test split"]}
    for label, metric in (
        ("BC (iteration 0)", _last(tiny_run, "test", iteration=0)),
        ("reference: searcher", _last(tiny_run, "reference", reference="searcher")),
    ):
        row = next(r for name, r in mistakes.items() if name.removesuffix(" *") == label)
        for kind, counts in metric["mistakes"].items():
            assert row[kind.replace("_", " ")] == f"{counts['steps']} ({counts['episodes']})"
    bc = tables["Teacher per iteration"][0]  # iteration 0 corrects nothing
    demos = _last(tiny_run, "demos", iteration=0)
    assert bc["episodes corrected"] == bc["steps accepted"] == ""
    assert bc["teacher"] == f"none: BC on {demos['episodes']} demonstrations ({demos['samples']} samples)"
    teacher = tables["Teacher per iteration"][1]
    correct = _last(tiny_run, "correct", iteration=1)
    assert teacher["steps accepted"] == str(correct["steps_accepted"])
    assert teacher["leakage %"] == _pct(correct["leakage_rate"])
    training = tables["Training per iteration"]
    assert [r["rows (iterations 0..k)"] for r in training] == [
        str(_last(tiny_run, "train", iteration=k)["rows"]) for k in (0, 1)
    ]
    # four PNG plots, embedded in the HTML, which needs nothing else
    assert len(files.plots) == 4
    for plot in files.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = files.html.read_text()
    assert html.count('src="data:image/png;base64,') == 4
    assert not re.search(r'src="(?!data:)', html)
    assert "<table>" in html and "reference: planner" in html


def test_report_cli_and_a_clear_error_for_other_directories(tiny_run, tmp_path) -> None:
    result = CliRunner().invoke(app, ["report", str(tiny_run)])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    bad = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert bad.exit_code == 2 and "no metrics.jsonl" in bad.output


def test_tracking_sinks_get_the_same_numbers(tiny_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tiny_run / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    expected = {"valid/success_rate", "train/train_loss", "correct/leakage_rate", "train/loss/iter_0"}
    assert expected <= set(tags)
    logged = {e.step: e.value for e in events.Scalars("valid/mean_actions")}
    for k in (0, 1):
        assert logged[k] == pytest.approx(_last(tiny_run, "valid", iteration=k)["mean_actions"])
    curve = _last(tiny_run, "train", iteration=0)["loss_curve"]
    assert [e.step for e in events.Scalars("train/loss/iter_0")] == [p["step"] for p in curve]
    offline = list((tiny_run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert offline and offline[0].stat().st_size > 0


def test_a_missing_tracker_package_is_a_clear_error(tmp_path, monkeypatch) -> None:
    import builtins

    from leap.tracking import MissingTrackerError, Tracker

    real_import = builtins.__import__

    def no_wandb(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "wandb":
            raise ImportError("No module named 'wandb'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(MissingTrackerError, match="pip install"):
        Tracker(tmp_path, wandb=True)
    with Tracker(tmp_path) as tracker:  # metrics.jsonl alone needs nothing
        tracker.log(0, "valid", success_rate=0.5)
    assert next(read_jsonl(tmp_path / "metrics.jsonl"))["success_rate"] == 0.5


def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/setup.sh --dev installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_viewer_shows_a_correction_in_a_real_browser(tiny_run, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    page = build_viewer(tiny_run)
    corrections = {r["episode_id"]: r for r in read_jsonl(tiny_run / "iter_1" / "corrections.jsonl")}
    browser = _browser()
    try:
        browser.get(page.resolve().as_uri())
        Select(browser.find_element(By.ID, "f-source")).select_by_value("rollout")
        Select(browser.find_element(By.ID, "f-outcome")).select_by_value("failure")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.episode")
        assert len(rows) == 3  # the tiny student's three failed rollouts
        rows[0].click()
        WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "td.correction"))
        heading = browser.find_element(By.CSS_SELECTOR, "#detail h2").text
        assert "rollout" in heading and "iteration 1" in heading
        first = browser.find_element(By.ID, "step-0").find_element(By.CSS_SELECTOR, "td.correction").text
        episode_id = next(iter(corrections))  # rows are in file order, as the corrections are
        expected = next(s for s in corrections[episode_id]["steps"] if s["step"] == 0)
        assert expected["reason"] in first and f"> {expected['action']}" in first
        panel = browser.find_element(By.ID, "privileged")
        panel.click()
        assert corrections[episode_id]["privileged"].splitlines()[0] in panel.text
        shot = tmp_path / "viewer.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_viewer_pages_lazily_over_many_episodes(tiny_run, tmp_path) -> None:
    """A run with 1,200 episodes: the list pages, and chunks hold 50 episodes each."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    big = tmp_path / "big"
    shutil.copytree(tiny_run, big, ignore=shutil.ignore_patterns("viewer", "wandb", "tensorboard"))
    episodes = list(read_jsonl(big / "iter_0" / "eval_valid" / "episodes.jsonl"))
    many = [{**episodes[i % len(episodes)], "episode_id": f"e{i}"} for i in range(1200)]
    atomic_write_jsonl(big / "iter_0" / "eval_valid" / "episodes.jsonl", many)
    page = build_viewer(big)
    chunks = sorted((page.parent / "data").glob("chunk_*.js"))
    assert len(chunks) >= 1200 // 50
    browser = _browser()
    try:
        browser.get(page.resolve().as_uri())
        assert "page 1 of" in browser.find_element(By.ID, "page-info").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "tr.episode")) == 100
        loaded = browser.execute_script("return Object.keys(LEAP_VIEWER.chunks).length")
        assert loaded == 0  # nothing loaded until an episode is opened
        browser.find_element(By.ID, "next").click()
        browser.find_elements(By.CSS_SELECTOR, "tr.episode")[0].click()
        WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr[id^='step-']"))
        assert browser.execute_script("return Object.keys(LEAP_VIEWER.chunks).length") == 1
    finally:
        browser.quit()


def _sweep_file(tmp_path: Path, grid: dict[str, list[Any]], **extra: Any) -> Path:
    base = _config(tmp_path, "base", loop={"iterations": 1})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {"name": "tiny", "base": base.name, "output_dir": str(tmp_path / "sweeps"), "grid": grid, **extra}
        )
    )
    return sweep


def test_speed_settings_leave_the_bc_signature_alone(tmp_path) -> None:
    """Runs that differ only in how fast they compute train the same BC model, and share it."""
    path = _config(tmp_path, "base", loop={"iterations": 1})
    fast = {"student.cache": "static", "train.compile": True, "train.concatenate_rows": True}
    assert bc_signature(load_config(path)) == bc_signature(load_config(path, fast))
    assert bc_signature(load_config(path)) != bc_signature(load_config(path, {"train.lora_r": 3}))
    # the teacher's level changes demonstrations only where the teacher gives them
    searcher = {"demos.expert": "searcher"}
    levels = [load_config(path, {**searcher, "teacher.privilege": p}) for p in (25, 50)]
    assert bc_signature(levels[0]) == bc_signature(levels[1])
    assert bc_signature(load_config(path, {"teacher.privilege": 25})) != bc_signature(load_config(path))


def test_sweep_runs_shares_bc_and_resumes(tmp_path) -> None:
    sweep = _sweep_file(tmp_path, {"teacher.privilege": [0, 100]})
    _, runs = load_sweep(sweep)
    assert [r.name for r in runs] == ["teacher.privilege=0", "teacher.privilege=100"]
    # demos.privilege is unset, so it follows the teacher's level: BC differs between these runs
    assert bc_signature(runs[0].config) != bc_signature(runs[1].config)
    calls: list[str] = []

    def run(config: Any) -> dict[str, Any]:
        calls.append(config.name)
        return LeapRun(config).run()

    directory = run_sweep(sweep, run)
    assert calls == [r.name for r in runs]
    for r in runs:
        assert (directory / r.name / "summary.json").exists()
    first = {p: p.read_bytes() for p in (directory / runs[0].name).rglob("*.jsonl")}
    # resume: everything is done, so a second pass only reads, and changes nothing
    run_sweep(sweep, run)
    assert {p: p.read_bytes() for p in (directory / runs[0].name).rglob("*.jsonl")} == first
    result = CliRunner().invoke(app, ["report", str(directory)])
    assert result.exit_code == 0, result.output
    rows = _tables((directory / "report.md").read_text())["Sweep tiny: one run per grid point"]
    assert [r["teacher.privilege"] for r in rows] == ["0", "100"]
    for r, row in zip(runs, rows, strict=True):
        assert row["BC test %"] == _pct(_last(directory / r.name, "test", iteration=0)["success_rate"])
        assert row["status"] == "done"
    # at 100 % the teacher names hidden facts, which the audit flags; at 0 % it cannot
    assert float(rows[0]["leakage %"]) == 0 and float(rows[1]["leakage %"]) > 0


def test_sweep_shares_behaviour_cloning_between_equal_runs(tmp_path) -> None:
    sweep = _sweep_file(tmp_path, {"train.rule": ["sft", "dpo"]})
    directory = run_sweep(sweep, lambda config: LeapRun(config).run())
    sft, dpo = directory / "train.rule=sft", directory / "train.rule=dpo"
    shared = (dpo / "iter_0" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert shared == (sft / "iter_0" / "adapter" / "adapter_model.safetensors").read_bytes()
    bc_rows = [r for r in read_jsonl(dpo / "metrics.jsonl") if r["iteration"] == 0]
    assert bc_rows and all(r["shared_from"] == "train.rule=sft" for r in bc_rows)
    assert (dpo / "iter_1" / "train" / "dpo.jsonl").exists()


def test_sweep_refuses_a_run_directory_of_another_config_before_running(tmp_path) -> None:
    sweep = _sweep_file(tmp_path, {"teacher.privilege": [0]})
    _, [run] = load_sweep(sweep)
    run.config.layout.root.mkdir(parents=True)
    saved = run.config.model_dump(mode="json")
    run.config.layout.config.write_text(yaml.safe_dump({**saved, "seed": 7}))
    result = CliRunner().invoke(app, ["sweep", str(sweep)])
    assert result.exit_code == 2 and "seed: 7, not 0" in result.output and "Traceback" not in result.output
    assert not run.config.layout.metrics.exists()  # nothing ran


def test_sweep_dry_run_lists_the_grid(tmp_path) -> None:
    sweep = _sweep_file(tmp_path, {"teacher.privilege": [0, 50], "train.rule": ["sft", "kto"]})
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "4 runs" in result.output and "teacher.privilege=50,train.rule=kto" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "base": "base.yaml", "grid": {"teacher.privilege": [7]}}))
    result = CliRunner().invoke(app, ["sweep", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "teacher.privilege" in result.output


def test_a_grid_value_may_set_several_keys_together(tmp_path) -> None:
    """A learning curve holds the epochs fixed: the demonstrations and BC's steps vary together."""
    scale = [
        {"demos.n_episodes": 2, "train.bc_max_steps": 1},
        {"demos.n_episodes": 4, "train.bc_max_steps": 2},
    ]
    sweep = _sweep_file(tmp_path, {"demos.expert": ["searcher", "teacher"], "scale": scale})
    _, runs = load_sweep(sweep)
    assert [r.name for r in runs][:2] == [
        "demos.expert=searcher,demos.n_episodes=2,train.bc_max_steps=1",
        "demos.expert=searcher,demos.n_episodes=4,train.bc_max_steps=2",
    ]
    assert [(r.config.demos.n_episodes, r.config.train.bc_max_steps) for r in runs] == [(2, 1), (4, 2)] * 2
    assert runs[3].overrides == {"demos.expert": "teacher", "scale": scale[1]}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "base": "base.yaml", "grid": {"s": [{"train.lr": 1}]}}))
    result = CliRunner().invoke(app, ["sweep", str(bad), "--dry-run"])
    assert result.exit_code == 2 and "train.lr: unknown key" in result.output


def test_a_sweep_of_seeds_alone_needs_no_grid(tmp_path) -> None:
    base = _config(tmp_path, "base", loop={"iterations": 1})
    path = tmp_path / "seeds.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "base": base.name, "seeds": [3, 4]}))
    _, runs = load_sweep(path)
    assert [(r.name, r.config.seed) for r in runs] == [("seed=3", 3), ("seed=4", 4)]
    path.write_text(yaml.safe_dump({"name": "s", "base": base.name}))
    with pytest.raises(ConfigError, match="grid must map"):
        load_sweep(path)


def test_score_parts_get_columns_where_the_environment_has_them(tmp_path) -> None:
    """WebShop-style rows: the mean score and its four parts appear next to success."""
    from leap.io import append_jsonl

    parts = {"attribute": 0.5, "option": 0.25, "type": 1.0, "price": 0.75}
    headline = {"n_episodes": 4, "success_rate": 0.25, "mean_score": 0.6, "mean_actions": 7.5}
    common = {**headline, "invalid_action_rate": 0.1, "n_errored": 0, "score_parts": parts}
    common["per_category"] = {"beauty": {**common, "success_rate": 0.5}}
    train = {"rows": 3, "steps": 1, "train_loss": 1.0, "train_runtime_s": 1.0, "loss_curve": []}
    reference = {"reference": "planner", "policy": "planner", **common, "success_rate": 1.0}
    for row in (
        {"iteration": 0, "stage": "train", **train},
        {"iteration": 0, "stage": "test", **common},
        {"iteration": None, "stage": "reference", **reference},
    ):
        append_jsonl(tmp_path / "metrics.jsonl", row)
    tables = _tables(build_report(tmp_path).markdown.read_text())
    bc, planner = tables["Test split (test)"]
    assert bc["score"] == "60.0" and bc["attribute"] == "50.0" and bc["option"] == "25.0"
    assert bc["type"] == "100.0" and bc["price"] == "75.0" and bc["beauty"] == "50.0"
    assert planner["success %"] == "100.0"


def test_sweep_repeats_grid_points_over_seeds(tmp_path) -> None:
    """Over seeds: the means with their intervals, and the evidence table: per seed BC, LEAP, the
    budget-matched BC and the teacher without privilege (the searcher) with LEAP's paired
    differences, their means over seeds (Student's t) and the differences pooled over tasks."""
    matched = {"loop.matched_bc": True, "loop.matched_bc_init": "bc"}
    sweep = _sweep_file(tmp_path, {"train.rule": ["sft"]}, seeds=[0, 1], set=matched)
    _, runs = load_sweep(sweep)
    assert [r.name for r in runs] == ["train.rule=sft,seed=0", "train.rule=sft,seed=1"]
    assert [r.config.seed for r in runs] == [0, 1]
    directory = run_sweep(sweep, lambda config: LeapRun(config).run())
    build_report(directory)
    tables = _tables((directory / "report.md").read_text())
    table = tables["Over seeds 0, 1: mean test success % [95 % interval over seeds]"]
    assert len(table) == 1 and table[0]["finished seeds"] == "2"
    bc = [_last(directory / r.name, "test", iteration=0)["success_rate"] for r in runs]
    assert table[0]["BC test %"].startswith(f"{100 * sum(bc) / 2:.1f} [")
    evidence = tables["Evidence over seeds (train.rule = sft): test success % and LEAP's paired differences"]
    assert [row["seed"] for row in evidence] == ["0", "1", "mean of 2", "pooled"]
    pairs: dict[str, tuple[dict, dict]] = {}
    for r, row in zip(runs, evidence, strict=False):
        summary = yaml.safe_load((directory / r.name / "summary.json").read_text())
        assert row["BC %"] == _pct(summary["iterations"][0]["test"]["success_rate"])
        assert row["matched BC %"] == _pct(summary["matched_bc"]["success_rate"])
        assert row["searcher (not privileged) %"] == _pct(summary["references"]["searcher"]["success_rate"])
        for column, key in (
            ("BC", "bc"),
            ("matched BC", "matched_bc"),
            ("searcher (not privileged)", "reference_searcher"),
        ):
            c = summary["comparisons"][key]
            assert row[f"LEAP − {column}"].startswith(f"{100 * c['difference']:+.1f} [")
        for key, test in (("bc", "test_iter_0"), ("leap", f"test_iter_{summary['best_leap_iteration']}")):
            episodes = read_jsonl(directory / r.name / "final" / test / "episodes.jsonl")
            pairs.setdefault(key, ({}, {}))[r.config.seed].update(
                (e["task_id"], float(e["success"])) for e in episodes
            )
    mean = evidence[2]
    assert mean["BC %"].startswith(f"{100 * sum(bc) / 2:.1f} [")
    from leap.stats import paired_difference

    pooled = paired_difference(
        {f"{s}/{t}": v for s in (0, 1) for t, v in pairs["bc"][s].items()},
        {f"{s}/{t}": v for s in (0, 1) for t, v in pairs["leap"][s].items()},
    )
    assert pooled["n"] == 2 * 3
    assert evidence[3]["LEAP − BC"].startswith(
        f"{100 * pooled['difference']:+.1f} [{100 * pooled['low']:+.1f}"
    )


def test_sweep_report_plots_success_against_the_training_budget(tmp_path) -> None:
    """With the budget-matched BC, a sweep's report has the learning-budget table (what each
    policy trained on, its test success and LEAP's paired difference to it) and its plot."""
    sweep = _sweep_file(tmp_path, {"loop.matched_bc": [True]})
    directory = run_sweep(sweep, lambda config: LeapRun(config).run())
    files = build_report(directory)
    assert (directory / "plots" / "budget.png").stat().st_size > 0
    assert directory / "plots" / "budget.png" in files.plots
    rows = _tables(files.markdown.read_text())["Test success against the training budget"]
    run_dir = directory / "loop.matched_bc=true"
    train = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r["stage"] == "train"]
    matched = _last(run_dir, "matched_bc_train", iteration=None)
    assert [r["policy"] for r in rows] == ["BC (iteration 0)", "LEAP iteration 1", "BC, budget-matched"]
    assert [r["samples"] for r in rows] == [str(t["samples"]) for t in (*train, matched)]
    assert (
        rows[1]["optimizer steps"] == rows[2]["optimizer steps"] == str(train[0]["steps"] + train[1]["steps"])
    )
    assert rows[2]["success %"] == _pct(_last(run_dir, "matched_bc_test", iteration=None)["success_rate"])
    assert "paired tasks" in rows[0]["LEAP − it (paired)"] and "paired tasks" in rows[2]["LEAP − it (paired)"]
    assert rows[1]["LEAP − it (paired)"] == ""
    # the plot names the split the runs were tested on (dev_ood while designing, test_ood after)
    run = RunData.load(run_dir)
    assert run.test_split == run.config["env"]["test_split"] == "test_ood"
    axes = budget_figure([run], "tiny").axes
    assert [ax.get_ylabel() for ax in axes] == ["success % on test_ood (95 % CI)"] * 2


def test_sweep_report_plots_bc_against_the_demonstrations(tmp_path) -> None:
    """A sweep over the number of demonstrations gets the learning curve: BC's test success
    against the demonstrations per demonstrator, LEAP beside the BC it started from."""
    sweep = _sweep_file(tmp_path, {"demos.n_episodes": [2, 3]})
    directory = run_sweep(sweep, lambda config: LeapRun(config).run())
    files = build_report(directory)
    assert directory / "plots" / "learning_curve.png" in files.plots
    runs = [RunData.load(directory / f"demos.n_episodes={n}") for n in (2, 3)]
    ax = learning_curve_figure(runs, "tiny").axes[0]
    containers = {c.get_label(): c for c in ax.containers}
    bc = containers["BC on the teacher at 50 %"].lines[0]
    assert list(bc.get_xdata()) == [2, 3]
    assert list(bc.get_ydata()) == [100 * r.success("test", 0) for r in runs]
    leap = containers["LEAP (from that BC)"].lines[0]
    assert list(leap.get_ydata()) == [100 * r.success("test", r.best_leap_iteration) for r in runs]
    references = {line.get_label(): line for line in ax.lines}
    assert set(references) >= {"planner itself", "searcher itself"}
    # the planner solves every task: its line at 100 % stays inside the axes, not under the frame
    assert list(references["planner itself"].get_ydata()) == [100, 100]
    assert ax.get_ylim()[1] > 100


def test_seeds_table_gives_an_interval_only_from_two_seeds() -> None:
    """One finished seed: the mean alone (no interval); two: Student's t over the seeds."""
    from leap.reports.report import _seeds_table

    def run(seed: int, bc: float, leap: float) -> RunData:
        rows = [
            {"iteration": 0, "stage": "test", "success_rate": bc},
            {"iteration": 1, "stage": "test", "success_rate": leap},
        ]
        return RunData(Path(f"s{seed}"), {"seed": seed}, rows, {"best_leap_iteration": 1})

    one = _seeds_table(["k"], {("a",): [run(0, 0.1, 0.3)]}, [0]).rows
    assert one == [["a", "1", "10.0", "30.0", "20.0"]]
    two = _seeds_table(["k"], {("a",): [run(0, 0.1, 0.3), run(1, 0.1, 0.1)]}, [0, 1]).rows
    half = 100 * 12.706 * 0.1414214 / 2**0.5
    assert two[0][:3] == ["a", "2", "10.0 [10.0, 10.0]"]
    assert two[0][4] == f"10.0 [{10 - half:.1f}, {10 + half:.1f}]"


def test_a_sweep_reuses_the_training_of_runs_that_differ_only_in_their_test(tmp_path) -> None:
    """Design runs test on a development split; the evidence sweep tests the same recipe on the
    test split. Its runs take the design runs' finished iterations and budget-matched BC (the
    same bytes) instead of training again, and evaluate on their own split; a run that trains
    differently after BC takes only BC."""
    base = _config(
        tmp_path,
        "base",
        loop={"iterations": 1, "matched_bc": True, "matched_bc_init": "bc"},
        train={"bc_max_steps": 2},  # BC's own budget, so train.max_steps changes iteration 1 only
    )

    def sweep(name: str, **extra: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        data = {"name": name, "base": base.name, "output_dir": str(tmp_path / "sweeps"), "seeds": [0]}
        path.write_text(yaml.safe_dump({**data, **extra}))
        return path

    design = run_sweep(
        sweep("design", set={"env.test_split": "valid"}, grid={"loop.rollouts_per_iteration": [3]}),
        lambda config: LeapRun(config).run(),
    )
    trained: list[str] = []

    def run(config: Any) -> dict[str, Any]:
        trained.append(config.name)
        return LeapRun(config).run()

    # a run of the same recipe without the matched BC, listed first: the design run, which has
    # one, is taken
    plain = load_config(base, {"name": "plain", "env.test_split": "valid", "loop.matched_bc": False})
    LeapRun(plain).run()
    evidence = run_sweep(
        sweep(
            "evidence",
            reuse=[str(plain.run_dir), str(design)],
            grid={"loop.rollouts_per_iteration": [3], "train.max_steps": [2, 1]},
        ),
        run,
    )
    source = design / "loop.rollouts_per_iteration=3,seed=0"
    same = evidence / "loop.rollouts_per_iteration=3,train.max_steps=2,seed=0"
    other = evidence / "loop.rollouts_per_iteration=3,train.max_steps=1,seed=0"
    weights = "adapter/adapter_model.safetensors"
    for k in (0, 1):
        assert (same / f"iter_{k}" / weights).read_bytes() == (source / f"iter_{k}" / weights).read_bytes()
    assert (same / "matched_bc" / weights).read_bytes() == (source / "matched_bc" / weights).read_bytes()
    rows = list(read_jsonl(same / "metrics.jsonl"))
    assert {r["iteration"] for r in rows if r["stage"] == "train"} == {0, 1}
    assert all(
        r.get("shared_from") == source.name for r in rows if r["stage"] in ("train", "matched_bc_train")
    )
    # the tests are its own, on its own split
    for test in ("test_iter_0", "test_iter_1", "test_matched_bc", "reference_searcher"):
        tasks = {e["task_id"] for e in read_jsonl(same / "final" / test / "episodes.jsonl")}
        assert tasks and all(t.startswith("test_ood/") for t in tasks)
    assert all(not r.get("shared_from") for r in rows if r["stage"] in ("test", "compare", "reference"))
    # another step budget after BC: BC is shared, iteration 1 and the matched BC are trained anew
    assert (other / "iter_0" / weights).read_bytes() == (source / "iter_0" / weights).read_bytes()
    assert (other / "iter_1" / weights).read_bytes() != (source / "iter_1" / weights).read_bytes()
    assert all(
        not r.get("shared_from") for r in read_jsonl(other / "metrics.jsonl") if r.get("iteration") == 1
    )
    assert trained == [same.name, other.name]  # each still runs (and tests) as a run of its own
