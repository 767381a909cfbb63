"""``leap sweep SWEEP.yaml``: a grid of run configs that differ in a few keys, run one after another.

    name: privilege                       # the sweep directory: OUTPUT_DIR/NAME
    base: ../household-sweep.yaml         # a run config, relative to this file
    output_dir: runs/sweeps               # optional (default runs/sweeps)
    set: {loop.iterations: 1}             # optional overrides applied to every run
    grid:                                 # dotted keys -> values; one run per combination
      teacher.privilege: [0, 25, 50, 75, 100]
    seeds: [0, 1, 2]                      # optional: every grid point once per seed

Each run is an ordinary ``leap run`` directory inside the sweep directory, named after its grid
point (``teacher.privilege=50``), so running the sweep again resumes every run where it stopped.
Runs whose behaviour cloning is identical (same environment, student, demonstrations, training
settings and seed) share it: iteration 0 of the first such run is copied instead of retrained.
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

from leap.config import SPEED_SETTINGS, ConfigError, RunConfig, StrictModel, load_config
from leap.io import append_jsonl, atomic_write_json, read_jsonl
from leap.layout import RunLayout, SweepLayout, rollout_done

log = logging.getLogger(__name__)


class SweepConfig(StrictModel):
    name: str
    base: Path
    output_dir: Path = Path("runs/sweeps")
    set: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]]
    #: repeat every grid point with these seeds (the report gives the mean and its interval)
    seeds: list[int] | None = Field(default=None, min_length=1)


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
    if not sweep.grid or any(not values for values in sweep.grid.values()):
        raise ConfigError(f"{path}: grid must map each key to a non-empty list of values")
    base = sweep.base if sweep.base.is_absolute() else path.parent / sweep.base
    directory = sweep.output_dir / sweep.name
    runs = []
    keys = list(sweep.grid)
    for values in itertools.product(*(sweep.grid[k] for k in keys)):
        point = dict(zip(keys, values, strict=True))
        for seed in sweep.seeds or [None]:
            overrides = point if seed is None else {**point, "seed": seed}
            name = ",".join(f"{k}={value_text(v)}" for k, v in overrides.items()).replace("/", "_")
            config = load_config(base, {**sweep.set, **overrides, "name": name, "output_dir": str(directory)})
            runs.append(SweepRun(name, overrides, config))
    return sweep, runs


def bc_signature(config: RunConfig) -> str:
    """Everything iteration 0 depends on; runs with equal signatures train the same BC model."""
    c = config
    demos = {**c.demos.model_dump(mode="json"), "privilege": c.demo_privilege}
    # exactly what iteration 0 trains with (BC is always SFT, on its own step budget)
    # settings that change how fast a run computes, not what, are left out
    speed = {
        part: {k.split(".")[1] for k in SPEED_SETTINGS if k.startswith(part + ".")}
        for part in ("train", "student")
    }
    train = c.train.for_iteration(0).model_dump(
        mode="json", exclude={"rule", "bc_max_steps", *speed["train"]}
    )
    signature: dict[str, Any] = {
        "seed": c.seed,
        "env": c.env.model_dump(mode="json"),
        "student": c.student.model_dump(mode="json", exclude=speed["student"]),
        "demos": demos,
        "train": train,
    }
    if c.demos.reasons == "llm":
        signature["teacher_model"] = c.teacher.model
    return json.dumps(signature, sort_keys=True)


def share_bc(source: Path, target: Path) -> None:
    """Copy a finished iteration 0 (and its test, if any) with its metric rows into ``target``."""
    src, dst = RunLayout(source), RunLayout(target)
    target.mkdir(parents=True, exist_ok=True)
    if rollout_done(src.test(0)) and not dst.test(0).exists():
        _copy_dir(src.test(0), dst.test(0))
    for row in read_jsonl(src.metrics):
        if row.get("iteration") == 0:
            append_jsonl(dst.metrics, {**row, "shared_from": source.name})
    _copy_dir(src.iteration(0), dst.iteration(0))  # last: its presence means the copy is whole


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
    trained_bc: dict[str, Path] = {}
    for i, r in enumerate(runs):
        target = r.config.run_dir
        signature = bc_signature(r.config)
        source = trained_bc.get(signature)
        if source is not None and not r.config.layout.iteration(0).exists():
            log.info("%s: sharing behaviour cloning with %s", r.name, source.name)
            share_bc(source, target)
        if on_run is not None:
            on_run(i, len(runs), r)
        run(r.config)
        if r.config.layout.bc_done():
            trained_bc.setdefault(signature, target)
    return directory
