"""Fuzzed configs and flags (hypothesis): every invalid input ends in one line that names the key
or flag and a non-zero exit; no traceback, and no run that silently does nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from leap.cli import app
from leap.config import ConfigError, RunConfig, parse_config

runner = CliRunner()
#: generated cases that ran, by test (printed at the end of the session by -ra's summary)
TRIED: dict[str, int] = {}

SECTIONS = {
    "env": ["name", "horizon", "n_valid", "n_test", "train_split", "options"],
    "student": ["model", "temperature", "batch_size", "max_new_tokens", "prompt", "device"],
    "teacher": ["kind", "privilege", "mode", "max_retries", "leakage"],
    "demos": ["source", "expert", "privilege", "n_episodes", "reasons"],
    "loop": ["iterations", "rollouts_per_iteration", "correction_steps", "init", "matched_bc", "typo"],
    "train": ["rule", "lora_r", "learning_rate", "max_steps", "bf16", "lr"],
    "budget": ["max_teacher_tokens", "max_cost_usd"],
}
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=300),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-10, max_value=10),
    st.sampled_from(
        ["", "household", "intercode-bash", "nope", "sft", "ppo", "llm", "step", "auto", "teacher"]
    ),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(["style", "memory", "x"]), st.sampled_from(["student", "react", "all"])),
)
edits = st.lists(
    st.sampled_from([(s, k) for s, keys in SECTIONS.items() for k in keys]).flatmap(
        lambda sk: st.tuples(st.just(sk[0]), st.just(sk[1]), values)
    ),
    min_size=1,
    max_size=3,
)


def _count(name: str) -> None:
    TRIED[name] = TRIED.get(name, 0) + 1


def _one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


def _fuzz(examples: int, **options: Any) -> settings:
    """Hypothesis settings of every fuzzer here: a fixed number of derandomized examples, no
    deadline, no example database (the counts in the README are reproducible)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None, **options)


@_fuzz(400)
@given(edits=edits)
def test_fuzzed_configs_load_or_fail_in_one_line(edits: list[tuple[str, str, Any]]) -> None:
    _count("configs")
    data: dict[str, Any] = {"name": "fuzz"}
    for section, key, value in edits:
        data.setdefault(section, {})[key] = value
    try:
        config = parse_config(data, "c.yaml")
    except ConfigError as exc:
        _count("configs rejected")
        message = str(exc)
        assert _one_line(message) and message.startswith("c.yaml: ")
        named = message.removeprefix("c.yaml: ").split(":")[0]
        assert named.split(".")[0] in SECTIONS, message  # it names the key's section
    else:
        assert isinstance(config, RunConfig)


eval_flags = st.fixed_dictionaries(
    {},
    optional={
        "-n": st.integers(min_value=-2, max_value=4),
        "--horizon": st.integers(min_value=-2, max_value=6),
        "--batch-size": st.integers(min_value=-1, max_value=4),
        "--split": st.sampled_from(["valid", "test_ood", "train", "nope", ""]),
        "--env": st.sampled_from(["household", "nope"]),
        "--policy": st.sampled_from(["planner", "searcher", "no-such-model"]),
        "--temperature": st.floats(min_value=-1, max_value=1, allow_nan=False),
    },
)


@_fuzz(60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=eval_flags)
def test_fuzzed_eval_flags_run_or_fail_in_one_line(flags: dict[str, Any], tmp_path_factory) -> None:
    _count("eval flags")
    out = tmp_path_factory.mktemp("eval")
    args = ["eval", *[str(a) for pair in flags.items() for a in pair], "-o", str(out)]
    result = runner.invoke(app, args)
    if result.exit_code == 0:
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n_episodes"] >= 1  # a run that succeeds did something
        if "-n" in flags:
            assert summary["n_episodes"] <= flags["-n"]
    else:
        _count("eval flags rejected")
        assert result.exit_code == 2, result.output
        assert _one_line(result.output), result.output
        assert not (out / "summary.json").exists()


set_flags = st.lists(
    st.sampled_from([(s, k) for s, keys in SECTIONS.items() for k in keys]).flatmap(
        lambda sk: st.tuples(st.just(f"{sk[0]}.{sk[1]}"), values)
    ),
    min_size=1,
    max_size=2,
)


@_fuzz(80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=set_flags)
def test_fuzzed_run_overrides_plan_or_fail_in_one_line(
    pairs: list[tuple[str, Any]], tmp_path_factory
) -> None:
    _count("run --set")
    base = tmp_path_factory.mktemp("run") / "c.yaml"
    base.write_text(yaml.safe_dump({"name": "fuzz", "student": {"model": "tiny-random"}}))
    sets = [a for key, value in pairs for a in ("--set", f"{key}={json.dumps(value)}")]
    result = runner.invoke(app, ["run", str(base), "--dry-run", *sets])
    if result.exit_code == 2:
        _count("run --set rejected")
        assert _one_line(result.output) and "config error:" in result.output, result.output
        assert any(key.split(".")[0] in result.output for key, _ in pairs), result.output
    else:
        # a valid config: the dry run prints the plan and its checks (1 when a check fails)
        assert result.exit_code in (0, 1), result.output
        assert "plan · fuzz" in result.output and "Traceback" not in result.output
    assert not Path("runs/fuzz").exists()


def test_the_fuzzers_ran(capsys) -> None:
    """Runs after the fuzz tests above (file order): say how many generated cases ran, and check
    that each fuzzer produced both valid and invalid inputs."""
    if TRIED:
        for name in ("configs", "eval flags", "run --set"):
            if name in TRIED:
                assert 0 < TRIED.get(f"{name} rejected", 0) < TRIED[name], TRIED
        with capsys.disabled():
            print("\nfuzz cases tried:", ", ".join(f"{k} {v}" for k, v in TRIED.items()))
