"""The privileged state of an ALFRED-style task (household or ALFWorld) as text and secrets.

Both environments describe a task the same way, in ``data``: the task text and type, the object
type to find, the essential objects with their true locations, the receptacles involved and the
optimal remaining actions. The text goes into teacher prompts; the secrets feed the leakage audit.
"""

from __future__ import annotations

import re
from typing import Any

from leap.envs.base import PrivilegedState, Secret


def _plan_text(plan: list[str] | None) -> str:
    if plan is None:
        return "(not computed)"
    return " > ".join(plan) if plan else "none (goal reached)"


def describe_state(data: dict[str, Any]) -> PrivilegedState:
    objects, involved, plan = data["objects"], data["receptacles"], data["plan"]
    where = "; ".join(
        f"{o['name']}: {o['location']}{' (closed)' if o['closed'] else ''}"
        + (f" [{', '.join(o['state'])}]" if o["state"] else "")
        for o in objects
    )
    # the requirements (what a teacher at privilege 25 reads), then the hidden facts
    summary = (
        f"Task: {data['task']}\n"
        f"Task type: {data.get('task_type') or '?'}; object to find: {data.get('object_type') or '?'}; "
        f"where it goes: {data.get('target_type') or 'nowhere (look at it under a lamp)'}"
    )
    text = (
        f"{summary}\n"
        f"Essential objects: {where or 'none'}\n"
        f"Receptacles involved: {'; '.join(f'{r} ({why})' for r, why in involved.items()) or 'none'}\n"
        f"Optimal remaining actions: {_plan_text(plan)}"
    )
    secrets = []
    for o in objects:
        if o["location"] in ("in your hand", "unknown"):
            continue
        name, at = re.escape(o["name"]), re.escape(o["location"])
        secrets.append(Secret(rf"\b{name}\b", evidence=o["name"], label=f"{o['name']} (object id)"))
        secrets.append(
            Secret(
                rf"\b{re.escape(o['name'].rsplit(' ', 1)[0])}\b[^.;]*\b{at}\b",
                evidence=o["name"],
                label=f"{o['name']} is at {o['location']}",
            )
        )
    return PrivilegedState(text=text, data=data, secrets=tuple(secrets), summary=summary)
