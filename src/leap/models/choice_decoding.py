"""Constrained decoding for local models: after a marker, only the tokens of a listed choice.

The reply is free until the marker (``ACTION:``) has been written; from then on each step may
only continue one of the row's choices (a token trie), and a finished choice ends the reply. A row
whose text after the marker leaves the trie (an unusual tokenisation of the marker) is released
and decodes freely, so the constraint can never make a row unsatisfiable.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, PreTrainedTokenizerBase

from leap.models.base import ChoiceConstraint

#: trie key marking that a choice may end at this node
_END = -1

Trie = dict[int, "Trie"]


#: per tokenizer: the tokens of each choice seen so far (a rollout's candidate actions repeat
#: from step to step and episode to episode); emptied when it holds more than CHOICE_MEMO choices
_CHOICE_TOKENS: weakref.WeakKeyDictionary[PreTrainedTokenizerBase, dict[str, list[int]]] = (
    weakref.WeakKeyDictionary()
)
CHOICE_MEMO = 100_000
#: remember choices' tokens across calls; off only to measure what that saves (every row's choices
#: then tokenised in one call per row, as before)
REMEMBER_CHOICES = True


def choice_tokens(tokenizer: PreTrainedTokenizerBase, choices: Sequence[str]) -> list[list[int]]:
    """The tokens of each choice as it follows the marker (with its leading space); the choices
    not seen before are tokenised in one call (half the time of one call per choice)."""
    if not REMEMBER_CHOICES:
        return tokenizer([" " + choice for choice in choices], add_special_tokens=False)["input_ids"]
    memo = _CHOICE_TOKENS.setdefault(tokenizer, {})
    missing = [choice for choice in dict.fromkeys(choices) if choice not in memo]
    if missing:
        if len(memo) + len(missing) > CHOICE_MEMO:
            memo.clear()
        ids = tokenizer([" " + choice for choice in missing], add_special_tokens=False)["input_ids"]
        memo.update(zip(missing, ids, strict=True))
    return [memo[choice] for choice in choices]


def build_trie(tokenizer: PreTrainedTokenizerBase, choices: Sequence[str]) -> Trie:
    """Token trie of the choices as they follow the marker (with their leading space)."""
    root: Trie = {}
    for tokens in choice_tokens(tokenizer, choices):
        node = root
        for token in tokens:
            node = node.setdefault(token, {})
        node[_END] = {}
    return root


class ChoiceLogitsProcessor(LogitsProcessor):
    """Masks every token that does not continue a choice, per row of a left-padded batch."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompt_length: int,
        constraints: Sequence[ChoiceConstraint | None],
        eos_token_id: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.constraints = list(constraints)
        self.eos_token_id = eos_token_id
        if REMEMBER_CHOICES:  # the batch's new choices in one tokenizer call, not one per row
            choice_tokens(tokenizer, [choice for c in constraints if c for choice in c.choices])
        self.tries = [build_trie(tokenizer, c.choices) if c and c.choices else None for c in constraints]
        #: per row: the index of the first generated token after the marker, once it is written
        self.start: list[int | None] = [None] * len(constraints)
        self.released = [False] * len(constraints)
        #: per row: how many generated tokens are known to hold no marker
        self.searched = [0] * len(constraints)
        #: the text of single tokens, as decoded so far
        self._pieces: dict[int, str] = {}

    def _text(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _may_end_marker(self, row: int, tokens: list[int], marker: str) -> bool:
        """Whether the marker can have appeared with the newest token. Decoding every row's whole
        reply at every step cost more than the rest of the mask, so when the tokens before the
        newest are known to hold no marker, the reply is searched only if the newest token's text
        holds the marker's last character (a new marker ends there). That needs a last character
        that is ASCII and not a space: decoded alone, a token keeps its ASCII characters but may
        lose a leading space. Otherwise True: the whole reply is searched."""
        last = marker[-1:]
        if not (last.isascii() and last.strip()) or self.searched[row] != len(tokens) - 1:
            return True
        token = tokens[-1]
        if token not in self._pieces:
            self._pieces[token] = self._text([token])
        return last in self._pieces[token]

    def _allowed(self, row: int, tokens: list[int]) -> list[int] | None:
        trie, constraint = self.tries[row], self.constraints[row]
        if trie is None or constraint is None or self.released[row]:
            return None
        if self.start[row] is None:
            marker = constraint.marker
            if not (self._may_end_marker(row, tokens, marker) and marker in self._text(tokens)):
                self.searched[row] = len(tokens)
                return None
            # the shortest prefix that holds the marker: the choice starts right after it
            end = next(k for k in range(len(tokens) + 1) if constraint.marker in self._text(tokens[:k]))
            text = self._text(tokens[:end])
            if text[text.find(constraint.marker) + len(constraint.marker) :].strip():
                self.released[row] = True  # the marker's last token already began the action
                return None
            self.start[row] = end
        node = trie
        for token in tokens[self.start[row] :]:
            if token not in node:
                self.released[row] = True
                return None
            node = node[token]
        allowed = [t for t in node if t != _END]
        if _END in node:
            allowed.append(self.eos_token_id)
        return allowed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # the constrained rows and their allowed (row, token) pairs go to the device in one copy,
        # and four operations mask the whole batch: per row it was a copy (a synchronisation on a
        # GPU) and four operations at every decoding step
        constrained: list[int] = []
        rows: list[int] = []
        tokens: list[int] = []
        for row, generated in enumerate(input_ids[:, self.prompt_length :].tolist()):
            if generated and generated[-1] == self.eos_token_id:
                continue  # finished; generate pads this row from now on
            allowed = self._allowed(row, generated)
            if allowed is not None:
                constrained.append(row)
                rows += [row] * len(allowed)
                tokens += allowed
        if not constrained:
            return scores
        index = torch.tensor(constrained + rows + tokens, device=scores.device)
        which, pairs = index[: len(constrained)], index[len(constrained) :].view(2, -1)
        kept = scores[pairs[0], pairs[1]]
        scores.index_fill_(0, which, float("-inf"))
        scores[pairs[0], pairs[1]] = kept
        return scores
