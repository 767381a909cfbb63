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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


def fill_lanes(lengths: Sequence[int], width: int) -> list[list[int]]:
    """Put rows of the given lengths side by side into as few lanes of ``width`` tokens as first
    fit, longest first, finds (at most 11/9 of the fewest possible, plus one); returns each
    lane's row indices. A row longer than ``width`` gets a lane of its own."""
    lanes: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        lane = next((k for k, free in enumerate(room) if free >= lengths[i]), None)
        if lane is None:
            lanes.append([])
            room.append(width)
            lane = len(lanes) - 1
        lanes[lane].append(i)
        room[lane] -= lengths[i]
    return lanes


#: how a collator hands over the tree mask: "bool" (sdpa: True where a token may attend),
#: "float" (eager attention: 0 or the most negative float, added to the scores) or "block"
#: (a flex-attention BlockMask: only the blocks that hold allowed pairs are computed)
MaskKind = Literal["bool", "float", "block"]


def tree_allowed(
    q: Any, kv: Any, seq_q: Any, seq_kv: Any, branch_q: Any, branch_kv: Any, anchor_q: Any
) -> Any:
    """Whether query ``q`` may attend to key ``kv`` (tensors broadcast): both in the same packed
    row (``seq``; padding is a row of its own), causally, and either in the same branch (the trunk
    is branch 0) or the key in the trunk before the query's anchor (an absolute index)."""
    same_branch = branch_q == branch_kv
    sees_trunk = (branch_kv == 0) & ((branch_q == 0) | (kv < anchor_q))
    return (kv <= q) & (seq_q == seq_kv) & (same_branch | sees_trunk)


class PrefixTreeCollator:
    """Pads packed rows and builds their attention mask: trunk tokens attend causally to the
    trunk; branch tokens to the trunk before their anchor and causally to their own branch.

    Args:
        pad_token_id: the padding token.
        mask: the form of the mask (:data:`MaskKind`).
        concatenate: put all rows of a micro-batch one after another in a single sequence (they
            never see each other): no padding between rows, and with a block mask the attention
            cost is that of the separate rows. Without it each row is a batch row (a dense mask
            over a concatenation would cost the square of its length).
        lanes: without ``concatenate``, put the rows side by side into lanes as wide as the
            longest row (:func:`fill_lanes`), each lane a batch row whose rows never see each
            other: the batch's rows are not each padded to the longest. With household rows of
            288 to 1,235 tokens, 16 padded rows were 42 % padding.
        multiple_of: pad the sequence length to a multiple of this (fewer distinct shapes for
            compiled kernels).
        label_positions: also hand out ``label_positions``, the flat indices (row x width +
            position) of the positions whose next token is a label, found on the host: a loss
            that takes the language-model head at those positions only then needs no boolean
            index on the device, which reads a value back (a synchronisation mid-step on a GPU;
            ``leap.train.labelled_loss``).
        device: where the attention mask is built: the device that uses it. A dense mask of 16
            household rows side by side took the host about 47 ms on 2 CPU cores, plus its copy
            to the GPU (13 MB); built there from the rows' sequence, branch and anchor indices it
            is a few element-wise kernels (:attr:`mask_on_device`). The batch's other tensors
            go there too, copied without waiting for the device (:attr:`copy_ahead`).

    A micro-batch whose rows are all plain causal sequences (no branches, no padding, one
    sequence per row) gets no dense mask: the model's attention then runs its causal kernel,
    which skips the blocks above the diagonal (:attr:`causal_shortcut`; docs/speed.md).
    """

    #: leave out the dense mask of plain causal rows (off only to measure what it saves)
    causal_shortcut: bool = True
    #: build a dense mask on ``device``, not on the host (off only to measure what it saves)
    mask_on_device: bool = True
    #: with the mask built on ``device``, hand the whole batch there too, copied from pinned host
    #: memory without waiting. On a GPU a copy from ordinary host memory first waits for all the
    #: work queued on the device: the host stopped at every tensor of every micro-batch (and the
    #: trainer, counting a step's labels on the host, copied the count too), unable to prepare
    #: the next micro-batch while the GPU computes. Off only to measure what that saves
    copy_ahead: bool = True

    def __init__(
        self,
        pad_token_id: int,
        *,
        mask: MaskKind = "bool",
        concatenate: bool = False,
        lanes: bool = False,
        multiple_of: int = 1,
        device: str = "cpu",
        label_positions: bool = False,
    ) -> None:
        if mask not in ("bool", "float", "block"):
            raise ValueError(f"unknown mask kind {mask!r}; use bool, float or block")
        self.pad_token_id = pad_token_id
        self.mask = mask
        self.concatenate = concatenate
        self.lanes = lanes
        self.multiple_of = max(1, multiple_of)
        self.device = device
        self.label_positions = label_positions
        #: the tokens of each micro-batch handed out so far, padding excluded (for throughput;
        #: a data loader may fetch a batch ahead of the one being trained)
        self.counts: list[int] = []
        #: the positions each micro-batch computes, padding included
        self.slots: list[int] = []

    def _groups(self, features: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        """The rows of each batch row: all in one, side by side in lanes, or one each."""
        if self.concatenate:
            return [features]
        if self.lanes and len(features) > 1:
            lengths = [len(f["input_ids"]) for f in features]
            lanes = fill_lanes(lengths, -(-max(lengths) // self.multiple_of) * self.multiple_of)
            return [[features[i] for i in lane] for lane in lanes]
        return [[f] for f in features]

    def _rows(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """The batch rows' token-level tensors, filled in arrays: a micro-batch of 16 household
        rows is some 100,000 token-level values, host work a GPU step waits for."""
        groups = self._groups(features)
        lengths = [sum(len(f["input_ids"]) for f in group) for group in groups]
        self.counts.append(sum(lengths))
        width = -(-max(lengths) // self.multiple_of) * self.multiple_of
        self.slots.append(width * len(groups))
        # padding: a row (and a branch) of its own, seen by nobody else
        fill = dict(input_ids=self.pad_token_id, labels=IGNORE, position_ids=0, seq=-1, branch=-1, anchor=0)
        out = {name: np.full((len(groups), width), value, dtype=np.int64) for name, value in fill.items()}
        for i, group in enumerate(groups):
            offset = 0
            for s, f in enumerate(group):
                span = slice(offset, offset + len(f["input_ids"]))
                for name in ("input_ids", "labels", "position_ids", "branch"):
                    out[name][i, span] = f[name]
                out["seq"][i, span] = s
                out["anchor"][i, span] = np.asarray(f["anchor"], dtype=np.int64) + offset
                offset = span.stop
        return {name: torch.from_numpy(array) for name, array in out.items()}

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        t = self._rows(features)
        seq, branch, anchor = t.pop("seq"), t.pop("branch"), t.pop("anchor")
        if self.label_positions:
            targets = torch.nn.functional.pad(t["labels"][:, 1:], (0, 1), value=IGNORE)
            t["label_positions"] = (targets != IGNORE).flatten().nonzero().squeeze(1)
        if self.mask == "block":
            t["attention_mask"] = self._block_mask(seq, branch, anchor)
            return self._on_device(t)
        if self.causal_shortcut and bool((branch == 0).all()) and bool((seq == 0).all()):
            return self._on_device(t)
        if self.mask_on_device:
            seq, branch, anchor = self._moved(seq, branch, anchor)
        index = torch.arange(seq.shape[1], device=seq.device)
        allowed = tree_allowed(
            index[:, None],
            index[None, :],
            seq[:, :, None],
            seq[:, None, :],
            branch[:, :, None],
            branch[:, None, :],
            anchor[:, :, None],
        )
        mask = allowed[:, None]
        if self.mask == "float":
            mask = torch.zeros(mask.shape, device=mask.device).masked_fill(
                ~mask, torch.finfo(torch.float32).min
            )
        t["attention_mask"] = mask
        return self._on_device(t)

    def _moved(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """``tensors`` on the collator's device; onto a GPU from pinned memory without waiting
        (``copy_ahead``)."""
        target = torch.device(self.device)
        if not self.copy_ahead:
            return [x.to(target) for x in tensors]
        pin = target.type == "cuda"
        pinned = [x.pin_memory() if pin and x.device.type == "cpu" else x for x in tensors]
        return [x.to(target, non_blocking=True) for x in pinned]

    def _on_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch's host tensors moved to the device where its mask is built
        (``copy_ahead``); as they are where the mask stays on the host."""
        if not (self.copy_ahead and self.mask_on_device) or torch.device(self.device).type == "cpu":
            return batch
        names = [k for k, v in batch.items() if isinstance(v, torch.Tensor)]
        return batch | dict(zip(names, self._moved(*(batch[k] for k in names)), strict=True))

    def _block_mask(self, seq: torch.Tensor, branch: torch.Tensor, anchor: torch.Tensor) -> Any:
        from torch.nn.attention.flex_attention import create_block_mask

        seq, branch, anchor = self._moved(seq, branch, anchor)

        def mask_mod(b: Any, h: Any, q: Any, kv: Any) -> Any:
            return tree_allowed(q, kv, seq[b, q], seq[b, kv], branch[b, q], branch[b, kv], anchor[b, q])

        width = seq.shape[1]
        return create_block_mask(mask_mod, seq.shape[0], None, width, width, device=self.device)
