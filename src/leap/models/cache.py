"""A disk cache in front of any chat model: a request is never paid for twice.

Keys are the SHA-256 of everything that determines a reply (model name, messages, temperature,
max new tokens, seed, stop strings, any decoding constraint). Replies are appended to one JSONL
file; failed requests are not cached, so they are tried again on resume.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from leap.io import append_jsonl, read_jsonl
from leap.models.base import ChatModel, ChoiceConstraint, Conversation, Generation


def request_key(model: str, conversation: Conversation, **params: object) -> str:
    blob = json.dumps(
        {"model": model, "messages": conversation, **params}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedChatModel(ChatModel):
    def __init__(self, inner: ChatModel, path: str | Path) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.path = Path(path)
        self.hits = 0
        self._lock = threading.Lock()
        self._cache: dict[str, dict[str, object]] = {}
        if self.path.exists():
            for row in read_jsonl(self.path):
                self._cache[row["key"]] = row

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
        params = {
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "stop": list(stop),
        }
        per_request = list(constraints) if constraints else [None] * len(conversations)
        keys = [
            request_key(self.inner.name, c, **params, **({"constraint": asdict(k)} if k else {}))
            for c, k in zip(conversations, per_request, strict=True)
        ]
        results: list[Generation | None] = [None] * len(keys)
        missing = []
        for i, key in enumerate(keys):
            row = self._cache.get(key)
            if row is None:
                missing.append(i)
            else:
                results[i] = Generation(
                    str(row["text"]), int(row["prompt_tokens"]), int(row["completion_tokens"])
                )  # type: ignore[call-overload]
                self.hits += 1
        if missing:
            fresh = self.inner.generate(
                [conversations[i] for i in missing],
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                seed=seed,
                stop=stop,
                constraints=[per_request[i] for i in missing] if constraints else None,
            )
            for i, gen in zip(missing, fresh, strict=True):
                results[i] = gen
                self.usage.add(gen)
                if gen.error is None:
                    row = {
                        "key": keys[i],
                        "text": gen.text,
                        "prompt_tokens": gen.prompt_tokens,
                        "completion_tokens": gen.completion_tokens,
                    }
                    with self._lock:
                        self._cache[keys[i]] = row
                        append_jsonl(self.path, row)
        return [r for r in results if r is not None]

    def score(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        return self.inner.score(conversations, completions)

    def close(self) -> None:
        self.inner.close()
