"""Dropout that draws only the positions it drops: LoRA dropout made cheap on CPUs.

PEFT puts a dropout (p = 0.05 by default, the paper's) on the input of every LoRA layer. On a CPU
the random mask costs more than the layer's LoRA matrix work: ``torch.nn.Dropout`` draws one
random number per element, single-threaded, and on 2 cores that took a tenth to a fifth of a
training step of SmolLM2-135M (docs/speed.md). With a small p almost every element is kept, so
this module draws only the dropped ones: the gaps between dropped positions of a Bernoulli(p)
process are independent geometric variables, so about p x n draws place them with exactly the
distribution of ``torch.nn.Dropout`` (each element dropped independently with probability p, the
kept ones scaled by 1 / (1 - p)).
"""

from __future__ import annotations

import math
from typing import Any

import torch


def _gaps(count: int, p: float) -> torch.Tensor:
    """``count`` independent geometric variables on {1, 2, ...} with success probability p (by
    inversion of uniforms: faster on CPU than ``Tensor.geometric_``), in float64, where positions
    stay exact integers far beyond any tensor's size."""
    uniform = torch.rand(count, dtype=torch.float64)
    return torch.floor(torch.log1p(-uniform) / math.log1p(-p)) + 1


def dropped_positions(n: int, p: float) -> torch.Tensor:
    """The indices in ``range(n)`` that a Bernoulli(p) process drops, in increasing order."""
    if n == 0 or p <= 0:
        return torch.empty(0, dtype=torch.long)
    expected = n * p
    draws = int(expected + 6 * math.sqrt(expected) + 16)  # more follow in the rare case it falls short
    ends = torch.cumsum(_gaps(draws, p), 0) - 1
    while ends[-1] < n:
        ends = torch.cat([ends, torch.cumsum(_gaps(draws, p), 0) + ends[-1]])
    return ends[ends < n].long()


class _ScaleAndZero(torch.autograd.Function):
    """``x * scale`` with the flat ``positions`` set to zero; its gradient likewise (it keeps the
    positions for the backward pass, not a mask of the input's size)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float, positions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(positions)
        ctx.scale = scale
        return _scale_and_zero(x, scale, positions)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (positions,) = ctx.saved_tensors
        return _scale_and_zero(grad, ctx.scale, positions), None, None


def _scale_and_zero(x: torch.Tensor, scale: float, positions: torch.Tensor) -> torch.Tensor:
    y = (x * scale).contiguous()
    y.view(-1)[positions] = 0
    return y


class SparseDropout(torch.nn.Module):
    """``torch.nn.Dropout(p)`` in distribution, drawing about p x n random numbers, not n."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), not {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        positions = dropped_positions(x.numel(), self.p).to(x.device)
        return _ScaleAndZero.apply(x, 1 / (1 - self.p), positions)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def sparsify_lora_dropout(model: Any) -> int:
    """Replace the ``torch.nn.Dropout`` of every LoRA layer of a PEFT ``model`` by a
    :class:`SparseDropout` of the same p; returns how many were replaced."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if type(dropout) is torch.nn.Dropout:
                dropouts[name] = SparseDropout(dropout.p)
                replaced += 1
    return replaced
