"""Where leap keeps its cache and finds benchmark data.

Data directories are looked up in one order for every environment: the directory named in the
config, then an environment variable, then ``../shared/data/<name>`` (beside the checkout).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LEAP_CACHE`` or ``~/.cache/leap``: converted models, unpacked game files, indexes."""
    return Path(os.environ.get("LEAP_CACHE", Path.home() / ".cache" / "leap"))


def shared_data_dir(name: str) -> Path | None:
    """``../shared/data/<name>`` relative to the working directory or to the source checkout."""
    candidates = [
        Path.cwd() / "../shared/data" / name,
        Path(__file__).resolve().parents[3] / "shared/data" / name,
    ]
    return next((p.resolve() for p in candidates if p.is_dir()), None)


def find_data_dir(explicit: str | Path | None, env_var: str, name: str) -> Path | None:
    """The config's directory, else ``$env_var``, else the shared data directory; None if none.

    An explicitly named directory is returned even when it does not exist, so that the caller's
    error message can name it.
    """
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(env_var):
        return Path(os.environ[env_var]).expanduser()
    return shared_data_dir(name)
