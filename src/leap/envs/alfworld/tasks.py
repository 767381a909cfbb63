"""ALFWorld game files: where they are, which splits exist, and what each game's task is.

A data root holds ``json_2.1.1/<split>/<task-dir>/<trial>/{game.tw-pddl,traj_data.json}``, the
layout that ``alfworld-download`` writes under ``$ALFWORLD_DATA``. It is found, in order:

1. ``env.options.data_dir`` in the config (the root, or its ``json_2.1.1`` folder);
2. ``$ALFWORLD_DATA``;
3. the shared tarballs ``../shared/data/alfworld/<split>.tar.xz``, unpacked once into
   ``$LEAP_CACHE/alfworld`` and reused.

Games are filtered as alfworld's own loader does: no ``movable``/``Sliced`` trials, a game file and
a ``traj_data.json`` must exist, and the game must be marked solvable. The per-split list is
indexed once (reading 3,553 game files takes a while) and the index reused while the split's
directory is unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from leap.envs.base import EnvError
from leap.io import atomic_write_json
from leap.paths import cache_dir, find_data_dir

log = logging.getLogger(__name__)

DATA_ENV_VAR = "ALFWORLD_DATA"
GAMES_FOLDER = "json_2.1.1"
#: split names, in the order the paper uses them; valid_unseen is the out-of-distribution set
SPLITS = ("train", "valid_seen", "valid_unseen", "valid_train")
#: alfworld's task types and the short names of the paper's tables
CATEGORIES = {
    "pick_and_place_simple": "pick",
    "look_at_obj_in_light": "look",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "pick_two_obj_and_place": "pick two",
}


class MissingGamesError(EnvError, FileNotFoundError):
    pass


@dataclass(frozen=True)
class GameInfo:
    #: ``<split>/<task-dir>/<trial>``, the game's path below json_2.1.1
    task_id: str
    path: Path
    task_type: str
    #: alfworld's pddl_params: object_target, parent_target, toggle_target, mrecep_target, ...
    params: dict[str, object]

    @property
    def category(self) -> str:
        return CATEGORIES.get(self.task_type, self.task_type)


def _games_folder(root: Path) -> Path:
    return root if root.name == GAMES_FOLDER else root / GAMES_FOLDER


def _unpack_shared(shared: Path) -> Path:
    """Unpack every ``<split>.tar.xz`` in ``shared`` into the cache (once); return the root."""
    root = cache_dir() / "alfworld"
    for tarball in sorted(shared.glob("*.tar.xz")):
        split = tarball.name.removesuffix(".tar.xz")
        target = root / GAMES_FOLDER / split
        stamp = root / f".{split}.unpacked"
        signature = f"{tarball.stat().st_size}:{int(tarball.stat().st_mtime)}"
        if target.is_dir() and stamp.exists() and stamp.read_text() == signature:
            continue
        log.info("unpacking %s into %s", tarball, root)
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{split}.", dir=root))
        try:
            with tarfile.open(tarball) as archive:
                archive.extractall(staging, filter="data")
            unpacked = staging / GAMES_FOLDER / split
            if not unpacked.is_dir():
                raise MissingGamesError(f"{tarball}: expected {GAMES_FOLDER}/{split}/ inside the archive")
            shutil.rmtree(target, ignore_errors=True)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(unpacked, target)
            stamp.write_text(signature)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return root


def resolve_games_root(data_dir: str | Path | None = None) -> Path:
    """The ``json_2.1.1`` folder to read games from (see the module docstring for the order)."""
    chosen = find_data_dir(data_dir, DATA_ENV_VAR, "alfworld")
    if chosen is not None and chosen.is_dir():
        if _games_folder(chosen).is_dir():
            return _games_folder(chosen)
        if any(chosen.glob("*.tar.xz")):
            return _games_folder(_unpack_shared(chosen))
    looked = chosen or f"${DATA_ENV_VAR} and ../shared/data/alfworld"
    raise MissingGamesError(
        f"alfworld: no game files found (looked at {looked}). Download them with alfworld's "
        "`alfworld-download` (pip install alfworld==0.4.2), then set env.options.data_dir in your "
        f"config or ${DATA_ENV_VAR} to the folder that holds {GAMES_FOLDER}/."
    )


def _read_game(trial: Path, folder: Path) -> GameInfo | None:
    game, traj = trial / "game.tw-pddl", trial / "traj_data.json"
    if "movable" in trial.parent.name or "Sliced" in trial.parent.name:
        return None
    if not game.is_file() or not traj.is_file():
        return None
    try:
        solvable = json.loads(game.read_text()).get("solvable", False)
        meta = json.loads(traj.read_text())
    except (OSError, ValueError) as exc:
        log.warning("alfworld: skipping unreadable game %s (%s)", trial, exc)
        return None
    if not solvable:
        return None
    return GameInfo(
        trial.relative_to(folder).as_posix(), game, meta["task_type"], dict(meta.get("pddl_params", {}))
    )


def _index_file(split_dir: Path) -> Path:
    key = str(split_dir.resolve()).strip("/").replace("/", "_")
    return cache_dir() / "alfworld" / "index" / f"{key}.json"


@lru_cache(maxsize=16)
def load_split(folder: Path, split: str) -> tuple[GameInfo, ...]:
    """The playable games of ``split`` below ``folder`` (json_2.1.1), sorted by task id."""
    split_dir = folder / split
    if not split_dir.is_dir():
        return ()
    index = _index_file(split_dir)
    signature = f"{split_dir.stat().st_mtime_ns}:{sum(1 for _ in split_dir.iterdir())}"
    if index.exists():
        try:
            saved = json.loads(index.read_text())
            if saved["signature"] == signature:
                return tuple(
                    GameInfo(
                        g["task_id"], folder / g["task_id"] / "game.tw-pddl", g["task_type"], g["params"]
                    )
                    for g in saved["games"]
                )
        except (OSError, ValueError, KeyError):
            pass
    games = []
    for trial in sorted(split_dir.glob("*/*")):
        info = _read_game(trial, folder)
        if info is not None:
            games.append(info)
    atomic_write_json(
        index,
        {
            "signature": signature,
            "games": [{"task_id": g.task_id, "task_type": g.task_type, "params": g.params} for g in games],
        },
    )
    return tuple(games)
