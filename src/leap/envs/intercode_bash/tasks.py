"""InterCode-Bash tasks: ``nl2bash_fs_N.json`` files and the ``fsN.tar.xz`` file systems they run on."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from leap.envs.base import EnvError
from leap.paths import find_data_dir

DATA_ENV_VAR = "LEAP_INTERCODE_DATA"
#: the paper evaluates on the last 30 % of each file's tasks
TRAIN_SHARE = 0.7
#: the validation slice: the last part of the training share
VALID_SHARE = 0.1


class MissingDataError(EnvError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class BashTask:
    task_id: str
    file_system: str
    query: str
    gold: str
    tarball: Path


def resolve_data_dir(data_dir: str | Path | None) -> Path:
    """The config's directory, else $LEAP_INTERCODE_DATA, else ../shared/data/intercode."""
    chosen = find_data_dir(data_dir, DATA_ENV_VAR, "intercode")
    if chosen is None or not Path(chosen).is_dir():
        looked = chosen or f"${DATA_ENV_VAR} and ../shared/data/intercode"
        raise MissingDataError(
            f"intercode-bash: no task data found (looked at {looked}). "
            "Get the tasks from InterCode's public repository (princeton-nlp/intercode, data/nl2bash: "
            "nl2bash_fs_N.json) with the matching file-system archives fsN.tar.xz, then set "
            f"env.options.data_dir in your config or ${DATA_ENV_VAR}."
        )
    return Path(chosen)


@lru_cache(maxsize=8)
def load_tasks(data_dir: Path) -> tuple[BashTask, ...]:
    tasks = []
    files = sorted(data_dir.glob("nl2bash_fs_*.json"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not files:
        raise MissingDataError(f"intercode-bash: {data_dir} holds no nl2bash_fs_N.json task files")
    for path in files:
        number = re.fullmatch(r"nl2bash_fs_(\d+)", path.stem)
        if number is None:
            continue
        fs = f"fs{number.group(1)}"
        tarball = data_dir / f"{fs}.tar.xz"
        if not tarball.is_file():
            raise MissingDataError(f"intercode-bash: {path.name} needs its file system {tarball}")
        for i, row in enumerate(json.loads(path.read_text())):
            gold = row["gold"] if isinstance(row["gold"], str) else "; ".join(row["gold"])
            tasks.append(BashTask(f"{fs}/{i}", fs, row["query"], gold, tarball))
    return tuple(tasks)


def split_tasks(tasks: tuple[BashTask, ...]) -> dict[str, list[str]]:
    by_fs: dict[str, list[BashTask]] = {}
    for task in tasks:
        by_fs.setdefault(task.file_system, []).append(task)
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for group in by_fs.values():
        n = len(group)
        n_train, n_valid = round(TRAIN_SHARE * n), round(VALID_SHARE * n)
        splits["train"] += [t.task_id for t in group[: n_train - n_valid]]
        splits["valid"] += [t.task_id for t in group[n_train - n_valid : n_train]]
        splits["test"] += [t.task_id for t in group[n_train:]]
    return splits
