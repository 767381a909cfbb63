"""Experiment tracking: ``metrics.jsonl`` always, TensorBoard and Weights & Biases on request.

Every metric row is ``{"iteration", "stage", "time", ...values}``. The JSONL file is the record
that reports read; the optional sinks get the same numbers as scalars tagged ``STAGE/KEY`` (nested
values flattened with ``/``) at step = iteration, and a loss curve as ``train/loss/iter_K`` over
optimizer steps. Neither sink is needed to run: they are imported only when the config asks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from leap.io import append_jsonl
from leap.layout import RunLayout

log = logging.getLogger(__name__)


class MissingTrackerError(RuntimeError):
    """A tracker was asked for in the config but its package is not installed."""


class _Sink(Protocol):
    def scalars(self, values: dict[str, float], step: int | None, axis: str) -> None: ...

    def close(self) -> None: ...


def flatten_scalars(values: dict[str, Any], prefix: str) -> Iterator[tuple[str, float]]:
    """Numbers (not booleans) of a nested dict as ``prefix/key/subkey`` pairs; lists are skipped."""
    for key, value in values.items():
        tag = f"{prefix}/{key}"
        if isinstance(value, dict):
            yield from flatten_scalars(value, tag)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            yield tag, float(value)


class _TensorBoardSink:
    def __init__(self, log_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # torch raises this when the tensorboard package is missing
            raise MissingTrackerError(
                "tracking.tensorboard is on but TensorBoard is not installed: "
                "pip install 'leap-agents[tracking]' (or tensorboard)"
            ) from exc
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int | None, axis: str) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, global_step=step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _WandbSink:
    def __init__(self, run_dir: Path, name: str, project: str, mode: str, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise MissingTrackerError(
                "tracking.wandb is on but wandb is not installed: pip install 'leap-agents[tracking]'"
            ) from exc
        (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project, name=name, dir=str(run_dir), mode=mode, config=config, reinit="finish_previous"
        )

    def scalars(self, values: dict[str, float], step: int | None, axis: str) -> None:
        # W&B's own step must grow monotonically and a loss curve restarts every iteration, so
        # the x axis (iteration or optimizer step) is logged as a value of its own
        self.run.log({**values, **({axis: step} if step is not None else {})})

    def close(self) -> None:
        self.run.finish()


class Tracker:
    """Where a run's metric rows go. ``close()`` it at the end (or use it as a context manager)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "leap",
        wandb_mode: str = "offline",
        name: str = "run",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.path = RunLayout(run_dir).metrics
        self.sinks: list[_Sink] = []
        if tensorboard:
            self.sinks.append(_TensorBoardSink(run_dir / "tensorboard"))
        if wandb:
            self.sinks.append(_WandbSink(run_dir, name, wandb_project, wandb_mode, config or {}))

    def log(self, iteration: int | str | None, stage: str, **values: Any) -> dict[str, Any]:
        row = {"iteration": iteration, "stage": stage, "time": time.time(), **values}
        append_jsonl(self.path, row)
        if self.sinks:
            step = iteration if isinstance(iteration, int) else None
            scalars = dict(flatten_scalars(values, stage))
            curve = values.get("loss_curve") or []
            for sink in self.sinks:
                try:
                    sink.scalars(scalars, step, "iteration")
                    for point in curve:
                        sink.scalars(
                            {f"train/loss/iter_{iteration}": point["loss"]}, point["step"], "train_step"
                        )
                except Exception:  # a tracker failing must never stop a run
                    log.exception("a metrics tracker failed; metrics.jsonl still has the row")
        return row

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing a metrics tracker failed")
        self.sinks = []

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
