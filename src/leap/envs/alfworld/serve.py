"""The game worker's side: ``python -m leap.envs.alfworld.serve FD`` serves games over a socket.

See ``workers.py`` for the protocol and the parent's side.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections import OrderedDict, deque
from multiprocessing.connection import Connection
from typing import Any

#: most prepared-but-unused games a worker keeps (the oldest is dropped first)
MAX_PREPARED = 64


def _serve(conn: Connection) -> None:
    """The worker's loop: answer requests; load prepared games while idle."""
    from leap.envs.alfworld.engine import GameSession

    sessions: dict[int, GameSession] = {}
    prepared: OrderedDict[str, GameSession] = OrderedDict()
    todo: deque[tuple[str, dict[str, Any]]] = deque()

    counts = {"loads": 0, "prepared_hits": 0, "reused": 0}

    def load(path: str, params: dict[str, Any]) -> GameSession:
        counts["loads"] += 1
        return GameSession.load(path, params)

    def fresh(handle: int, path: str, params: dict[str, Any]) -> GameSession:
        """The game for a reset: the handle's own game again, a prepared one, or a new load."""
        current = sessions.get(handle)
        if current is not None and current.path == path:
            counts["reused"] += 1
            return current
        session = prepared.pop(path, None)
        if session is not None:
            counts["prepared_hits"] += 1
            return session
        return load(path, params)

    while True:
        if todo and not conn.poll(0):
            path, params = todo.popleft()
            if path not in prepared:
                # on failure the real reset loads it again and reports the error
                with contextlib.suppress(Exception):
                    prepared[path] = load(path, params)
                while len(prepared) > MAX_PREPARED:
                    prepared.popitem(last=False)
            continue
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        kind = request[0]
        if kind == "stop":
            return
        if kind == "prepare":
            todo.append((request[1], request[2]))
            continue
        if kind == "drop":
            sessions.pop(request[1], None)
            continue
        try:
            if kind == "reset":
                _, handle, path, params = request
                sessions[handle] = fresh(handle, path, params)
                value: Any = sessions[handle].reset()
            elif kind == "step":
                value = sessions[request[1]].step(request[2])
            elif kind == "privileged":
                value = sessions[request[1]].privileged(*request[2:])
            elif kind == "stats":
                value = {**counts, "pid": os.getpid(), "prepared": len(prepared), "games": len(sessions)}
            else:
                raise ValueError(f"unknown request {kind!r}")
            conn.send(("ok", value))
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send(("error", detail))


if __name__ == "__main__":
    _serve(Connection(int(sys.argv[1])))
