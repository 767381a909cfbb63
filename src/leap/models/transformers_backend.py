"""Local models with transformers: CPU or GPU, left-padded batches, optional LoRA adapter."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
    StaticCache,
    StoppingCriteriaList,
    StopStringCriteria,
)
from transformers.generation.utils import GenerateDecoderOnlyOutput

from leap.models.attention_kernels import attention_kernels, attention_label
from leap.models.base import ChatModel, ChoiceConstraint, Conversation, Generation, cut_at_stop
from leap.models.choice_decoding import ChoiceLogitsProcessor
from leap.models.graph_decoding import decode, sampling_warpers
from leap.models.grouped_prefill import plan_groups, prefill_in_groups
from leap.models.prefix_cache import CachedSequence, PrefixCache, left_padded_states, row_states
from leap.models.prompt_tokens import PromptTokenizer
from leap.models.reserved_cache import ReservedLayer, key_value_shape, plain_growing_layers, reserved_cache

#: the name generate() takes a cache by and returns it under: "cache" since transformers 5.24
#: ("past_key_values" before, deprecated there and removed in 6)
_OUTPUT_FIELDS = getattr(GenerateDecoderOnlyOutput, "__dataclass_fields__", {})
CACHE_ARGUMENT = "cache" if "cache" in _OUTPUT_FIELDS else "past_key_values"

log = logging.getLogger(__name__)

#: how generation keeps keys and values: "prefix" a growing cache per call, and each request
#: starts from the longest prefix it shares with a recent sequence (the fastest on CPU); "dynamic"
#: the growing cache without that reuse; "static" a preallocated cache of fixed shape, with which
#: transformers compiles the decoding step (CUDA graphs) on a GPU; "graphs" a preallocated cache
#: per call and leap's decoding loop, whose steps replay one CUDA graph on a GPU (no compiling;
#: ``leap.models.graph_decoding``)
CacheMode = Literal["prefix", "dynamic", "static", "graphs"]
CACHE_MODES: tuple[CacheMode, ...] = ("prefix", "dynamic", "static", "graphs")

#: static caches grow in steps of this many tokens: an episode of horizon 20 grows its transcript
#: to about 2,500 tokens, so a rollout compiles the decoding step for three shapes, not ten
STATIC_CACHE_STEP = 1024

#: growing caches reserve room for the whole generation (``leap.models.reserved_cache``) instead
#: of concatenating every new token's keys and values; off only to measure what that saves
RESERVE_CACHE_ROOM = True

#: on CPU, the new prompt tokens of a batch's rows are computed in groups of similar length
#: (``leap.models.grouped_prefill``), not padded to the longest row; off only to measure what
#: that saves
GROUP_PREFILL = True

#: the language-model head gets a contiguous input (:func:`_contiguous_input`); off only to
#: measure what that saves
CONTIGUOUS_HEAD = True

#: a batch's rows are assembled in arrays (:func:`left_padded_batch`), not as nested lists given
#: to ``torch.tensor`` (about 40 ms per agent step of 100 household rows on 2 CPU cores, 140 ms
#: once the rows hold 2,000 tokens; benchmarks/prompt_encoding.py); off only to measure that
ARRAY_BATCHES = True

#: stop strings become stopping criteria once per model (:meth:`TransformersChatModel._stop_criteria`),
#: not at every generate call; off only to measure what that saves
REUSE_STOP_CRITERIA = True


def _contiguous_input(module: torch.nn.Module, args: tuple) -> tuple | None:
    """Give the language-model head a contiguous input. ``generate`` computes the first logits
    from the last prompt position only (``logits_to_keep``), a strided slice of the hidden
    states; torch's linear layer on such a 3D slice multiplies batch by batch with the weight
    copied once per row: on 2 CPU cores 1.7 s for 32 rows of SmolLM2-135M's 49k-token head,
    against 9 ms contiguous, the same numbers. Off only to measure that (``CONTIGUOUS_HEAD``)."""
    if CONTIGUOUS_HEAD and args and isinstance(args[0], torch.Tensor) and not args[0].is_contiguous():
        return (args[0].contiguous(), *args[1:])
    return None


def left_padded_batch(
    prompts: Sequence[Sequence[int]], reused: Sequence[int], pad: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask (on the CPU) of rows laid out as [pad][the first ``reused[i]``
    tokens][pad][the rest], the reused parts and the rest each aligned on the right."""
    width_reused = max(reused)
    width_new = max(len(ids) - n for ids, n in zip(prompts, reused, strict=True))
    width = width_reused + width_new
    if not ARRAY_BATCHES:
        rows, masks = [], []
        for ids, n in zip(prompts, reused, strict=True):
            new = list(ids[n:])
            gap_reused, gap_new = width_reused - n, width_new - len(new)
            rows.append([pad] * gap_reused + list(ids[:n]) + [pad] * gap_new + new)
            masks.append([0] * gap_reused + [1] * n + [0] * gap_new + [1] * len(new))
        return torch.tensor(rows), torch.tensor(masks)
    input_ids = np.full((len(prompts), width), pad, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, (ids, n) in enumerate(zip(prompts, reused, strict=True)):
        input_ids[row, width_reused - n : width_reused] = ids[:n]
        mask[row, width_reused - n : width_reused] = 1
        start = width - (len(ids) - n)
        input_ids[row, start:] = ids[n:]
        mask[row, start:] = 1
    return torch.from_numpy(input_ids), torch.from_numpy(mask)


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX512-BF16: bf16 measured 1.4-3x faster than fp32 for generation on such CPUs."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """'auto' is bf16 on GPUs and on CPUs with bf16 instructions, fp32 elsewhere."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") or cpu_has_fast_bf16() else torch.float32
    try:
        return {
            "float32": torch.float32,
            "fp32": torch.float32,
            "bfloat16": torch.bfloat16,
            "bf16": torch.bfloat16,
            "float16": torch.float16,
            "fp16": torch.float16,
        }[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16") from None


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


class TransformersChatModel(ChatModel):
    """A causal LM from a local directory (or hub id), optionally with a PEFT LoRA adapter.

    Args:
        path: model directory or hub id.
        adapter: a PEFT adapter directory to apply on top.
        device: "auto", "cpu", "cuda", "cuda:1", ...
        dtype: "auto", "float32", "bfloat16" or "float16".
        batch_size: most conversations in one forward pass; longer lists are split.
        prefix_cache_mb: memory for the keys and values of recent sequences, reused when a later
            prompt starts with them (an agent's next step repeats its whole history); 0 turns
            prefix caching off.
        cache: how generation keeps keys and values (:data:`CacheMode`); only "prefix" uses
            ``prefix_cache_mb``.
        cudnn_attention: let attention use cuDNN's kernels on GPUs where PyTorch tries them first
            (``leap.models.attention_kernels``); off by default.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        adapter: str | Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 32,
        prefix_cache_mb: int = 1024,
        cache: CacheMode = "prefix",
        cudnn_attention: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if cache not in CACHE_MODES:
            raise ValueError(f"unknown cache {cache!r}; use {', '.join(CACHE_MODES)}")
        self.cache = cache
        self.cudnn_attention = cudnn_attention
        #: the static cache's length so far: it only grows, so shapes repeat across calls
        self._static_length = 0
        #: "graphs": batches decoded so far, and how many of them replayed a CUDA graph
        self.graph_batches = [0, 0]
        self.path = str(path)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.batch_size = batch_size
        self.tokenizer = load_tokenizer(path)
        self.prompt_tokens = PromptTokenizer(self.tokenizer)
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype)
        self.adapter = None
        if adapter is not None:
            from peft import PeftModel

            # merged into the base weights: generation then runs plain linear layers, not
            # base + LoRA side paths (the adapter is never trained from here)
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            self.adapter = str(adapter)
        self.model = model.to(self.device).eval()
        head = self.model.get_output_embeddings()
        if head is not None:
            head.register_forward_pre_hook(_contiguous_input)
        self.name = name or (self.adapter or self.path)
        self.prefix_cache = self._make_prefix_cache(prefix_cache_mb if cache == "prefix" else 0)
        self._stopping: dict[tuple[str, ...], StoppingCriteriaList] = {}

    def _make_prefix_cache(self, megabytes: int) -> PrefixCache | None:
        """A prefix cache sized in tokens, for models whose every layer keeps all keys and values
        (sliding-window or recurrent layers cannot be restarted from a stored prefix)."""
        if megabytes <= 0:
            return None
        layers = plain_growing_layers(self.model.config)
        if not layers:
            log.info("%s: prefix caching off (the model's cache has non-standard layers)", self.path)
            return None
        kv_heads, head_dim = key_value_shape(self.model.config)
        bytes_per_token = 2 * layers * kv_heads * head_dim * torch.finfo(self.dtype).bits // 8
        return PrefixCache(max_tokens=megabytes * 2**20 // bytes_per_token)

    def _stop_criteria(self, stop: Sequence[str]) -> StoppingCriteriaList:
        """The stopping criteria for these stop strings, built once per model: transformers builds
        them anew from ``stop_strings`` at every generate call, reading and sorting the whole
        vocabulary (0.3 s for SmolLM2's 49k tokens, every agent step)."""
        key = tuple(stop)
        if key not in self._stopping or not REUSE_STOP_CRITERIA:
            criteria = [StopStringCriteria(self.tokenizer, list(key))] if key else []
            self._stopping[key] = StoppingCriteriaList(criteria)
        return self._stopping[key]

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.").replace("bfloat16", "bf16").replace("float32", "fp32")
        implementation = getattr(self.model.config, "_attn_implementation", None) or "eager"
        attention = attention_label(implementation, self.device, self.cudnn_attention)
        return f"{self.device} · {dtype} · {attention} · {self.cache} cache"

    # -- helpers ---------------------------------------------------------------------------------
    def render(self, conversation: Conversation, *, add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def encode(self, conversations: Sequence[Conversation]) -> list[list[int]]:
        """The conversations' prompt tokens: only what follows the longest part a prompt shares
        with an earlier one is tokenised (``leap.models.prompt_tokens``), all rows in one
        tokenizer call, which works on them in parallel, on every core."""
        return self.prompt_tokens([self.render(c) for c in conversations])

    def _batches(self, items: Sequence[int], lengths: Sequence[int]) -> list[list[int]]:
        """Index batches with prompts of similar length together (less padding)."""
        order = sorted(items, key=lambda i: lengths[i])
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    # -- protocol --------------------------------------------------------------------------------
    @torch.inference_mode()
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
        encoded = self.encode(conversations)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=None,
            top_k=None,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            # the prefix cache needs the keys and values back
            return_dict_in_generate=self.prefix_cache is not None,
        )
        if seed is not None:
            torch.manual_seed(seed)
        cache = self.prefix_cache
        reuse = [cache.lookup(ids) if cache else (None, 0) for ids in encoded]
        fresh = [len(ids) - n for ids, (_, n) in zip(encoded, reuse, strict=True)]
        results: list[Generation | None] = [None] * len(encoded)
        for batch in self._batches(range(len(encoded)), fresh):
            rules = [constraints[i] for i in batch] if constraints else []
            with attention_kernels(self.device, self.cudnn_attention):
                new_tokens = self._generate_batch(
                    [encoded[i] for i in batch],
                    [reuse[i] for i in batch],
                    config,
                    rules if any(rules) else None,
                    self._stop_criteria(stop),
                )
            for row, i in enumerate(batch):
                tokens = new_tokens[row]
                n_new = int((tokens != self.tokenizer.pad_token_id).sum())
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                gen = Generation(cut_at_stop(text, stop), len(encoded[i]), n_new)
                self.usage.add(gen)
                results[i] = gen
        return [r for r in results if r is not None]

    def _generate_batch(
        self,
        prompts: list[list[int]],
        reuse: list[tuple[CachedSequence | None, int]],
        config: GenerationConfig,
        constraints: list[ChoiceConstraint | None] | None,
        stopping: StoppingCriteriaList | None = None,
    ) -> torch.Tensor:
        """Generate for one batch; returns the new tokens [rows, steps] (pad after a row ends).

        Row layout: [pad][reused prefix][pad][new prompt tokens]. The reused part comes from the
        prefix cache as keys and values; only the new part is computed. Positions follow the
        attention mask, so the padding in the middle changes nothing for the model. On CPU the new
        parts are computed in groups of rows of similar length (``leap.models.grouped_prefill``; the
        batch comes sorted by new length), not padded to the longest.
        """
        pad = self.tokenizer.pad_token_id
        width_reused = max(n for _, n in reuse)
        fresh = [len(ids) - n for ids, (_, n) in zip(prompts, reuse, strict=True)]
        input_ids, attention_mask = left_padded_batch(prompts, [n for _, n in reuse], pad)
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        processors = LogitsProcessorList()
        if constraints:
            eos = self.tokenizer.eos_token_id
            processors.append(ChoiceLogitsProcessor(self.tokenizer, input_ids.shape[1], constraints, eos))
        if self.cache == "graphs":
            new_tokens, graphed = decode(
                self.model,
                input_ids,
                attention_mask,
                max_new_tokens=config.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=self.tokenizer.eos_token_id,
                sample=bool(config.do_sample),
                processors=LogitsProcessorList([*processors, *sampling_warpers(self.model, config)]),
                stopping=stopping,
            )
            self.graph_batches[0] += 1
            self.graph_batches[1] += graphed
            return new_tokens
        extra: dict = {}
        if self.cache == "static":
            needed = input_ids.shape[1] + config.max_new_tokens
            self._static_length = max(
                self._static_length, -(-needed // STATIC_CACHE_STEP) * STATIC_CACHE_STEP
            )
            extra[CACHE_ARGUMENT] = StaticCache(config=self.model.config, max_cache_len=self._static_length)
        elif RESERVE_CACHE_ROOM:
            # a growing cache with room for the whole generation: no copy of it per new token
            room = reserved_cache(self.model.config, input_ids.shape[1] + config.max_new_tokens)
            if room is not None:
                extra[CACHE_ARGUMENT] = room
        if self.prefix_cache is not None:
            if width_reused:
                like = next(entry.states for entry, n in reuse if entry is not None and n)
                past = extra.get(CACHE_ARGUMENT)
                if past is None:
                    past = DynamicCache(config=self.model.config)
                for layer, (keys, values) in enumerate(left_padded_states(reuse, like)):
                    past.update(keys, values, layer)
                extra[CACHE_ARGUMENT] = past
            self.prefix_cache.reused_tokens += sum(n for _, n in reuse)
            self.prefix_cache.computed_tokens += sum(len(ids) for ids in prompts) - sum(n for _, n in reuse)
        past = extra.get(CACHE_ARGUMENT)
        reserved = past is not None and all(isinstance(layer, ReservedLayer) for layer in past.layers)
        if GROUP_PREFILL and reserved and self.device == "cpu":
            # only reserved room can be written group by group; one group is generate's own pass
            groups = plan_groups(fresh, attention_mask.argmax(1).tolist(), input_ids.shape[1])
            if len(groups) > 1:
                prefill_in_groups(
                    self.model.base_model, past, input_ids, attention_mask, fresh, groups, CACHE_ARGUMENT
                )
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=config,
            tokenizer=self.tokenizer,
            logits_processor=processors,
            stopping_criteria=stopping,
            **extra,
        )
        if self.prefix_cache is None:
            return output[:, input_ids.shape[1] :]
        new_tokens = output.sequences[:, input_ids.shape[1] :]
        self._remember(output.sequences, attention_mask, new_tokens, getattr(output, CACHE_ARGUMENT))
        return new_tokens

    def _remember(
        self, sequences: torch.Tensor, prompt_mask: torch.Tensor, new_tokens: torch.Tensor, past: DynamicCache
    ) -> None:
        """Store each row's tokens (prompt and reply, up to where the model stopped) with their keys
        and values in the prefix cache."""
        assert self.prefix_cache is not None
        ends = [self.tokenizer.pad_token_id, self.tokenizer.eos_token_id]
        states = [(layer.keys, layer.values) for layer in past.layers]
        cached = states[0][0].shape[2]  # the last generated token was never fed back
        # the batch's tokens and mask on the host in three copies, not a few per row (each a
        # synchronisation on a GPU)
        tokens, prompt, generated = (t.cpu().numpy() for t in (sequences, prompt_mask, new_tokens))
        steps = generated.shape[1]
        for row in range(sequences.shape[0]):
            stops = np.flatnonzero(np.isin(generated[row], ends))
            length = int(stops[0]) + 1 if len(stops) else steps
            real = np.concatenate([prompt[row] != 0, np.arange(steps) < length])
            slots = np.flatnonzero(real[:cached])
            index = torch.from_numpy(slots).to(self.device)
            self.prefix_cache.add(tokens[row, slots].tolist(), row_states(states, row, index))

    @torch.inference_mode()
    def score(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        if len(conversations) != len(completions):
            raise ValueError("score: one completion per conversation")
        pairs = []
        for conv, completion in zip(conversations, completions, strict=True):
            prompt_ids = self.tokenizer(self.render(conv), add_special_tokens=False)["input_ids"]
            full = self.render(
                [*conv, {"role": "assistant", "content": completion}], add_generation_prompt=False
            )
            full_ids = self.tokenizer(full, add_special_tokens=False)["input_ids"]
            if full_ids[: len(prompt_ids)] != prompt_ids:
                # the chat template does not extend the prompt: score the raw completion instead
                full_ids = prompt_ids + self.tokenizer(completion, add_special_tokens=False)["input_ids"]
            pairs.append((full_ids, len(prompt_ids)))
        scores = [0.0] * len(pairs)
        for batch in self._batches(range(len(pairs)), [len(p[0]) for p in pairs]):
            width = max(len(pairs[i][0]) for i in batch)
            pad = self.tokenizer.pad_token_id
            ids = torch.tensor([pairs[i][0] + [pad] * (width - len(pairs[i][0])) for i in batch])
            mask = torch.tensor([[1] * len(pairs[i][0]) + [0] * (width - len(pairs[i][0])) for i in batch])
            with attention_kernels(self.device, self.cudnn_attention):
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for row, i in enumerate(batch):
                full_ids, start = pairs[i]
                targets = torch.tensor(full_ids[start:], device=logprobs.device)
                predicted = logprobs[row, start - 1 : len(full_ids) - 1]
                scores[i] = float(predicted.gather(1, targets[:, None]).sum())
        return scores
