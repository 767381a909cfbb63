"""Batched decoding whose every step replays one CUDA graph of the model's forward pass.

A lockstep rollout decodes 100 rows of a 135M model one token at a time: each step is some 900
small kernels, and on a GPU the time goes to launching them (the H200 of 2026-11-28 took about
90 ms per decoding step through ``generate``; docs/speed.md). :func:`decode` keeps every tensor a
step reads or writes at a fixed address (a preallocated cache as long as prompt and reply, a 4D
mask over all of it, the token, its position), records one step's forward pass as a CUDA graph
after the prompt's prefill, and replays it at every later step: one launch per step. Choosing the
next token (the logits processors, constrained actions among them; greedy or sampling; stop
strings and the end-of-sequence token) stays outside the graph, as ``generate`` does it.

Transformers keeps its forward pass free of host synchronisations while a CUDA stream is being
captured (``transformers.utils.import_utils.is_tracing``); a 4D mask is taken as it is, and the
static cache writes each step's keys and values in place. On a CPU, or where capture fails, the
same loop runs every step eagerly (``tests/test_models.py`` checks the replies against
``generate``'s, and that the step makes no host synchronisation under capture).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessorList,
    StaticCache,
    StoppingCriteriaList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

log = logging.getLogger(__name__)

#: the device types whose decoding step is recorded as a CUDA graph; elsewhere every step runs
#: eagerly
CAPTURE_DEVICES: tuple[str, ...] = ("cuda",)
#: record the step where the device allows; off only to measure what the graph saves
RECORD = True


class _Step:
    """One decoding step's forward pass over fixed buffers, eager or replayed from a graph."""

    def __init__(self, model: Any, cache: Any, rows: int, length: int, device: torch.device) -> None:
        self.model, self.cache = model, cache
        self.tokens = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        #: which cache slots each row attends to: its real prompt tokens and what it generated
        self.mask = torch.zeros((rows, 1, 1, length), dtype=torch.bool, device=device)
        parameters = inspect.signature(model.forward).parameters
        #: transformers 5.0 locates a step in the cache by ``cache_position`` (5.17 and 5.24 by
        #: the cache's own count of what it holds)
        self.positional = "cache_position" in parameters
        #: the cache's argument: ``past_key_values``, ``cache`` since 5.24
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        #: the recorded step, once captured
        self.replay: Callable[[], torch.Tensor] | None = None

    def forward(self) -> torch.Tensor:
        return self.call(self.tokens, self.mask, self.positions, self.slot)

    def call(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        slots: torch.Tensor,
        **kw: Any,
    ) -> torch.Tensor:
        """The model over ``tokens`` at ``positions``, written to the cache at ``slots``."""
        extra = {"cache_position": slots} if self.positional else {}
        arguments = {self.cache_argument: self.cache, **extra, **kw}
        return self.model(
            input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **arguments
        ).logits

    def capture(self, rewind: Callable[[], None]) -> bool:
        """Record the step as a CUDA graph, after a warm-up pass (on a side stream on a GPU) that
        ``rewind`` undoes in the cache; False where that fails."""
        cuda = self.tokens.device.type == "cuda"
        try:
            if cuda:
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    self.forward()
                torch.cuda.current_stream().wait_stream(side)
            else:
                self.forward()
            rewind()
            self.replay = cuda_graph(self.forward)
            # recording runs nothing on a GPU; a recorder that does run the step (the tests'
            # stand-in on CPU) leaves the cache one token on, so rewind once more
            rewind()
        except Exception as exc:  # any failure falls back to eager steps
            log.warning("decoding without a CUDA graph: capture failed (%s)", exc)
            if cuda:
                torch.cuda.synchronize()
            rewind()
            return False
        return True

    def __call__(self) -> torch.Tensor:
        return self.forward() if self.replay is None else self.replay()


def sampling_warpers(model: Any, config: GenerationConfig) -> LogitsProcessorList:
    """The warpers ``generate`` puts after every other logits processor when it samples with
    this config: the temperature, then the top-k filter (``top_k`` unset means the model's
    default or transformers' 50); none for greedy decoding."""
    if not config.do_sample:
        return LogitsProcessorList()
    top_k = next(
        (k for k in (config.top_k, getattr(model.generation_config, "top_k", None)) if k is not None), None
    )
    if top_k is None:  # transformers' own default: a class method since 5.2x, a field before
        defaults = getattr(GenerationConfig, "_get_default_generation_params", None)
        top_k = defaults().get("top_k") if defaults else GenerationConfig().top_k
    warpers = LogitsProcessorList()
    if config.temperature is not None and config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    return warpers


def cuda_graph(function: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Record ``function`` (a forward pass over fixed buffers) as a CUDA graph; returns its
    replay, which gives the recorded output tensor (the same memory at every replay)."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = function()

    def replay() -> torch.Tensor:
        graph.replay()
        return output

    return replay


def _rewinder(cache: Any, length: int) -> Callable[[], None]:
    """Set a static cache back to ``length`` written tokens: its layers' counts of what they hold
    (transformers 5.17, 5.24); 5.0's layers keep none, they are told their slot by
    ``cache_position``."""

    def rewind() -> None:
        for layer in cache.layers:
            counter = getattr(layer, "cumulative_length", None)
            if isinstance(counter, torch.Tensor):
                counter.fill_(length)

    return rewind


@torch.inference_mode()
def decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    pad_token_id: int,
    eos_token_id: int | None,
    sample: bool = False,
    processors: LogitsProcessorList | None = None,
    stopping: StoppingCriteriaList | None = None,
    capture: bool | None = None,
) -> tuple[torch.Tensor, bool]:
    """Generate up to ``max_new_tokens`` for a left-padded batch; returns the new tokens
    ``[rows, steps]`` (``pad_token_id`` after a row stops, as ``generate`` returns them) and
    whether the steps replayed a CUDA graph.

    Args:
        model: a transformers causal LM.
        input_ids, attention_mask: the prompts, ``[rows, width]``, padded on the left.
        sample: draw the next token from the processed scores' softmax; else the most likely.
        processors: applied to every step's scores, in order (for sampling, ``generate``'s
            temperature and top-k warpers come after the others: :func:`sampling_warpers`).
        stopping: criteria on the tokens so far (stop strings); a row also stops at
            ``eos_token_id``.
        capture: record the step as a CUDA graph; None: on the devices of :data:`CAPTURE_DEVICES`.
    """
    implementation = getattr(model.config, "_attn_implementation", None)
    if implementation != "sdpa":
        raise ValueError(
            f"graph decoding takes boolean masks: it needs sdpa attention, not {implementation!r}"
        )
    rows, width = input_ids.shape
    device = input_ids.device
    length = width + max_new_tokens
    cache = StaticCache(config=model.config, max_cache_len=length)
    real = attention_mask.bool()
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    step = _Step(model, cache, rows, length, device)
    step.mask[:, 0, 0, :width] = real
    # the prompt: causal over its real tokens; a padding position sees itself only (a row of
    # nothing but masked keys would make NaN keys and values in the cache)
    index = torch.arange(width, device=device)
    prefill_mask = (index[None, :] <= index[:, None])[None, None] & real[:, None, None, :]
    prefill_mask |= torch.eye(width, dtype=torch.bool, device=device)[None, None]
    prefill_mask = torch.nn.functional.pad(prefill_mask, (0, length - width))
    logits = step.call(input_ids, prefill_mask, positions, index, logits_to_keep=1)[:, -1]
    next_position = positions[:, -1:] + 1
    if capture is None:
        capture = RECORD and device.type in CAPTURE_DEVICES
    sequences = input_ids
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    graphed = False
    for t in range(max_new_tokens):
        scores = logits.to(dtype=torch.float32, copy=True)
        if processors:
            scores = processors(sequences, scores)
        if sample:
            chosen = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        else:
            chosen = scores.argmax(dim=-1)
        chosen = torch.where(unfinished, chosen, pad_token_id)
        sequences = torch.cat([sequences, chosen[:, None]], dim=-1)
        if eos_token_id is not None:
            unfinished &= chosen != eos_token_id
        if stopping:
            unfinished &= ~stopping(sequences, scores)
        if t == max_new_tokens - 1 or not bool(unfinished.any()):
            break
        # feed the chosen tokens back: one more cache slot for every row
        step.tokens.copy_(chosen[:, None])
        step.positions.copy_(next_position + t)
        step.slot.fill_(width + t)
        step.mask[:, 0, 0, width + t] = True
        if t == 0 and capture:
            graphed = step.capture(_rewinder(cache, width))
        logits = step()[:, -1]
    return sequences[:, width:], graphed
