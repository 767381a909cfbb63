"""Validation of teacher replies: JSON extraction and repair, timestep alignment, action checks.

Nothing here raises on bad input: every problem is a rejection with a cause, and the good steps
of a partly bad reply are kept.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import json_repair

from leap.agents import match_action, parse_reply
from leap.envs.base import ActionSpace


class Rejection(StrEnum):
    REQUEST_FAILED = "request_failed"
    EMPTY_REPLY = "empty_reply"
    NO_JSON = "no_json"
    NO_STEPS = "no_steps"
    LENGTH_MISMATCH = "length_mismatch"
    BAD_TIMESTEP = "bad_timestep"
    DUPLICATE_STEP = "duplicate_step"
    MISSING_STEP = "missing_step"
    EMPTY_ACTION = "empty_action"
    INADMISSIBLE_ACTION = "inadmissible_action"
    LEAK = "leak"


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any | None:
    """The JSON value in a reply: fenced or bare, surrounded by prose or not, repaired if broken
    (truncated, trailing commas, single quotes...). None when there is nothing JSON-like."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        starts = [i for i in (candidate.find("{"), candidate.find("[")) if i >= 0]
        if not starts:
            continue
        body = candidate[min(starts) :]
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            pass
        try:
            value = json_repair.loads(body)
        except Exception:  # the repairer gives up on some inputs; that is a rejection, not a crash
            continue
        if isinstance(value, dict | list) and value:
            return value
    return None


@dataclass
class Validated:
    #: step -> (reason, action), only steps that passed every check
    steps: dict[int, tuple[str, str]] = field(default_factory=dict)
    rejections: Counter[str] = field(default_factory=Counter)
    summary: str = ""

    @property
    def usable(self) -> bool:
        return bool(self.steps)


def _step_index(item: dict[str, Any], position: int, has_t: bool) -> int | None:
    if not has_t:
        return position
    for key in ("t", "step", "timestep"):
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
    return None


def _check_action(reason: str, action: str, space: ActionSpace, result: Validated, t: int) -> None:
    if not action.strip():
        result.rejections[Rejection.EMPTY_ACTION] += 1
        return
    matched, ok = match_action(action, space)
    if not ok:
        result.rejections[Rejection.INADMISSIBLE_ACTION] += 1
        return
    result.steps[t] = (" ".join(reason.split()), matched)


def validate_trajectory(reply: str, spaces: Sequence[ActionSpace]) -> Validated:
    """Check a whole-trajectory reply ``{"summary": ..., "steps": [{"t", "reason", "action"}]}``
    against the candidates of each of the ``len(spaces)`` steps."""
    result = Validated()
    n = len(spaces)
    if not reply.strip():
        result.rejections[Rejection.EMPTY_REPLY] += n
        return result
    payload = extract_json(reply)
    if payload is None:
        result.rejections[Rejection.NO_JSON] += n
        return result
    items = payload.get("steps") if isinstance(payload, dict) else payload
    if isinstance(payload, dict):
        result.summary = str(payload.get("summary", ""))
    if not isinstance(items, list) or not items:
        result.rejections[Rejection.NO_STEPS] += n
        return result
    items = [i for i in items if isinstance(i, dict)]
    has_t = any(_step_index(i, 0, True) is not None for i in items)
    if not has_t and len(items) != n:
        result.rejections[Rejection.LENGTH_MISMATCH] += n
        return result
    seen: set[int] = set()
    for position, item in enumerate(items):
        t = _step_index(item, position, has_t)
        if t is None or not 0 <= t < n:
            result.rejections[Rejection.BAD_TIMESTEP] += 1
            continue
        if t in seen:
            result.rejections[Rejection.DUPLICATE_STEP] += 1
            continue
        seen.add(t)
        _check_action(str(item.get("reason", "")), str(item.get("action", "")), spaces[t], result, t)
    if len(seen) < n:
        result.rejections[Rejection.MISSING_STEP] += n - len(seen)
    return result


def validate_step(reply: str, space: ActionSpace, t: int) -> Validated:
    """Check a one-step reply in the student's ``REASON: ... ACTION: ...`` format."""
    result = Validated()
    if not reply.strip():
        result.rejections[Rejection.EMPTY_REPLY] += 1
        return result
    parsed = parse_reply(reply)
    _check_action(parsed.reason, parsed.action, space, result, t)
    return result
