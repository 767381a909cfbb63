"""Skip marks for tests that need benchmark data from ``../shared/data`` (or the variable that
points elsewhere): a clone without it skips them, naming what is missing, instead of failing."""

from __future__ import annotations

import pytest

from leap.paths import find_data_dir

#: data folder under ../shared/data -> the environment variable that may name it instead
DATA_VARIABLES = {
    "alfworld": "ALFWORLD_DATA",
    "webshop": "LEAP_WEBSHOP_DATA",
    "intercode": "LEAP_INTERCODE_DATA",
}
#: environment name -> its data folder (environments not named here need no data)
ENV_DATA = {"alfworld": "alfworld", "webshop": "webshop", "intercode-bash": "intercode"}


def has_data(name: str) -> bool:
    found = find_data_dir(None, DATA_VARIABLES[name], name)
    return found is not None and found.is_dir()


def needs_data(name: str) -> pytest.MarkDecorator:
    """Skip unless the benchmark data ``name`` (a folder of ../shared/data) is found."""
    return pytest.mark.skipif(
        not has_data(name), reason=f"needs ../shared/data/{name} (or ${DATA_VARIABLES[name]})"
    )


def needs_env_data(env_name: str) -> list[pytest.MarkDecorator]:
    """The marks for a test of the environment ``env_name``: none if it needs no data."""
    return [needs_data(ENV_DATA[env_name])] if env_name in ENV_DATA else []
