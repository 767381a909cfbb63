"""SFT rows as token sequences, and prefix-shared packing for training.

The corrections of one failed episode all share the student's transcript: the target of step t
follows the prompt of step t, and every earlier prompt is a prefix of it. Training them as
separate rows computes the transcript once per corrected step. Packing puts the longest row (the
*trunk*) first and every row whose prompt is a prefix of it after it as a *branch*: the reply
tokens only, placed at their own positions, attending to the trunk up to where their prompt ends
and to themselves. A 4D attention mask and explicit position ids make this exactly the same
computation as the separate rows (tested), at the cost of the trunk plus the replies.

A branch starts with a copy of the last prompt token, unlabelled: its hidden state predicts the
first reply token, just as the prompt's last token does in a separate row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: the label of tokens outside the loss
IGNORE = -100
#: rows are grouped by this many leading tokens before their prefixes are compared
_KEY_TOKENS = 96


def sft_features(tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> dict:
    """Token ids of a prompt/completion conversation and labels on the tokens of the
    completion's assistant turns (their text and end-of-turn token), ``IGNORE`` elsewhere: user
    turns inside a packed completion are context, never targets."""

    def ids(messages: list[dict[str, str]], generation_prompt: bool) -> list[int]:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    messages = [*prompt, *completion]
    full = ids(messages, False)
    labels = [IGNORE] * len(full)
    for j in range(len(prompt), len(messages)):
        if messages[j]["role"] != "assistant":
            continue
        before, after = ids(messages[:j], True), ids(messages[: j + 1], False)
        if after[: len(before)] != before or full[: len(after)] != after:
            raise ValueError("the chat template does not render a conversation as the sum of its turns")
        labels[len(before) : len(after)] = full[len(before) : len(after)]
    return {"input_ids": full, "labels": labels}


@dataclass
class _Packed:
    ids: np.ndarray
    labels: list[int]
    positions: list[int]
    branch: list[int]
    #: per token: how many trunk tokens a branch token may see (0 for trunk tokens)
    anchor: list[int]
    n_rows: int = 1
    trunk_length: int = 0
    key: tuple[int, ...] = field(default_factory=tuple)

    def to_row(self) -> dict[str, list[int]]:
        return {
            "input_ids": self.ids.tolist(),
            "labels": self.labels,
            "position_ids": self.positions,
            "branch": self.branch,
            "anchor": self.anchor,
        }


def _prompt_length(labels: list[int]) -> int:
    return next((i for i, label in enumerate(labels) if label != IGNORE), len(labels))


def pack_shared_prefixes(rows: list[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """Pack rows (``input_ids`` + ``labels``) whose prompt is a prefix of a longer row into it.

    Returns rows with ``input_ids``, ``labels``, ``position_ids``, ``branch`` and ``anchor``,
    for :class:`PrefixTreeCollator`. Rows never grow past ``max_length`` (a row that does not
    fit starts a trunk of its own); rows longer than that on their own are cut, as any trainer
    would cut them.
    """
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"]))
    trunks: list[_Packed] = []
    by_key: dict[tuple[int, ...], list[_Packed]] = {}
    for i in order:
        ids = np.asarray(rows[i]["input_ids"][:max_length], dtype=np.int64)
        labels = list(rows[i]["labels"][:max_length])
        start = _prompt_length(labels)
        key = tuple(ids[: min(_KEY_TOKENS, start)].tolist())
        branch_length = len(ids) - start + 1
        home = next(
            (
                t
                for t in by_key.get(key, ())
                if start >= 1
                and start <= t.trunk_length
                and len(t.ids) + branch_length <= max_length
                and np.array_equal(t.ids[:start], ids[:start])
            ),
            None,
        )
        if home is None:
            packed = _Packed(ids, labels, list(range(len(ids))), [0] * len(ids), [0] * len(ids))
            packed.trunk_length, packed.key = len(ids), key
            trunks.append(packed)
            by_key.setdefault(key, []).append(packed)
            continue
        # the branch: the prompt's last token again (unlabelled), then the reply
        tokens = ids[start - 1 :]
        home.ids = np.concatenate([home.ids, tokens])
        home.labels += [IGNORE, *labels[start:]]
        home.positions += list(range(start - 1, len(ids)))
        home.branch += [home.n_rows] * len(tokens)
        home.anchor += [start - 1] * len(tokens)
        home.n_rows += 1
    return [t.to_row() for t in trunks]


class PrefixTreeCollator:
    """Pads packed rows and builds their 4D attention mask: trunk tokens attend causally to the
    trunk; branch tokens to the trunk before their anchor and causally to their own branch."""

    def __init__(self, pad_token_id: int, *, boolean_mask: bool = True) -> None:
        self.pad_token_id = pad_token_id
        #: sdpa takes a boolean mask (True: attend); eager attention an additive float one
        self.boolean_mask = boolean_mask

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)

        def padded(name: str, value: int) -> torch.Tensor:
            return torch.tensor([list(f[name]) + [value] * (width - len(f[name])) for f in features])

        input_ids = padded("input_ids", self.pad_token_id)
        branch = padded("branch", -1)  # padding: a branch of its own that nobody sees
        anchor = padded("anchor", 0)
        index = torch.arange(width)
        causal = index[None, :] <= index[:, None]
        same = branch[:, :, None] == branch[:, None, :]
        trunk_key = (branch == 0)[:, None, :]
        sees_trunk = trunk_key & ((branch == 0)[:, :, None] | (index[None, None, :] < anchor[:, :, None]))
        allowed = causal[None] & (same | sees_trunk)
        allowed |= torch.eye(width, dtype=torch.bool)[None]  # a padding query attends to itself
        mask = allowed[:, None]
        if not self.boolean_mask:
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        return {
            "input_ids": input_ids,
            "labels": padded("labels", IGNORE),
            "position_ids": padded("position_ids", 0),
            "attention_mask": mask,
        }
