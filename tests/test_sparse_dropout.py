"""LoRA dropout that draws only the dropped positions has torch.nn.Dropout's distribution."""

from __future__ import annotations

import pytest
import torch

from leap.sparse_dropout import SparseDropout, dropped_positions, sparsify_lora_dropout


def test_dropped_positions_are_a_bernoulli_process() -> None:
    torch.manual_seed(0)
    n, p = 2_000_000, 0.05
    positions = dropped_positions(n, p)
    assert positions.dtype == torch.long and bool((positions[1:] > positions[:-1]).all())
    assert int(positions[0]) >= 0 and int(positions[-1]) < n
    # the count: binomial(n, p), mean 100,000, sd 308
    assert abs(len(positions) - n * p) < 5 * (n * p * (1 - p)) ** 0.5
    dropped = torch.zeros(n, dtype=torch.bool)
    dropped[positions] = True
    # independence: a drop right after a drop is as likely as any drop
    after = dropped[1:][dropped[:-1]].float().mean().item()
    assert after == pytest.approx(p, abs=0.003)
    # uniform over the positions: each tenth of the range holds a tenth of the drops
    tenths = torch.bincount(positions * 10 // n, minlength=10).float() / len(positions)
    assert torch.allclose(tenths, torch.full((10,), 0.1), atol=0.005)
    assert len(dropped_positions(10, 0.0)) == 0 and len(dropped_positions(0, 0.5)) == 0
    # a short tensor with a large p: often more gaps are needed than first drawn
    assert all(len(set(dropped_positions(3, 0.9).tolist())) <= 3 for _ in range(200))


def test_sparse_dropout_scales_kept_values_and_masks_their_gradients() -> None:
    torch.manual_seed(1)
    drop = SparseDropout(0.1)
    x = torch.randn(300, 400, requires_grad=True)
    y = drop(x)
    zeros = y == 0
    assert zeros.float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert torch.allclose(y[~zeros], x[~zeros] / 0.9)
    y.sum().backward()
    assert torch.equal(x.grad == 0, zeros)
    assert torch.allclose(x.grad[~zeros], torch.full_like(x.grad[~zeros], 1 / 0.9))
    drop.eval()
    assert drop(x) is x  # no dropout outside training
    with pytest.raises(ValueError, match="dropout probability"):
        SparseDropout(1.0)


def test_every_lora_dropout_of_a_peft_model_is_replaced(tiny_model_path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    peft = get_peft_model(model, LoraConfig(r=4, lora_dropout=0.05, target_modules="all-linear"))
    before = sum(type(m) is torch.nn.Dropout for m in peft.modules())
    assert before == 2 * 7  # two layers of seven linear modules
    assert sparsify_lora_dropout(peft) == before
    assert sum(type(m) is torch.nn.Dropout for m in peft.modules()) == 0
    assert {m.p for m in peft.modules() if isinstance(m, SparseDropout)} == {0.05}
    assert sparsify_lora_dropout(peft) == 0  # nothing left to replace
