"""Game worker processes: ALFWorld games load and play outside the main process.

Loading a game costs about 0.6 s of pure-Python work, so games live in a small pool of worker
processes (one per core by default, ``$LEAP_ALFWORLD_WORKERS`` overrides). Each environment
instance is bound to one worker; different workers run in parallel while the main process waits
on their pipes (the rollout runner steps its environments from threads), and a worker loads the
games it was asked to *prepare* whenever it has nothing else to do, so that a later reset finds
its game ready.

Protocol: every request except ``prepare`` and ``drop`` gets exactly one reply, ``("ok", value)``
or ``("error", "Type: message")``; a per-worker lock keeps requests and replies paired.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any


class WorkerError(RuntimeError):
    """A game worker reported an error or died."""


class GameWorker:
    """One worker process, started as ``python -m leap.envs.alfworld.serve FD`` (a fresh
    interpreter: it never re-imports the caller's main module and never forks torch's threads);
    it exits when its socket closes, so it never outlives the process that started it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "leap.envs.alfworld.serve", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        self.conn = Connection(ours.detach())
        self.lock = threading.Lock()

    def call(self, *request: Any) -> Any:
        with self.lock:
            try:
                self.conn.send(request)
                status, value = self.conn.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                raise WorkerError(f"alfworld game worker {self.process.pid} died ({exc!r})") from exc
        if status != "ok":
            raise WorkerError(value)
        return value

    def tell(self, *request: Any) -> None:
        with self.lock, contextlib.suppress(OSError):  # a dead worker surfaces on the next call
            self.conn.send(request)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.tell("stop")
        self.conn.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class WorkerPool:
    """Worker processes shared by all ALFWorld environments of this process."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._workers: list[GameWorker] = []
        self._next = itertools.count()
        self._handles = itertools.count(1)
        self._lock = threading.Lock()

    def assign(self) -> tuple[GameWorker, int]:
        """A worker for a new environment instance (round robin), and a fresh game handle."""
        with self._lock:
            index = next(self._next) % self.size
            while len(self._workers) <= index:
                self._workers.append(GameWorker())
            if not self._workers[index].alive:
                self._workers[index] = GameWorker()
            return self._workers[index], next(self._handles)

    def shutdown(self) -> None:
        with self._lock:
            for worker in self._workers:
                worker.stop()
            self._workers.clear()


_POOL: WorkerPool | None = None


def default_pool_size() -> int:
    if os.environ.get("LEAP_ALFWORLD_WORKERS"):
        return max(1, int(os.environ["LEAP_ALFWORLD_WORKERS"]))
    return max(1, len(os.sched_getaffinity(0)))


def pool() -> WorkerPool:
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool(default_pool_size())
        atexit.register(_POOL.shutdown)
    return _POOL
