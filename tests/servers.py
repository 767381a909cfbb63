"""Local HTTP servers for tests: a scripted OpenAI-style server and a real `transformers serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LocalServer:
    """A threaded HTTP server on a free loopback port, started and stopped as a context."""

    httpd: ThreadingHTTPServer

    def _listen(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(model: str, text: str, n: int = 0) -> dict:
    """A chat completion as an OpenAI-compatible server returns it (11 prompt, 3 completion tokens)."""
    return {
        "id": f"c{n}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


class ScriptedServer(_LocalServer):
    """Answers /v1/chat/completions: the first ``fail_first`` requests get ``fail_status``, then
    a reply echoing the last user message. Tracks requests and the most in flight at once."""

    def __init__(
        self,
        fail_first: int = 0,
        fail_status: int = 429,
        delay: float = 0.0,
        responder: Callable[[dict], str] | None = None,
    ) -> None:
        self.fail_first, self.fail_status, self.delay = fail_first, fail_status, delay
        self.responder = responder or (lambda body: "echo: " + body["messages"][-1]["content"])
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append(body)
                    n = len(server.requests)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    if n <= server.fail_first:
                        self._send(server.fail_status, {"error": {"message": "slow down", "type": "rate"}})
                        return
                    self._send(200, completion(body["model"], server.responder(body), n))
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("retry-after-ms", "10")
                self.end_headers()
                self.wfile.write(data)

        self._listen(Handler)


@contextlib.contextmanager
def transformers_serve(model_dir: str | Path, timeout: float = 180.0) -> Iterator[str]:
    """Start `transformers serve MODEL_DIR` on a free port; yield its /v1 URL; stop it by pid."""
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"leap-serve-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "transformers.cli.transformers",
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited with {proc.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"transformers serve did not start in {timeout} s") from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


#: the faults FaultyServer injects, and the cause the client counts each one under
FAULT_CAUSES = {
    "500": "server_error",
    "429": "rate_limited",
    "drop": "connection",
    "stall": "timeout",
    "truncated": "bad_response",
}


class FaultyServer(_LocalServer):
    """An OpenAI-style server that answers each attempt with a fault or a valid reply, in a seeded
    mix: 500s, 429s with ``Retry-After``, dropped connections, stalls past the client's timeout,
    truncated JSON, and valid replies from ``responder`` (usage: 11 prompt and 3 completion
    tokens each). The first attempts get one fault of each kind, so that every kind happens;
    after them the choice is seeded by the request's content and how often that content was
    asked before. ``injected`` counts what was sent by kind (``ok`` included)."""

    def __init__(
        self,
        responder: Callable[[dict], str],
        *,
        seed: int = 0,
        fault_rate: float = 0.5,
        stall_s: float = 1.5,
        max_faults_in_a_row: int = 3,
    ) -> None:
        import random
        from collections import Counter

        self.responder, self.seed, self.rate, self.stall_s = responder, seed, fault_rate, stall_s
        self.max_in_a_row = max_faults_in_a_row
        self.injected: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self._first = sorted(FAULT_CAUSES)
        self._lock = threading.Lock()
        server = self

        def choose(body: dict) -> str:
            key = json.dumps(body["messages"], sort_keys=True)
            with server._lock:
                n = server.attempts[key]
                server.attempts[key] += 1
                if server._first and n < server.max_in_a_row:
                    return server._first.pop()
            rng = random.Random(f"{server.seed}/{key}/{n}")
            if n >= server.max_in_a_row or rng.random() >= server.rate:
                return "ok"
            return rng.choice(sorted(FAULT_CAUSES))

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                kind = choose(body)
                with server._lock:
                    server.injected[kind] += 1
                if kind == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if kind == "stall":
                    time.sleep(server.stall_s)
                if kind in ("500", "429"):
                    extra = {"Retry-After": "0"} if kind == "429" else {}
                    self._send(int(kind), json.dumps({"error": {"message": kind}}).encode(), extra)
                    return
                reply = completion(body["model"], server.responder(body))
                data = json.dumps(reply).encode()
                self._send(200, data[: len(data) // 2] if kind == "truncated" else data)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a stall past its timeout)

        self._listen(Handler)
