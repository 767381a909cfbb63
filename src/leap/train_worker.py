"""One process of a training across processes: ``train.processes > 1`` makes
:func:`leap.train.train_adapter` start torchrun with ``python -m leap.train_worker JOB.json``,
whose job file holds the call's arguments; each process trains as one data-parallel rank.

Across several nodes, every other node runs the same torchrun command (its ``--node-rank``) with
the job file where it can read it (README, Training across processes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from leap.train import TrainSettings, train_adapter


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m leap.train_worker JOB.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    train_adapter(
        job["base_model"],
        Path(job["data_file"]),
        Path(job["out_dir"]),
        TrainSettings(**job["settings"]),
        init_adapter=Path(job["init_adapter"]) if job["init_adapter"] else None,
        seed=job["seed"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
