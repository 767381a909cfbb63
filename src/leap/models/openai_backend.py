"""Any OpenAI-compatible chat server: api.openai.com, vLLM, llama.cpp, ``transformers serve``.

Requests run concurrently up to a limit. The ``openai`` client retries 408/409/429/5xx answers,
connection errors and timeouts with exponential backoff; a request that still fails becomes a
Generation with ``error`` set, so a dead server costs replies, never the run.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import openai

from leap.models.base import ChatModel, ChoiceConstraint, Conversation, Generation, ModelError, cut_at_stop

log = logging.getLogger(__name__)


class OpenAIChatModel(ChatModel):
    """Args:
    model: the model name the server expects.
    base_url: server address, e.g. http://127.0.0.1:8000/v1 (None: api.openai.com).
    api_key_env: name of the environment variable holding the key. A local server with no key
        set gets a placeholder key; api.openai.com without one is an error.
    max_concurrency: requests in flight at once.
    max_retries: retries per request on 429/5xx/timeouts, with exponential backoff.
    timeout: seconds per request attempt.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        max_retries: int = 4,
        timeout: float = 120.0,
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
        self._warned_constraints = False
        self.client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=max_retries, timeout=timeout)

    def _one(self, conversation: Conversation, kwargs: dict[str, object], stop: Sequence[str]) -> Generation:
        try:
            response = self.client.chat.completions.create(
                model=self.model,
                messages=conversation,
                **kwargs,  # type: ignore[arg-type]
            )
            text = response.choices[0].message.content or "" if response.choices else ""
            usage = response.usage
            gen = Generation(
                cut_at_stop(text, stop),
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            )
        except openai.OpenAIError as exc:
            log.warning("%s: request failed after retries: %s", self.name, exc)
            gen = Generation("", error=f"{type(exc).__name__}: {exc}")
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
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda c: self._one(c, kwargs, stop), conversations))

    def score(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        raise ModelError(
            f"{self.name}: chat servers do not score given completions; use a local transformers "
            "model where log-probabilities are needed (e.g. the constrained teacher)"
        )

    def close(self) -> None:
        self.client.close()
