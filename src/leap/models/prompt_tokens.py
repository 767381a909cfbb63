"""Prompt tokens remembered across an agent's steps: only each prompt's new messages tokenised.

In a transcript prompt, step t+1's text is step t's text, the reply and the new observation;
tokenising every prompt whole costs O(T) per step, the largest host cost of a lockstep rollout
step once decoding is fast (100 rows of household transcripts: about 80 ms of every agent step on
2 CPU cores). A fast tokenizer cuts its input at special added tokens before anything else and
works on each piece between them on its own, so a text's tokens are the tokens of its pieces one
after the other when every piece starts at such a token (the one that opens a chat-template
message: ``<|im_start|>``, ``<|start_header_id|>``). :class:`PromptTokenizer` remembers, for every
such cut of the prompts it has tokenised, the text before the cut and its tokens; a new prompt
takes the tokens of its longest remembered cut and tokenises only the pieces after it, all rows'
new pieces in one call.

Whether a tokenizer keeps that promise is checked when the memo is built: the cut token must be a
special added token that is matched before normalisation and takes no space from its left
(``normalized``, ``lstrip`` and ``single_word`` off), and probe texts must tokenise the same in
pieces as whole; otherwise every prompt is tokenised whole, as before.
"""

from __future__ import annotations

import logging
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from itertools import pairwise

from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

#: remember prompts' tokens across calls; off only to measure what that saves (every prompt is
#: then tokenised whole)
REMEMBER_PROMPTS = True

#: bytes the remembered cuts may hold (their texts and tokens), the least recently used dropped
#: first: 100 household episodes of horizon 20 take about 20 MiB
PROMPT_MEMO_BYTES = 64 * 2**20

#: texts tokenised in pieces and whole by the probe: the pieces around a cut must give the same
#: tokens (spaces, line ends and non-ASCII letters on both sides)
_PROBES = (("a", "b"), (" x\n", " y"), ("é\n\n", "\n ü"), ("", "z"))


def message_opening(tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The special token that opens the reply the chat template asks for (and so every message),
    found by rendering a one-message conversation with and without the generation prompt."""
    try:
        conversation = [{"role": "user", "content": "x"}]
        without = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=False)
        with_prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    except Exception:  # no chat template, or one that rejects the probe: nothing to cut at
        return None
    if not (isinstance(without, str) and isinstance(with_prompt, str) and with_prompt.startswith(without)):
        return None
    opening = with_prompt[len(without) :]
    candidates = [t for t in tokenizer.added_tokens_decoder.values() if opening.startswith(t.content)]
    return max(candidates, key=lambda t: len(t.content)).content if candidates else None


def _cuts_safely(tokenizer: PreTrainedTokenizerBase, cut: str) -> bool:
    """Whether texts tokenise the same cut before ``cut`` as whole (module docstring)."""
    token = next((t for t in tokenizer.added_tokens_decoder.values() if t.content == cut), None)
    if token is None or not tokenizer.is_fast:
        return False
    if token.normalized or token.lstrip or token.single_word:
        return False
    for left, right in _PROBES:
        whole, before, after = tokenizer([left + cut + right, left, cut + right], add_special_tokens=False)[
            "input_ids"
        ]
        if whole != before + after:
            return False
    return True


class PromptTokenizer:
    """Tokenises prompts, each from the longest cut it shares with a prompt tokenised before.

    Gives exactly the tokens of ``tokenizer(texts, add_special_tokens=False)``; where the
    tokenizer cannot be cut safely (module docstring), that is what it calls.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_bytes: int = PROMPT_MEMO_BYTES) -> None:
        self.tokenizer = tokenizer
        self.max_bytes = max_bytes
        opening = message_opening(tokenizer)
        self.cut = opening if opening is not None and _cuts_safely(tokenizer, opening) else None
        if self.cut is None:
            log.info("prompt tokens are not remembered: the tokenizer cannot be cut at its messages")
        #: text before a cut -> (the tokens of a text that starts with it, how many are before the cut)
        self._memo: OrderedDict[str, tuple[array, int]] = OrderedDict()
        self._bytes = 0
        #: tokens taken from the memo and tokens tokenised, over all calls
        self.reused_tokens = 0
        self.new_tokens = 0

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        if self.cut is None or not REMEMBER_PROMPTS:
            ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
            self.new_tokens += sum(map(len, ids))
            return ids
        plans = [self._plan(text) for text in texts]
        pieces = [piece for _, _, cuts, text in plans for piece in _pieces(text, cuts)]
        piece_ids = iter(self.tokenizer(pieces, add_special_tokens=False)["input_ids"] if pieces else [])
        encoded = []
        for known, n_known, cuts, text in plans:
            ids = known[:n_known].tolist() if known is not None else []
            self.reused_tokens += len(ids)
            bounds = []
            for _ in range(len(cuts) - 1):
                ids += next(piece_ids)
                bounds.append(len(ids))
            self.new_tokens += len(ids) - n_known
            self._remember(text, cuts[1:-1], bounds[:-1], ids)
            encoded.append(ids)
        return encoded

    def _plan(self, text: str) -> tuple[array | None, int, list[int], str]:
        """The longest remembered cut of ``text`` (its tokens, how many) and the cuts after it:
        positions in ``text`` from the remembered cut (or 0) to its end."""
        cut = self.cut
        assert cut is not None
        positions = []
        at = text.find(cut, 1)
        while at != -1:
            positions.append(at)
            at = text.find(cut, at + len(cut))
        for k in range(len(positions) - 1, -1, -1):
            found = self._memo.get(text[: positions[k]])
            if found is not None:
                self._memo.move_to_end(text[: positions[k]])
                return found[0], found[1], [*positions[k:], len(text)], text
        return None, 0, [0, *positions, len(text)], text

    def _remember(self, text: str, cuts: list[int], counts: list[int], ids: list[int]) -> None:
        """Remember ``text`` before each of its new cuts, with its tokens up to there."""
        if not cuts:
            return
        tokens = array("i", ids)
        for position, count in zip(cuts, counts, strict=True):
            key = text[:position]
            if key in self._memo:
                continue
            self._memo[key] = (tokens, count)
            self._bytes += len(key) + 4 * len(tokens)
        while self._bytes > self.max_bytes and self._memo:
            key, (tokens, _) = self._memo.popitem(last=False)
            self._bytes -= len(key) + 4 * len(tokens)


def _pieces(text: str, cuts: list[int]) -> list[str]:
    return [text[a:b] for a, b in pairwise(cuts)]
