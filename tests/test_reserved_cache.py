"""The growing key-value cache with reserved room: the same keys and values as transformers'
concatenating layer, written in place (the same replies: tests/test_models.py)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from leap.models.reserved_cache import ReservedLayer, reserved_cache


def _states(batch: int, tokens: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, tokens, 8, generator=g), torch.randn(batch, 3, tokens, 8, generator=g)


def _same(a: DynamicLayer, b: DynamicLayer) -> None:
    assert a.get_seq_length() == b.get_seq_length()
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_a_reserved_layer_holds_what_the_concatenating_layer_holds_without_moving() -> None:
    plain, reserved = DynamicLayer(), ReservedLayer(capacity=10)
    updates = [_states(2, 6, 0)] + [_states(2, 1, seed) for seed in range(1, 8)]
    addresses = set()
    for keys, values in updates:
        expected = plain.update(keys, values)
        got = reserved.update(keys, values)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
        _same(reserved, plain)
        if reserved.get_seq_length() <= 10:
            addresses.add(reserved.keys.data_ptr())
    # within its room the layer never moved; past it (13 tokens) it moved once and kept its tokens
    assert len(addresses) == 1
    assert reserved.get_seq_length() == 13 and reserved.keys.data_ptr() not in addresses


def test_a_reserved_layer_follows_cropping_row_selection_and_reset() -> None:
    plain, reserved = DynamicLayer(), ReservedLayer(capacity=32)
    for layer in (plain, reserved):
        layer.update(*_states(3, 5, 0))
        layer.crop(-2)
        layer.update(*_states(3, 1, 1))
    _same(reserved, plain)
    for layer in (plain, reserved):
        layer.batch_select_indices(torch.tensor([2, 0]))
        layer.update(*_states(2, 2, 2))
    _same(reserved, plain)
    reserved.reset()
    assert reserved.get_seq_length() == 0
    reserved.update(*_states(1, 4, 3))
    assert reserved.get_seq_length() == 4


def test_a_model_with_other_layers_keeps_transformers_cache(tiny_model_path) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_model_path)
    assert reserved_cache(config, 64) is not None
    config.sliding_window, config.layer_types = 4, ["sliding_attention"] * config.num_hidden_layers
    assert reserved_cache(config, 64) is None


def test_a_window_writes_its_rows_into_the_room_it_views() -> None:
    """A window over some rows, from some column, holding some columns (an empty one too) writes
    its updates into the full layer's room, where the full layer already holds those columns."""
    full = ReservedLayer(capacity=16)
    full.hold(9, torch.empty(4, 3, 0, 8))
    assert full.get_seq_length() == 9 and not full.keys.any()
    keys, values = _states(2, 3, 0)
    for start, stop in ((2, 6), (6, 6)):  # the second window holds nothing yet
        view = full.window(slice(1, 3), start, stop)
        assert view.get_seq_length() == stop - start
        got = view.update(keys, values)
        assert torch.equal(got[0][..., stop - start :, :], keys)
        assert torch.equal(full.keys[1:3, :, stop : stop + 3], keys)
        assert torch.equal(full.values[1:3, :, stop : stop + 3], values)
    assert not full.keys[[0, 3]].any()  # the other rows are untouched
    assert full.get_seq_length() == 9
