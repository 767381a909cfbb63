"""The trajectory viewer: a static HTML page over a run's episodes, opened from disk (no server).

``RUN/viewer/index.html`` loads ``data/index.js`` (one short entry per episode, for the list and
its filters) and, when an episode is opened, only the ``data/chunk_NNNNN.js`` holding it (script
tags work from ``file://``, where ``fetch`` does not). So thousands of episodes stay fast.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from leap.io import atomic_write_text, read_jsonl
from leap.layout import RunLayout
from leap.reports.rundata import RunData

#: episodes per data chunk
CHUNK_SIZE = 50
#: longer observations are clipped in the viewer's data (the run directory keeps them whole)
MAX_OBSERVATION_CHARS = 4000


@dataclass(frozen=True)
class EpisodeSource:
    """One episodes.jsonl of a run and what it is."""

    kind: str  # demo | rollout | valid | test | reference
    iteration: int | None
    path: Path
    corrections: Path | None = None
    label: str = ""


def episode_sources(run_dir: Path) -> list[EpisodeSource]:
    run = RunLayout(run_dir)
    sources = []
    if (run.demos / "episodes.jsonl").is_file():
        sources.append(EpisodeSource("demo", 0, run.demos / "episodes.jsonl"))
    for k in run.iterations():
        rollout = run.rollout(k) / "episodes.jsonl"
        if rollout.is_file():
            corrections = run.corrections(k)
            found = corrections if corrections.is_file() else None
            sources.append(EpisodeSource("rollout", k, rollout, found))
        if (run.valid(k) / "episodes.jsonl").is_file():
            sources.append(EpisodeSource("valid", k, run.valid(k) / "episodes.jsonl"))
    for k, directory in run.tests().items():
        if (directory / "episodes.jsonl").is_file():
            sources.append(EpisodeSource("test", k, directory / "episodes.jsonl"))
    for name, directory in run.references().items():
        if (directory / "episodes.jsonl").is_file():
            sources.append(EpisodeSource("reference", None, directory / "episodes.jsonl", label=name))
    return sources


def _clip(text: str) -> str:
    return text if len(text) <= MAX_OBSERVATION_CHARS else text[:MAX_OBSERVATION_CHARS] + " …"


def _episodes(source: EpisodeSource) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
    corrections = {}
    if source.corrections is not None:
        corrections = {r["episode_id"]: r for r in read_jsonl(source.corrections)}
    for record in read_jsonl(source.path):
        yield record, corrections.get(record["episode_id"])


def _detail(record: dict[str, Any], correction: dict[str, Any] | None) -> dict[str, Any]:
    steps = [
        {
            "t": t,
            "observation": _clip(s["observation"]),
            "reason": s.get("reason", ""),
            "action": s["action"],
            "valid": s.get("valid", True),
            "reward": s.get("reward", 0.0),
        }
        for t, s in enumerate(record.get("steps", []))
    ]
    detail: dict[str, Any] = {
        "task": record.get("task", ""),
        "task_id": record.get("task_id", ""),
        "policy": record.get("policy", ""),
        "score": record.get("score", 0.0),
        "success": record.get("success", False),
        "error": record.get("error"),
        "steps": steps,
    }
    if correction is not None:
        detail["correction"] = {
            "teacher": correction.get("teacher", ""),
            "summary": correction.get("summary", ""),
            "privileged": correction.get("privileged", ""),
            "rejections": correction.get("rejections", {}),
            "steps": {
                str(c["step"]): {"reason": c["reason"], "action": c["action"], "leaks": c.get("leaks", [])}
                for c in correction.get("steps", [])
            },
        }
    return detail


def _script(call: str, *arguments: Any) -> str:
    """A line of JavaScript that passes JSON data to the viewer: ``call(arg, ...);``."""
    encoded = ",".join(json.dumps(a, ensure_ascii=False, separators=(",", ":")) for a in arguments)
    return f"{call}({encoded});\n"


def build_viewer(run_dir: str | Path) -> Path:
    """Write ``RUN/viewer/`` and return the path of its index.html."""
    run = RunData.load(run_dir)
    out = RunLayout(run.dir).viewer
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for stale in data.glob("chunk_*.js"):
        stale.unlink()
    index: list[dict[str, Any]] = []
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        if chunk:
            number = (len(index) - 1) // CHUNK_SIZE
            atomic_write_text(data / f"chunk_{number:05d}.js", _script("LEAP_VIEWER.addChunk", number, chunk))
            chunk.clear()

    for source in episode_sources(run.dir):
        for record, correction in _episodes(source):
            n = len(index)
            index.append(
                {
                    "n": n,
                    "source": source.kind + (f":{source.label}" if source.label else ""),
                    "iteration": source.iteration,
                    "episode_id": record["episode_id"],
                    "task": record.get("task", "")[:160],
                    "category": record.get("category") or "?",
                    "success": bool(record.get("success")),
                    "score": record.get("score", 0.0),
                    "n_actions": len(record.get("steps", [])),
                    "corrected": len(correction["steps"]) if correction else 0,
                    "leaks": sum(bool(c.get("leaks")) for c in correction["steps"]) if correction else 0,
                }
            )
            chunk.append(_detail(record, correction))
            if len(chunk) == CHUNK_SIZE:
                flush()
    flush()
    meta = {"run": run.name, "env": run.env, "chunk_size": CHUNK_SIZE, "episodes": index}
    atomic_write_text(data / "index.js", _script("LEAP_VIEWER.setIndex", meta))
    page = files("leap.reports").joinpath("templates", "viewer.html").read_text()
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
