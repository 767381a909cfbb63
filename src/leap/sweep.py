"""``leap sweep SWEEP.yaml``: a grid of run configs that differ in a few keys, run one after another.

    name: privilege                       # the sweep directory: OUTPUT_DIR/NAME
    base: ../household-sweep.yaml         # a run config, relative to this file
    output_dir: runs/sweeps               # optional (default runs/sweeps)
    set: {loop.iterations: 1}             # optional overrides applied to every run
    grid:                                 # dotted keys -> values; one run per combination
      teacher.privilege: [0, 25, 50, 75, 100]
      scale:                              # a label -> mappings of keys that vary together
        - {demos.n_episodes: 60, train.bc_max_steps: 32}
        - {demos.n_episodes: 240, train.bc_max_steps: 128}
    seeds: [0, 1, 2]                      # optional: every grid point once per seed
    reuse: [runs/sweeps/design]           # optional: earlier runs whose training may be taken

Each run is an ordinary ``leap run`` directory inside the sweep directory, named after its grid
point (``teacher.privilege=50``), so running the sweep again resumes every run where it stopped.
A run that would train exactly what an earlier run (of this sweep or of ``reuse``) trained takes
it instead of training again: every finished iteration where the two configs differ only in what
is tested (``TEST_KEYS``: a design run on a development split and its test on the test split),
in speed settings or in how many iterations run; else iteration 0 where behaviour cloning is the
same (same environment, student, demonstrations, training settings and seed). Final evaluations
are copied only where the test split and size are the same too.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from leap.config import SPEED_SETTINGS, ConfigError, RunConfig, StrictModel, flatten_keys, load_config
from leap.io import append_jsonl, atomic_write_json, read_jsonl
from leap.layout import RunLayout, SweepLayout, rollout_done

log = logging.getLogger(__name__)


class SweepConfig(StrictModel):
    name: str
    base: Path
    output_dir: Path = Path("runs/sweeps")
    set: dict[str, Any] = Field(default_factory=dict)
    #: dotted config keys -> their values; or a label -> mappings of dotted keys to values
    #: (empty with ``seeds``: the base config once per seed)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    #: repeat every grid point with these seeds (the report gives the mean and its interval)
    seeds: list[int] | None = Field(default=None, min_length=1)
    #: run directories, or directories of them (another sweep's), whose finished training a run
    #: of this sweep takes instead of training again where it would train exactly the same
    #: models (see :func:`training_signature`); paths relative to the working directory, as
    #: ``output_dir``; those that do not exist are skipped
    reuse: list[Path] = Field(default_factory=list)


@dataclass(frozen=True)
class SweepRun:
    name: str
    overrides: dict[str, Any]
    config: RunConfig


def value_text(value: Any) -> str:
    """A grid value as it appears in run names and tables."""
    return value if isinstance(value, str) else json.dumps(value)


def load_sweep(path: str | Path) -> tuple[SweepConfig, list[SweepRun]]:
    """Read a sweep file and expand its grid into validated run configs."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such sweep file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
        sweep = SweepConfig.model_validate(raw)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None
    if (not sweep.grid and not sweep.seeds) or any(not values for values in sweep.grid.values()):
        raise ConfigError(f"{path}: grid must map each key to a non-empty list of values")
    base = sweep.base if sweep.base.is_absolute() else path.parent / sweep.base
    directory = sweep.output_dir / sweep.name
    runs = []
    keys = list(sweep.grid)
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        for seed in sweep.seeds or [None]:
            overrides = point if seed is None else {**point, "seed": seed}
            keyed = _config_keys(overrides)
            name = ",".join(f"{k}={value_text(v)}" for k, v in keyed.items()).replace("/", "_")
            config = load_config(base, {**sweep.set, **keyed, "name": name, "output_dir": str(directory)})
            runs.append(SweepRun(name, overrides, config))
    return sweep, runs


def _config_keys(overrides: dict[str, Any]) -> dict[str, Any]:
    """A grid point's config keys: a grid value that is a mapping of dotted keys (keys that vary
    together, such as the demonstrations and BC's steps) stands for those keys, and its grid key
    is only a label."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        out.update(value if isinstance(value, dict) else {key: value})
    return out


#: config keys that choose what is evaluated after training (and where a run lives), never what
#: is trained: runs that differ only in them (and in speed settings) train the same models
TEST_KEYS = (
    "name",
    "output_dir",
    "env.test_split",
    "env.n_test",
    "loop.matched_bc",
    "loop.test_iterations",
    "loop.reference_experts",
    "loop.reference_zero_shot",
)
#: metric stages of the final evaluations (the rest record training and validation)
TEST_STAGES = ("test", "compare", "reference", "matched_bc_test")


def _speed_fields(part: str) -> set[str]:
    return {k.split(".")[1] for k in SPEED_SETTINGS if k.startswith(part + ".")}


def bc_signature(config: RunConfig) -> str:
    """Everything iteration 0 depends on; runs with equal signatures train the same BC model."""
    c = config
    # the teacher's level matters to demonstrations only where the teacher gives them
    privilege = c.demo_privilege if c.demos.expert == "teacher" else None
    demos = {**c.demos.model_dump(mode="json"), "privilege": privilege}
    # exactly what iteration 0 trains with (BC is always SFT, on its own step budget)
    # settings that change how fast a run computes, not what, are left out, and so is the test
    train = c.train.for_iteration(0).model_dump(
        mode="json", exclude={"rule", "bc_max_steps", *_speed_fields("train")}
    )
    signature: dict[str, Any] = {
        "seed": c.seed,
        "env": c.env.model_dump(mode="json", exclude={"test_split", "n_test"}),
        "student": c.student.model_dump(mode="json", exclude=_speed_fields("student")),
        "demos": demos,
        "train": train,
    }
    if c.demos.reasons == "llm":
        signature["teacher_model"] = c.teacher.model
    return json.dumps(signature, sort_keys=True)


def training_signature(config: RunConfig) -> str:
    """Everything the run's LEAP iterations depend on (the whole config but its test keys, its
    speed settings, its tracking, how many iterations it runs and how its matched BC starts):
    runs with equal signatures train the same model at every iteration they both reach."""
    flat = flatten_keys(config.model_dump(mode="json"))
    # how many iterations run, and how the matched BC is trained, change no LEAP iteration
    left_out = (*TEST_KEYS, *SPEED_SETTINGS, "loop.iterations", "loop.matched_bc_init")
    kept = {k: v for k, v in flat.items() if k not in left_out and not k.startswith("tracking.")}
    return json.dumps(kept, sort_keys=True)


def _test_signature(config: RunConfig) -> tuple[Any, ...]:
    """What a test of an iteration depends on beyond its model: tests of runs with equal test
    signatures and models are the same."""
    return (config.env.test_split, config.env.n_test)


def _iteration_done(layout: RunLayout, k: int) -> bool:
    return layout.samples(k).is_file() and layout.adapter_done(k) and rollout_done(layout.valid(k))


def share_bc(source: Path, target: Path, *, tests: bool = True) -> None:
    """Copy a finished iteration 0 (and, with ``tests``, its test if any) with its metric rows
    into ``target``."""
    share_training(source, target, iterations=0, tests=tests)


def share_training(
    source: Path, target: Path, *, iterations: int, tests: bool, matched_bc: bool = False
) -> list[int]:
    """Copy the finished iterations 0..``iterations`` of ``source`` (up to its first unfinished
    one) with their metric rows into ``target``; with ``matched_bc`` its budget-matched BC's
    training too; with ``tests`` the final evaluations of what is copied. Returns the iterations
    copied."""
    src, dst = RunLayout(source), RunLayout(target)
    target.mkdir(parents=True, exist_ok=True)
    copied: list[int] = []
    while len(copied) <= iterations and _iteration_done(src, len(copied)):
        copied.append(len(copied))
    if not copied:
        return []
    copy_matched = matched_bc and src.matched_bc_done()
    if tests:
        for k in copied:
            if rollout_done(src.test(k)) and not dst.test(k).exists():
                _copy_dir(src.test(k), dst.test(k))
    for row in read_jsonl(src.metrics):
        stage, k = row.get("stage"), row.get("iteration")
        ours = k in copied or (copy_matched and stage == "matched_bc_train")
        if ours and (tests or stage not in TEST_STAGES) and stage != "compare":
            append_jsonl(dst.metrics, {**row, "shared_from": source.name})
    if copy_matched and not dst.matched_bc.exists():
        _copy_dir(src.matched_bc, dst.matched_bc)
    for k in reversed(copied):  # iteration 0 last: its presence means the copy is whole
        if not dst.iteration(k).exists():
            _copy_dir(src.iteration(k), dst.iteration(k))
    return copied


def reusable_runs(paths: list[Path]) -> list[tuple[Path, RunConfig]]:
    """The run directories in ``paths`` (each a run directory or a directory of them) with the
    config they ran; a directory whose config no longer validates is skipped with a warning."""
    found: list[tuple[Path, RunConfig]] = []
    for path in paths:
        candidates = [path] if RunLayout(path).config.is_file() else sorted(path.glob("*/"))
        for run_dir in candidates:
            saved = RunLayout(run_dir).config
            if not saved.is_file():
                continue
            try:
                found.append((run_dir, RunConfig.model_validate(yaml.safe_load(saved.read_text()))))
            except (yaml.YAMLError, ValueError) as exc:
                log.warning("reuse: skipping %s: %s", run_dir, str(exc).splitlines()[0])
    return found


def _copy_dir(source: Path, target: Path) -> None:
    """Copy a directory so that ``target`` appears whole or not at all."""
    staging = target.with_name(f".{target.name}.copying")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)


def run_sweep(
    path: str | Path,
    run: Callable[[RunConfig], dict[str, Any]],
    *,
    on_run: Callable[[int, int, SweepRun], None] | None = None,
) -> Path:
    """Run (or resume) every run of the sweep with ``run``; returns the sweep directory."""
    sweep, runs = load_sweep(path)
    directory = sweep.output_dir / sweep.name
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        SweepLayout(directory).manifest,
        {
            "name": sweep.name,
            "base": str(sweep.base),
            "set": sweep.set,
            "grid": sweep.grid,
            "seeds": sweep.seeds,
            "runs": [{"name": r.name, "overrides": r.overrides} for r in runs],
        },
    )
    done: list[tuple[Path, RunConfig]] = reusable_runs(sweep.reuse)
    for i, r in enumerate(runs):
        if not r.config.layout.iteration(0).exists():
            _share(r, done)
        if on_run is not None:
            on_run(i, len(runs), r)
        run(r.config)
        if r.config.layout.bc_done():
            done.append((r.config.run_dir, r.config))
    return directory


def _share(r: SweepRun, done: list[tuple[Path, RunConfig]]) -> None:
    """Start ``r`` from the training of an earlier run that trained the same models: every
    iteration where the whole training signature is equal (the run that got furthest, its
    budget-matched BC first), else BC where BC's is."""
    config, target = r.config, r.config.run_dir
    others = [
        (source, other)
        for source, other in done
        if source.resolve() != target.resolve() and RunLayout(source).bc_done()
    ]

    def same_matched(other: RunConfig) -> bool:
        mine = (config.loop.iterations, config.loop.matched_bc_init)
        return (other.loop.iterations, other.loop.matched_bc_init) == mine

    def progress(candidate: tuple[Path, RunConfig]) -> tuple[bool, int]:
        layout = RunLayout(candidate[0])
        matched = same_matched(candidate[1]) and layout.matched_bc_done()
        return matched, sum(_iteration_done(layout, k) for k in layout.iterations())

    equal = [(s, o) for s, o in others if training_signature(o) == training_signature(config)]
    if equal:
        source, other = max(equal, key=progress)  # the first of the best, in the order given
        tests = _test_signature(other) == _test_signature(config)
        copied = share_training(
            source, target, iterations=config.loop.iterations, tests=tests, matched_bc=same_matched(other)
        )
        log.info("%s: sharing iterations %s with %s", r.name, copied, source)
        return
    for source, other in others:
        if bc_signature(other) == bc_signature(config):
            log.info("%s: sharing behaviour cloning with %s", r.name, source)
            share_bc(source, target, tests=_test_signature(other) == _test_signature(config))
            return
