"""Run configs: validation with one clear line naming the key, overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shared_data import needs_env_data
from typer.testing import CliRunner

from leap.cli import app
from leap.config import ConfigError, load_config, parse_config

SHIPPED = sorted(Path(__file__).parent.parent.glob("configs/**/*.yaml"))
#: sweep files (a base config, a grid and/or seeds) and the run configs
SWEEPS = [p for p in SHIPPED if "base" in yaml.safe_load(p.read_text())]
CONFIGS = [p for p in SHIPPED if p not in SWEEPS]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "train": {"lr": 1}}, "train.lr: unknown key"),
        (
            {"name": "x", "teacher": {"privilege": 30}},
            "teacher.privilege: Input should be 0, 25, 50, 75 or 100",
        ),
        ({"name": "x", "train": {"rule": "ppo"}}, "train.rule: Input should be 'sft', 'dpo' or 'kto'"),
        (
            {"name": "x", "loop": {"iterations": -1}},
            "loop.iterations: Input should be greater than or equal to 0",
        ),
        ({"train": {}}, "name: Field required"),
        ({"name": "a/b"}, "name: Value error, must be a plain directory name"),
        (
            {"name": "x", "loop": {"corrections": "takeover"}, "teacher": {"kind": "llm", "model": "m"}},
            "loop.corrections: takeover needs teacher.kind: programmatic",
        ),
    ],
)
def test_bad_configs_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "c.yaml")
    assert str(info.value).startswith(f"c.yaml: {message}")
    assert "\n" not in str(info.value)


def test_overrides_and_files(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nloop: {iterations: 3}\n")
    config = load_config(path, {"loop.iterations": 1, "train.rule": "kto"})
    assert config.loop.iterations == 1 and config.train.rule == "kto"
    assert config.run_dir == Path("runs/x")
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")


def test_cli_reports_config_errors_in_one_line(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\nteacher: {kind: oracle}\n")
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2
    assert "config error:" in result.output and "teacher.kind:" in result.output
    assert "Traceback" not in result.output


def test_a_run_directory_resumes_only_its_own_config(tmp_path) -> None:
    """`--set seed=1` on a directory that holds the seed-0 run would mix the two runs' stages:
    it is refused in one line naming the key; extending a run (more iterations) is not."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "output_dir": str(tmp_path / "runs")}))
    first = load_config(path)
    first.check_resume()  # nothing there yet
    first.layout.root.mkdir(parents=True)
    first.layout.config.write_text(yaml.safe_dump(first.model_dump(mode="json")))
    first.check_resume()
    load_config(path, {"loop.iterations": 5, "loop.matched_bc": True}).check_resume()
    # speed settings may change (a run begun on a CPU goes on on a GPU), even where the saved
    # config predates them
    fast = {"student.cache": "static", "train.compile": True, "train.concatenate_rows": True}
    load_config(path, fast).check_resume()
    saved = yaml.safe_load(first.layout.config.read_text())
    del saved["student"]["cache"], saved["train"]["compile"]
    first.layout.config.write_text(yaml.safe_dump(saved))
    first.check_resume()
    # a key leap gained after the run began: absent from the saved config, fine at its default,
    # refused at another value (it would change what the run trains)
    del saved["loop"]["matched_bc_init"]
    first.layout.config.write_text(yaml.safe_dump(saved))
    first.check_resume()
    with pytest.raises(ConfigError, match=r"loop\.matched_bc_init: None, not 'bc'"):
        load_config(path, {"loop.matched_bc_init": "bc"}).check_resume()
    with pytest.raises(ConfigError, match=r"holds a run with seed: 0, not 1; .*--set name="):
        load_config(path, {"seed": 1}).check_resume()
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_config(path, {"train.learning_rate": 0.5}).check_resume()
    result = CliRunner().invoke(app, ["run", str(path), "--set", "seed=1"])
    assert result.exit_code == 2 and "seed: 0, not 1" in result.output and "Traceback" not in result.output
    assert (
        CliRunner()
        .invoke(app, ["run", str(path), "--set", "seed=1", "--set", "name=x1", "--dry-run"])
        .exit_code
        == 0
    )


def test_a_split_the_environment_lacks_stops_the_run_before_any_work(tmp_path) -> None:
    """A misnamed test split would otherwise fail after behaviour cloning and its validation."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "x", "output_dir": str(tmp_path / "runs")}))
    result = CliRunner().invoke(app, ["run", str(path), "--set", "env.test_split=dev"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "config error: env.test_split: household: unknown split 'dev'; known splits:" in result.output
    assert not list((tmp_path / "runs" / "x").glob("iter_*"))  # nothing was rolled out or trained


def _with_data_marks(path: Path):
    """A shipped config, skipped where the benchmark data its environment reads is missing."""
    env = load_config(path).env.name
    return pytest.param(path, marks=needs_env_data(env), id=str(path.relative_to(path.parents[1])))


@pytest.mark.parametrize("path", [_with_data_marks(p) for p in CONFIGS])
def test_shipped_configs_pass_dry_run(path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "environment" in result.output and "FAIL" not in result.output


def test_paper_configs_exist() -> None:
    assert any("paper" in str(p) for p in CONFIGS)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_shipped_sweeps_list_their_runs(path: Path) -> None:
    result = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "runs" in result.output and "=" in result.output


def test_the_three_paper_sweeps_are_shipped() -> None:
    grids = {p.stem: yaml.safe_load(p.read_text()).get("grid") for p in SWEEPS}
    assert grids["privilege"] == {"teacher.privilege": [0, 25, 50, 75, 100]}
    assert grids["update-rule"] == {"train.rule": ["sft", "dpo", "kto"]}
    assert grids["teacher"] == {"teacher.kind": ["programmatic", "self"]}
