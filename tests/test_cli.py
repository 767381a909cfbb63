"""`leap` commands, run in-process with typer's runner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from leap.cli import app
from leap.io import read_jsonl

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    commands = ("eval", "run", "envs", "models", "baselines", "report", "view", "sweep")
    for command in commands:
        assert command in result.output
    for command in commands:
        sub = runner.invoke(app, [command, "--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output


def test_eval_planner_writes_summary_and_episodes(tmp_path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            "--env",
            "household",
            "--split",
            "valid",
            "--policy",
            "planner",
            "-n",
            "24",
            "--out",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["success_rate"] == 1.0 and summary["n_episodes"] == 24
    assert summary["invalid_action_rate"] == 0.0 and summary["mean_actions"] > 1
    assert sum(c["n_episodes"] for c in summary["per_category"].values()) == 24
    episodes = list(read_jsonl(tmp_path / "episodes.jsonl"))
    assert len(episodes) == 24 and all(e["success"] for e in episodes)
    assert not (tmp_path / "episodes.jsonl.partial").exists()
    assert "100.0" in result.output and "pick_two" in result.output
    # every success rate comes with its Wilson 95 % interval: 24 of 24 -> [86.2, 100.0]
    assert summary["success_interval"][0] == pytest.approx(0.862, abs=1e-3) and summary["n_successes"] == 24
    assert "95 % CI" in result.output and "[86.2, 100.0]" in result.output


def test_eval_resume_keeps_finished_episodes(tmp_path) -> None:
    out = tmp_path / "eval"
    args = ["eval", "-p", "planner", "-s", "valid", "--out", str(out)]
    assert runner.invoke(app, [*args, "-n", "3"]).exit_code == 0
    # an interrupted evaluation leaves its finished episodes in episodes.jsonl.partial
    finished = [{**r, "policy": "kept"} for r in read_jsonl(out / "episodes.jsonl")]
    (out / "episodes.jsonl").unlink()
    (out / "summary.json").unlink()
    (out / "episodes.jsonl.partial").write_text("".join(json.dumps(r) + "\n" for r in finished))
    result = runner.invoke(app, [*args, "-n", "5", "--resume"])
    assert result.exit_code == 0, result.output
    policies = [r["policy"] for r in read_jsonl(out / "episodes.jsonl")]
    assert policies == ["kept"] * 3 + ["planner"] * 2
    assert not (out / "episodes.jsonl.partial").exists()
    # without --resume a stale partial file is discarded
    (out / "episodes.jsonl.partial").write_text("".join(json.dumps(r) + "\n" for r in finished))
    assert runner.invoke(app, [*args, "-n", "3"]).exit_code == 0
    assert {r["policy"] for r in read_jsonl(out / "episodes.jsonl")} == {"planner"}


def test_eval_searcher_is_weaker(tmp_path) -> None:
    for policy in ("planner", "searcher"):
        result = runner.invoke(
            app, ["eval", "-p", policy, "-s", "test_ood", "-n", "60", "-o", str(tmp_path / policy)]
        )
        assert result.exit_code == 0, result.output
    planner, searcher = (
        json.loads((tmp_path / p / "summary.json").read_text()) for p in ("planner", "searcher")
    )
    assert searcher["success_rate"] < 1.0 or searcher["mean_actions"] > planner["mean_actions"]


def test_eval_tiny_model_counts_invalid_actions(tmp_path) -> None:
    result = runner.invoke(
        app,
        [
            "eval",
            "-p",
            "tiny-random",
            "-n",
            "3",
            "--horizon",
            "2",
            "--max-new-tokens",
            "6",
            "--dtype",
            "float32",
            "-o",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_episodes"] == 3 and summary["mean_actions"] == 2
    assert summary["invalid_action_rate"] == 1.0  # a random model does not write valid actions
    assert summary["usage"]["requests"] == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "--split", "nope"], "unknown split 'nope'"),
        (["eval", "--env", "nope"], "unknown environment 'nope'"),
        (["eval", "--policy", "no-such-model"], "unknown model 'no-such-model'"),
        (["eval", "-n", "0"], "-n must be at least 1, not 0"),
        (["eval", "--horizon", "-1"], "--horizon must be at least 1, not -1"),
        (["eval", "--batch-size", "0"], "--batch-size: Input should be greater than or equal to 1"),
        (["eval", "-p", "tiny-random", "--temperature", "-1"], "--temperature: Input should be greater"),
        (["eval", "-p", "tiny-random", "--prompt", "fancy"], "--prompt: Value error, unknown prompt style"),
    ],
)
def test_bad_input_is_one_clear_error(args: list[str], message: str, tmp_path) -> None:
    result = runner.invoke(app, [*args, "-o", str(tmp_path)] if args[0] == "eval" else args)
    assert result.exit_code == 2
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
    assert "Traceback" not in result.output


def test_envs_lists_household() -> None:
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0
    assert "household" in result.output and "test_ood (200)" in result.output and "searcher" in result.output


@pytest.mark.slow
def test_smollm2_evaluates_end_to_end(tmp_path) -> None:
    result = runner.invoke(
        app,
        ["eval", "-p", "smollm2-135m", "-s", "test_ood", "-n", "4", "--horizon", "3", "-o", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n_episodes"] == 4 and summary["n_errored"] == 0
    assert summary["usage"]["completion_tokens"] > 0
    assert all(s["raw"] for e in read_jsonl(tmp_path / "episodes.jsonl") for s in e["steps"])
