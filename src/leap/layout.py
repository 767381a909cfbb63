"""The run directory's layout: every path under ``runs/NAME/``, and when a stage is complete.

    runs/NAME/
      config.yaml  summary.json  metrics.jsonl  teacher_cache.jsonl  report.md|html  viewer/
      iter_0/   demos/             the demonstrations (a rollout directory)
                samples.jsonl      D_0
                train/RULE.jsonl   the exported training rows of D_0 ∪ ... ∪ D_k
                adapter/           pi_k (complete once adapter_config.json is there)
                eval_valid/        pi_k on the validation split (a rollout directory)
      iter_k/   rollout/           pi_{k-1} on fresh training tasks (a rollout directory)
                corrections.jsonl  the teacher's corrections of the failed episodes
                teacher_stats.json what they cost
                samples.jsonl      D_k, the corrected steps selected for training
                train/ adapter/ eval_valid/ as above
      final/    test_iter_K/       iteration K on the test split (BC and the best LEAP iteration)
                reference_NAME/    a reference policy on the test split

A rollout directory holds ``episodes.jsonl`` and, once complete, ``summary.json``. Every file
is written atomically and last, so its presence means its stage is done; that is what resume
relies on. The loop, the sweep, the reports and the viewer all read paths from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ITER_PREFIX = "iter_"
TEST_PREFIX = "test_iter_"
REFERENCE_PREFIX = "reference_"


def rollout_done(directory: Path) -> bool:
    """A rollout directory (demonstrations, rollouts, evaluations) is complete."""
    return (directory / "summary.json").is_file()


@dataclass(frozen=True)
class RunLayout:
    root: Path

    # -- the run ----------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def teacher_cache(self) -> Path:
        return self.root / "teacher_cache.jsonl"

    @property
    def viewer(self) -> Path:
        return self.root / "viewer"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def report(self, suffix: str) -> Path:
        return self.root / f"report.{suffix}"

    # -- one iteration ----------------------------------------------------------------------------
    def iteration(self, k: int) -> Path:
        return self.root / f"{ITER_PREFIX}{k}"

    def iterations(self) -> list[int]:
        """The iterations that have a directory, in order."""
        found = (p.name.removeprefix(ITER_PREFIX) for p in self.root.glob(f"{ITER_PREFIX}*"))
        return sorted(int(k) for k in found if k.isdigit())

    @property
    def demos(self) -> Path:
        return self.iteration(0) / "demos"

    def rollout(self, k: int) -> Path:
        return self.iteration(k) / "rollout"

    def corrections(self, k: int) -> Path:
        return self.iteration(k) / "corrections.jsonl"

    def teacher_stats(self, k: int) -> Path:
        return self.iteration(k) / "teacher_stats.json"

    def takeovers(self, k: int) -> Path:
        """The failed episodes as the teacher finished them (take-over corrections)."""
        return self.iteration(k) / "takeovers.jsonl"

    def samples(self, k: int) -> Path:
        return self.iteration(k) / "samples.jsonl"

    def train_file(self, k: int, rule: str) -> Path:
        return self.iteration(k) / "train" / f"{rule}.jsonl"

    def adapter(self, k: int) -> Path:
        return self.iteration(k) / "adapter"

    def adapter_done(self, k: int) -> bool:
        return (self.adapter(k) / "adapter_config.json").is_file()

    def valid(self, k: int) -> Path:
        return self.iteration(k) / "eval_valid"

    def bc_done(self) -> bool:
        """Iteration 0 is whole: its samples, its model and its validation."""
        return self.samples(0).is_file() and self.adapter_done(0) and rollout_done(self.valid(0))

    # -- the budget-matched behaviour cloning reference -----------------------------------------
    @property
    def matched_bc(self) -> Path:
        """BC trained on more demonstrations for the tested LEAP iteration's samples and steps:
        ``demos/`` (the extra demonstrations), ``samples.jsonl``, ``train/sft.jsonl``, ``adapter/``."""
        return self.root / "matched_bc"

    def matched_bc_done(self) -> bool:
        """The budget-matched BC's adapter is trained."""
        return (self.matched_bc / "adapter" / "adapter_config.json").is_file()

    def matched_bc_test(self) -> Path:
        return self.final / "test_matched_bc"

    # -- the final evaluations --------------------------------------------------------------------
    @property
    def final(self) -> Path:
        return self.root / "final"

    def test(self, k: int) -> Path:
        return self.final / f"{TEST_PREFIX}{k}"

    def tests(self) -> dict[int, Path]:
        """The iterations tested so far and their directories."""
        found = {p.name.removeprefix(TEST_PREFIX): p for p in self.final.glob(f"{TEST_PREFIX}*")}
        return {int(k): found[k] for k in sorted((k for k in found if k.isdigit()), key=int)}

    def reference(self, name: str) -> Path:
        return self.final / f"{REFERENCE_PREFIX}{name}"

    def references(self) -> dict[str, Path]:
        """The reference policies evaluated so far and their directories, by name."""
        return {
            p.name.removeprefix(REFERENCE_PREFIX): p for p in sorted(self.final.glob(f"{REFERENCE_PREFIX}*"))
        }


@dataclass(frozen=True)
class SweepLayout:
    """A sweep directory: its manifest, its plots and one run directory per grid point."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / "sweep.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def run(self, name: str) -> RunLayout:
        return RunLayout(self.root / name)
