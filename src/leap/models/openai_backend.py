"""Any OpenAI-compatible chat server: api.openai.com, vLLM, llama.cpp, ``transformers serve``.

Requests run concurrently up to a limit. 408/409/429/5xx answers, dropped connections, timeouts
and unreadable replies (truncated JSON) are retried with exponential backoff (a 429's
``Retry-After`` is honoured) and counted by cause in ``usage.faults``; a request that still fails
becomes a Generation with ``error`` set, so a dead server costs replies, never the run. Tokens
are counted only from replies that arrived, which is what a provider bills.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import openai

from leap.models.base import ChatModel, ChoiceConstraint, Conversation, Generation, ModelError, cut_at_stop

log = logging.getLogger(__name__)

T = TypeVar("T")


class OpenAIChatModel(ChatModel):
    """Args:
    model: the model name the server expects.
    base_url: server address, e.g. http://127.0.0.1:8000/v1 (None: api.openai.com).
    api_key_env: name of the environment variable holding the key. A local server with no key
        set gets a placeholder key; api.openai.com without one is an error.
    max_concurrency: requests in flight at once, over all threads that call ``generate``.
    max_retries: retries per request on 429/5xx/timeouts, with exponential backoff.
    timeout: seconds per request attempt.
    backoff: seconds before the first retry (doubled for each further one, at most 30 s).
    """

    concurrent = True

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
        backoff: float = 0.5,
    ) -> None:
        super().__init__()
        key = os.environ.get(api_key_env)
        if not key:
            if base_url is None:
                raise ModelError(
                    f"openai:{model}: the environment variable {api_key_env} is not set; "
                    "export the API key there, or name another variable with api_key_env"
                )
            key = "not-needed"
        self.name = f"openai:{model}"
        self.model = model
        self.max_concurrency = max_concurrency
        self._in_flight = threading.BoundedSemaphore(max_concurrency)
        self._warned_constraints = False
        self.max_retries, self.backoff = max_retries, backoff
        # retries are made here, so that each failed attempt is counted by its cause
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout)

    def _one(self, conversation: Conversation, kwargs: dict[str, object], stop: Sequence[str]) -> Generation:
        def ask() -> Generation:
            with self._in_flight:
                response = self.client.chat.completions.create(
                    model=self.model,
                    messages=conversation,
                    **kwargs,  # type: ignore[arg-type]
                )
            choices = response.choices
            if not isinstance(choices, list):  # a body that is not a completion
                raise ValueError("the reply has no choices")
            text = (choices[0].message.content or "") if choices else ""
            usage = response.usage
            return Generation(
                cut_at_stop(text, stop),
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )

        faults: Counter[str] = Counter()
        result = with_retries(ask, self.max_retries, self.backoff, faults, self.name)
        gen = Generation("", error=result) if isinstance(result, str) else result
        gen.faults = dict(faults)
        self.usage.add(gen)
        return gen

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
        if constraints and any(constraints) and not self._warned_constraints:
            self._warned_constraints = True
            log.warning("%s: constrained action decoding needs a local model; generating freely", self.name)
        kwargs: dict[str, object] = {"temperature": temperature, "max_tokens": max_new_tokens}
        if seed is not None:
            kwargs["seed"] = seed
        if stop:
            kwargs["stop"] = list(stop)[:4]  # the API takes at most four
        return in_threads(lambda c: self._one(c, kwargs, stop), conversations, self.max_concurrency)

    def score(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        raise ModelError(
            f"{self.name}: chat servers do not score given completions; use a local transformers "
            "model where log-probabilities are needed (e.g. the constrained teacher)"
        )

    def close(self) -> None:
        self.client.close()


def in_threads(fn: Callable[[Any], T], items: Sequence[Any], workers: int) -> list[T]:
    """``[fn(x) for x in items]``, up to ``workers`` at once (one item needs no thread)."""
    if len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def with_retries(
    call: Callable[[], T], max_retries: int, backoff: float, faults: Counter[str], name: str = "server"
) -> T | str:
    """``call()`` until it succeeds, retrying what may pass (429, 5xx, timeouts, dropped
    connections, unreadable replies) with exponential backoff or the wait the server asks for;
    each failed attempt is counted by its cause in ``faults``. Returns the result, or the error
    (a string) once retries are spent or the request itself is refused (4xx)."""
    for attempt in range(max_retries + 1):
        try:
            return call()
        except (openai.OpenAIError, ValueError, AttributeError, TypeError) as exc:
            cause, wait = _fault(exc)
            faults[cause] += 1
            if cause == "client_error" or attempt == max_retries:
                log.warning("%s: request failed (%s, %d attempts): %s", name, cause, attempt + 1, exc)
                return f"{cause}: {type(exc).__name__}: {exc}"
            delay = wait if wait is not None else min(30.0, backoff * 2**attempt)
            time.sleep(delay * (1 + 0.25 * random.random()))
    raise AssertionError("unreachable")


def _retry_after(headers: Any) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms`` or ``Retry-After`` in seconds), at
    most a minute; None when it does not say."""
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(60.0, max(0.0, float(value) * scale))
            except ValueError:
                continue
    return None


def _fault(exc: Exception) -> tuple[str, float | None]:
    """The cause of a failed attempt, and how long the server asked us to wait (Retry-After)."""
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", None
    if isinstance(exc, openai.APIConnectionError):
        return "connection", None
    if isinstance(exc, openai.APIStatusError):
        status, wait = exc.status_code, _retry_after(exc.response.headers)
        if status == 429:
            return "rate_limited", wait
        if status >= 500 or status in (408, 409):
            return "server_error", wait
        return "client_error", None  # 400/401/404...: asking again will not help
    return "bad_response", None
