"""A growing key-value cache that writes each new token into room reserved up front.

transformers' ``DynamicLayer`` appends a decoding step's keys and values with ``torch.cat``: every
generated token copies the whole cache of every layer into a newly allocated tensor. On a CPU
that copy, and the page faults of allocations too large for the allocator to reuse, cost more
than the step's attention once a batch holds long transcripts (docs/speed.md: 32 rows of 1,300
tokens, 4 ms per layer's keys against 3.5 ms for the layer's attention). A :class:`ReservedLayer`
allocates its tensors once, with room for the whole generation, and hands out views of the part
filled so far: the same keys and values, so the same replies.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` with room for ``capacity`` tokens, allocated at its first update.

    An update past the room moves the layer to a larger allocation (half as much room again), as
    does one after something else replaced its tensors (selecting batch rows); after cropping,
    which keeps a view of the room, it writes on where the crop ended.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._room: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self.get_seq_length()
        needed = held + key_states.shape[-2]
        room = self._room
        if (
            room is None
            or not _starts_at(self.keys, room[0])
            or room[0].shape[:-2] != key_states.shape[:-2]
            or needed > room[0].shape[-2]
        ):
            size = max(needed, self.capacity) if room is None else needed + needed // 2
            room = (
                key_states.new_empty((*key_states.shape[:-2], size, key_states.shape[-1])),
                value_states.new_empty((*value_states.shape[:-2], size, value_states.shape[-1])),
            )
            if held:
                room[0][..., :held, :] = self.keys
                room[1][..., :held, :] = self.values
            self._room = room
        room[0][..., held:needed, :] = key_states
        room[1][..., held:needed, :] = value_states
        self.keys, self.values = room[0][..., :needed, :], room[1][..., :needed, :]
        return self.keys, self.values

    def reset(self) -> None:
        # dropped, not zeroed: transformers 5.17's DynamicLayer.reset zeroes the tensors and so
        # keeps reporting their length (5.25 drops them too)
        self._room = None
        self.keys = self.values = None
        self.is_initialized = False
        super().reset()

    def window(self, rows: slice, start: int, stop: int) -> ReservedLayer:
        """A layer over ``rows`` of this one's room that begins at column ``start`` and holds the
        columns up to ``stop``: its updates write into this layer's room from column ``stop`` on,
        which this layer already holds (:meth:`hold`). One group of a batch's rows computes its
        tokens through it, and attends to only the columns from ``start``."""
        assert self._room is not None and stop <= self.get_seq_length(), "hold the columns first"
        view = ReservedLayer(self.capacity)
        room = (self._room[0][rows, :, start:], self._room[1][rows, :, start:])
        view.lazy_initialization(*room)
        view._room = room
        view.keys, view.values = room[0][..., : stop - start, :], room[1][..., : stop - start, :]
        return view

    def hold(self, length: int, like: torch.Tensor) -> None:
        """Hold ``length`` columns: those past the ones held so far are zeros until written (the
        room is allocated uninitialised, and a masked column must still hold finite numbers: its
        attention weight is 0, and 0 x NaN is NaN). ``like`` ([rows, heads, any, head_dim]) gives
        an uninitialised layer its shape, dtype and device."""
        held = self.get_seq_length()
        if length > held:
            rows, heads, _, head_dim = like.shape
            zeros = like.new_zeros((rows, heads, length - held, head_dim))
            self.update(zeros, zeros)


def _starts_at(view: torch.Tensor, room: torch.Tensor) -> bool:
    """Whether ``view`` begins where ``room`` does, in the same memory (an empty view too, whose
    ``data_ptr`` is 0)."""
    return (
        view.untyped_storage().data_ptr() == room.untyped_storage().data_ptr()
        and view.storage_offset() == room.storage_offset()
    )


def plain_growing_layers(config: Any) -> int:
    """How many layers ``config``'s model caches, where every one keeps all keys and values (a
    plain ``DynamicLayer``); 0 where some layer is another kind (sliding windows, recurrent
    states), which cannot be restarted from a stored prefix nor given reserved room."""
    layers = DynamicCache(config=config).layers
    return 0 if any(type(layer) is not DynamicLayer for layer in layers) else len(layers)


def key_value_shape(config: Any) -> tuple[int, int]:
    """The key-value heads and the head dimension of ``config``'s attention layers."""
    config = config.get_text_config()
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads, head_dim


def reserved_cache(config: Any, capacity: int) -> DynamicCache | None:
    """A ``DynamicCache`` for ``config``'s model whose layers reserve room for ``capacity`` tokens,
    or None where its layers are not all plain growing ones (:func:`plain_growing_layers`), which
    are left to transformers."""
    layers = plain_growing_layers(config)
    if not layers:
        return None
    cache = DynamicCache(config=config)
    cache.layers = [ReservedLayer(capacity) for _ in range(layers)]
    return cache
