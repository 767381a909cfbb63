"""A run directory as data: its config, its metric rows and its summary.

Reports take every number from ``metrics.jsonl`` (the last row of each iteration and stage, so
a stage logged again after a resume counts once), which keeps the report equal to the record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leap.io import read_jsonl
from leap.layout import RunLayout


class NotARunError(FileNotFoundError):
    """The directory holds neither a run (metrics.jsonl) nor a sweep (sweep.json)."""


@dataclass
class RunData:
    dir: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None

    @classmethod
    def load(cls, run_dir: str | Path) -> RunData:
        layout = RunLayout(Path(run_dir))
        if not layout.metrics.is_file():
            raise NotARunError(f"{run_dir}: no metrics.jsonl here; is it a `leap run` directory?")
        return cls(
            dir=layout.root,
            config=yaml.safe_load(layout.config.read_text()) if layout.config.is_file() else {},
            rows=list(read_jsonl(layout.metrics)),
            summary=json.loads(layout.summary.read_text()) if layout.summary.is_file() else None,
        )

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.dir.name)

    @property
    def env(self) -> str:
        return str(self.config.get("env", {}).get("name", "?"))

    @property
    def test_split(self) -> str:
        """The split the run's test stage evaluates on (test_ood, or dev_ood while designing)."""
        return str(self.config.get("env", {}).get("test_split", "test"))

    def row(self, stage: str, iteration: int) -> dict[str, Any] | None:
        """The last metric row of ``stage`` for ``iteration``."""
        found = None
        for r in self.rows:
            if r.get("stage") == stage and r.get("iteration") == iteration:
                found = r
        return found

    def success(self, stage: str, iteration: int | None) -> float | None:
        """The success rate of ``stage`` at ``iteration``; None where it has not run."""
        row = self.row(stage, iteration) if iteration is not None else None
        return row["success_rate"] if row else None

    @property
    def iterations(self) -> list[int]:
        """Iterations with a trained model, in order."""
        return sorted({r["iteration"] for r in self.rows if r.get("stage") == "train"})

    @property
    def comparisons(self) -> list[dict[str, Any]]:
        """The paired comparisons of the tested LEAP iteration with BC (and the budget-matched
        BC), the last row of each."""
        found: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            if r.get("stage") == "compare":
                found[str(r.get("against", r.get("baseline")))] = r
        return list(found.values())

    def budget(self) -> list[dict[str, Any]]:
        """What each tested policy was trained on and how it did on the test split: BC, the
        tested LEAP iteration and the budget-matched BC, as ``{"policy", "samples", "steps",
        "success_rate", "n_episodes"}`` (steps of LEAP: every iteration's up to the tested one,
        the budget the matched BC gets). Policies without a test row are left out."""
        train = {r["iteration"]: r for r in self.rows if r.get("stage") == "train"}
        found = [
            _budget_point(
                "BC (iteration 0)" if k == 0 else f"LEAP iteration {k}",
                train[k].get("samples"),
                sum(train[i].get("steps", 0) for i in train if i <= k),
                test,
            )
            for k in sorted(train)
            if (test := self.row("test", k)) is not None
        ]
        matched = self.row("matched_bc_train", None)
        if matched is not None and (test := self.row("matched_bc_test", None)) is not None:
            found.append(
                _budget_point("BC, budget-matched", matched.get("samples"), matched.get("steps"), test)
            )
        return found

    def test_successes(self) -> dict[str, dict[str, float]]:
        """Per tested policy (as labelled in the run's comparisons: ``BC (iteration 0)``,
        ``LEAP``, ``matched``, and each reference by name), task id -> success, read from the
        episodes of its test. For pooling paired comparisons over runs."""
        from leap.evaluate import task_successes

        layout = RunLayout(self.dir)
        found = {"BC (iteration 0)": layout.test(0), "matched": layout.matched_bc_test()}
        if self.best_leap_iteration is not None:
            found["LEAP"] = layout.test(self.best_leap_iteration)
        found.update(layout.references())
        return {
            label: task_successes(d / "episodes.jsonl")
            for label, d in found.items()
            if (d / "episodes.jsonl").is_file()
        }

    def comparison(self, against: str) -> dict[str, Any] | None:
        """The last paired comparison of the tested LEAP iteration with the policy whose label
        starts with ``against``."""
        return next((c for c in reversed(self.comparisons) if c.get("against", "").startswith(against)), None)

    @property
    def references(self) -> dict[str, dict[str, Any]]:
        """Reference rows on the test split by name (experts, the zero-shot student)."""
        return {r["reference"]: r for r in self.rows if r.get("stage") == "reference"}

    @property
    def best_iteration(self) -> int | None:
        return self.summary.get("best_iteration") if self.summary else None

    @property
    def best_leap_iteration(self) -> int | None:
        return self.summary.get("best_leap_iteration") if self.summary else None

    @property
    def categories(self) -> list[str]:
        names: set[str] = set()
        for r in self.rows:
            names.update(r.get("per_category", {}))
        return sorted(names)

    @property
    def has_score_parts(self) -> bool:
        return any("score_parts" in r for r in self.rows)


def _budget_point(
    policy: str, samples: int | None, steps: int | None, test: dict[str, Any]
) -> dict[str, Any]:
    return {
        "policy": policy,
        "samples": samples,
        "steps": steps,
        "success_rate": test["success_rate"],
        "n_episodes": test["n_episodes"],
    }
