"""Atomic writes leave either the old file or the new one, never a torn one."""

from __future__ import annotations

import stat

import pytest

from leap.io import atomic_write_json, atomic_write_text, read_jsonl


def test_atomic_write_replaces_whole_file(tmp_path) -> None:
    path = tmp_path / "sub" / "summary.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"a": 2})
    assert path.read_text() == '{\n  "a": 2\n}\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["summary.json"]


def test_failed_write_keeps_the_old_file(tmp_path) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    with pytest.raises(TypeError):
        atomic_write_text(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_read_jsonl_rejects_corruption_in_the_middle(tmp_path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(ValueError):
        list(read_jsonl(path))
