"""The transformers backend: batching, greedy equivalence, scoring, stop strings, LoRA adapters."""

from __future__ import annotations

import json

import pytest
import torch

from leap.models import ModelError, load_chat_model
from leap.models.base import cut_at_stop
from leap.models.transformers_backend import TransformersChatModel

CONVERSATIONS = [
    [{"role": "user", "content": "Task: put a mug in cabinet 1."}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is next? Look around."}],
    [{"role": "user", "content": "A much longer prompt " * 12}],
    [{"role": "user", "content": "Short."}],
]


def test_batched_generation_equals_one_at_a_time(tiny_model) -> None:
    batched = tiny_model.generate(CONVERSATIONS, max_new_tokens=12)
    single = [tiny_model.generate([c], max_new_tokens=12)[0] for c in CONVERSATIONS]
    assert [g.text for g in batched] == [g.text for g in single]
    assert len({g.text for g in batched}) > 1, "the test model should not emit one constant text"
    assert all(g.completion_tokens > 0 and g.prompt_tokens > 0 for g in batched)


def test_sampling_is_seeded(tiny_model) -> None:
    a = tiny_model.generate(CONVERSATIONS[:2], temperature=1.0, max_new_tokens=10, seed=7)
    b = tiny_model.generate(CONVERSATIONS[:2], temperature=1.0, max_new_tokens=10, seed=7)
    c = tiny_model.generate(CONVERSATIONS[:2], temperature=1.0, max_new_tokens=10, seed=8)
    assert [g.text for g in a] == [g.text for g in b]
    assert [g.text for g in a] != [g.text for g in c]


def test_attention_leaves_cudnn_out_on_a_gpu_unless_asked() -> None:
    """The kernel switches are process-wide flags, set and restored without a GPU."""
    from leap.models.attention_kernels import attention_kernels, attention_label

    cuda = torch.backends.cuda

    def switches() -> tuple[bool, ...]:
        return (
            cuda.cudnn_sdp_enabled(),
            cuda.flash_sdp_enabled(),
            cuda.mem_efficient_sdp_enabled(),
            cuda.math_sdp_enabled(),
        )

    before = switches()
    assert before[0], "PyTorch allows cuDNN attention by default"
    with attention_kernels("cuda:1", cudnn=False):
        assert switches() == (False, True, True, True)
    assert switches() == before
    for device, cudnn in (("cuda", True), ("cpu", False)):
        with attention_kernels(device, cudnn):
            assert switches() == before
    assert attention_label("sdpa", "cuda", False) == "sdpa without cuDNN"
    assert attention_label("sdpa", "cuda", True) == attention_label("sdpa", "cpu", False) == "sdpa"
    assert attention_label("flex_attention", "cuda", False) == "flex_attention"


def test_generation_and_scoring_attend_under_the_models_kernel_choice(tiny_model_path, attention_spy) -> None:
    from leap.agents import StudentSettings
    from leap.builders import load_student_model

    student = StudentSettings(model=tiny_model_path, device="cpu", dtype="float32", cudnn_attention=True)
    model = load_student_model(student)
    assert isinstance(model, TransformersChatModel) and model.cudnn_attention
    model.generate(CONVERSATIONS[:2], max_new_tokens=3)
    model.score(CONVERSATIONS[:1], ["Look around."])
    assert attention_spy.blocks == [("cpu", True)] * 2
    assert attention_spy.calls_inside > 0 and attention_spy.calls_outside == 0
    assert TransformersChatModel(tiny_model_path, device="cpu").cudnn_attention is False


def test_prompts_are_encoded_together_as_alone(tiny_model) -> None:
    alone = [
        tiny_model.tokenizer(tiny_model.render(c), add_special_tokens=False)["input_ids"]
        for c in CONVERSATIONS
    ]
    assert tiny_model.encode(CONVERSATIONS) == alone and tiny_model.encode([]) == []


def test_usage_is_counted(tiny_model_path) -> None:
    model = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu")
    gens = model.generate(CONVERSATIONS[:2], max_new_tokens=5)
    assert model.usage.requests == 2
    assert model.usage.prompt_tokens == sum(g.prompt_tokens for g in gens)
    assert model.usage.completion_tokens == sum(g.completion_tokens for g in gens) <= 10


def test_stop_strings_cut_the_text(tiny_model) -> None:
    full = tiny_model.generate(CONVERSATIONS[:1], max_new_tokens=12)[0]
    word = full.text.split()[1]
    stopped = tiny_model.generate(CONVERSATIONS[:1], max_new_tokens=12, stop=[word])[0]
    assert stopped.text == full.text[: full.text.index(word)]
    # generation itself stopped there, not only the text
    assert stopped.completion_tokens < full.completion_tokens == 12
    # the criteria are built once per stop strings (transformers would rebuild them every call)
    criteria = tiny_model._stop_criteria([word])
    assert tiny_model._stop_criteria((word,)) is criteria and len(criteria) == 1
    assert len(tiny_model._stop_criteria(())) == 0
    again = tiny_model.generate(CONVERSATIONS[:1], max_new_tokens=12, stop=[word])[0]
    assert again == stopped and tiny_model._stop_criteria([word]) is criteria
    assert cut_at_stop("a\n\nb", ["\n\n"]) == "a" and cut_at_stop("abc", []) == "abc"


def test_score_matches_token_log_probabilities(tiny_model) -> None:
    completions = ["REASON: x\nACTION: look", "ACTION: go to cabinet 1", "ok", "no"]
    batched = tiny_model.score(CONVERSATIONS, completions)
    single = [tiny_model.score([c], [t])[0] for c, t in zip(CONVERSATIONS, completions, strict=True)]
    assert batched == pytest.approx(single, abs=1e-3)
    # recompute the first by hand from the model's logits
    tok, model = tiny_model.tokenizer, tiny_model.model
    prompt = tok(tiny_model.render(CONVERSATIONS[0]), add_special_tokens=False)["input_ids"]
    full = tok(
        tiny_model.render(
            [*CONVERSATIONS[0], {"role": "assistant", "content": completions[0]}], add_generation_prompt=False
        ),
        add_special_tokens=False,
    )["input_ids"]
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
    expected = sum(float(logprobs[i - 1, full[i]]) for i in range(len(prompt), len(full)))
    assert batched[0] == pytest.approx(expected, abs=1e-3)
    assert all(s < 0 for s in batched)


def test_lora_adapter_loads_from_directory(tiny_model_path, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    peft_model = get_peft_model(
        base,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj"],
            task_type="CAUSAL_LM",
            init_lora_weights=False,
        ),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model_path

    adapted = load_chat_model(str(tmp_path / "adapter"), dtype="float32", device="cpu")
    plain = load_chat_model("tiny-random", dtype="float32", device="cpu")
    assert adapted.adapter == str(tmp_path / "adapter")
    completion = ["ACTION: look"]
    assert adapted.score(CONVERSATIONS[:1], completion) != pytest.approx(
        plain.score(CONVERSATIONS[:1], completion)
    )
    # the adapter is merged for inference, and computes what base + LoRA computes
    assert type(adapted.model) is type(base)
    ids = torch.tensor([[1, 5, 9, 42, 7]])
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=ids).logits
        assert torch.allclose(adapted.model(input_ids=ids).logits, expected, atol=1e-4)


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="unknown model 'no-such-model'"):
        load_chat_model("no-such-model")
    with pytest.raises(ValueError, match="unknown dtype"):
        load_chat_model("tiny-random", dtype="float8")


def _extend(conversations, replies, step: int):
    """Each conversation with its reply as the assistant's turn and a new observation."""
    return [
        [*c, {"role": "assistant", "content": g.text}, {"role": "user", "content": f"obs {step} " * (i + 1)}]
        for i, (c, g) in enumerate(zip(conversations, replies, strict=True))
    ]


@pytest.mark.parametrize("constrained", [False, True])
def test_prefix_cache_reuses_history_and_changes_no_reply(tiny_model_path, constrained: bool) -> None:
    from leap.models.base import ChoiceConstraint

    plain = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", prefix_cache_mb=0)
    cached = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", prefix_cache_mb=64)
    assert plain.prefix_cache is None and cached.prefix_cache is not None
    rules = [ChoiceConstraint("ACTION:", ("look", "go to cabinet 1"))] * 4 if constrained else None
    conversations = [list(c) for c in CONVERSATIONS]
    for step in range(3):
        expected = plain.generate(conversations, max_new_tokens=10, constraints=rules)
        got = cached.generate(conversations, max_new_tokens=10, constraints=rules)
        assert [g.text for g in got] == [g.text for g in expected]
        assert [g.prompt_tokens for g in got] == [g.prompt_tokens for g in expected]
        conversations = _extend(conversations, expected, step)
    cache = cached.prefix_cache
    # from the second call on, all but the new turn of every prompt came from the cache
    assert cache.reused_tokens > cache.computed_tokens > 0
    assert cached.usage.prompt_tokens == cache.reused_tokens + cache.computed_tokens


def test_a_static_cache_changes_no_reply_and_only_grows(tiny_model_path) -> None:
    """The GPU path's preallocated cache (compiled there) decodes as the growing cache does, in
    steps of STATIC_CACHE_STEP tokens that never shrink (fewer shapes to compile)."""
    from leap.models.base import ChoiceConstraint
    from leap.models.transformers_backend import STATIC_CACHE_STEP

    plain = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="dynamic")
    static = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="static")
    assert plain.prefix_cache is None and static.prefix_cache is None
    assert static.describe().endswith("static cache")
    rules = [ChoiceConstraint("ACTION:", ("look", "go to cabinet 1"))] * 4
    conversations, lengths = [list(c) for c in CONVERSATIONS], []
    for step in range(3):
        expected = plain.generate(conversations, max_new_tokens=10, constraints=rules)
        got = static.generate(conversations, max_new_tokens=10, constraints=rules)
        assert [g.text for g in got] == [g.text for g in expected]
        lengths.append(static._static_length)
        conversations = _extend(conversations, expected, step)
    # a short prompt after long ones keeps the long cache
    static.generate([CONVERSATIONS[0]], max_new_tokens=4)
    lengths.append(static._static_length)
    assert lengths == sorted(lengths) and all(n % STATIC_CACHE_STEP == 0 for n in lengths)
    with pytest.raises(ValueError, match="unknown cache 'paged'"):
        TransformersChatModel(tiny_model_path, device="cpu", cache="paged")


def test_graph_decoding_changes_no_reply_and_replays_a_recorded_step(
    tiny_model_path, monkeypatch, cpu_graph
) -> None:
    """The graphs cache's own decoding loop gives generate's greedy replies (fp32, constrained
    actions, stop strings), eagerly and through a recorded step, replayed as a CUDA graph
    replays: the recorded operators on the same tensors, no Python run again (``cpu_graph``);
    recording takes transformers' capture branches without a host synchronisation."""
    from leap.models import graph_decoding
    from leap.models.base import ChoiceConstraint

    recorded = []

    def record_on_cpu(function):
        replay = cpu_graph(function)
        recorded.append(replay)
        return replay

    plain = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="dynamic")
    eager = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="graphs")
    graphed = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="graphs")
    assert eager.prefix_cache is None and eager.describe().endswith("graphs cache")
    rules = [ChoiceConstraint("ACTION:", ("look", "go to cabinet 1"))] * 4
    conversations = [list(c) for c in CONVERSATIONS]
    for step in range(3):
        expected = plain.generate(conversations, max_new_tokens=10, constraints=rules, stop=["\n\n"])
        got = eager.generate(conversations, max_new_tokens=10, constraints=rules, stop=["\n\n"])
        with monkeypatch.context() as patch:
            patch.setattr(graph_decoding, "cuda_graph", record_on_cpu)
            patch.setattr(graph_decoding, "CAPTURE_DEVICES", ("cuda", "cpu"))
            replayed = graphed.generate(conversations, max_new_tokens=10, constraints=rules, stop=["\n\n"])
        assert [g.text for g in got] == [g.text for g in expected]
        assert [g.text for g in replayed] == [g.text for g in expected]
        conversations = _extend(conversations, expected, step)
    assert eager.graph_batches == [3, 0]
    assert graphed.graph_batches == [3, 3] and len(recorded) == 3


@pytest.mark.parametrize("constrained", [False, True])
def test_graph_decoding_samples_as_generate_does(tiny_model_path, constrained: bool) -> None:
    """The same draws as generate's with the same seed: its warpers (temperature, top-k) after
    the constraint (the other order leaves a row no allowed token within the top k)."""
    from leap.models.base import ChoiceConstraint

    plain = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="dynamic")
    graphs = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="graphs")
    rules = [ChoiceConstraint("", ("look", "go to cabinet 1", "take mug 1"))] * 4 if constrained else None
    runs = [
        [
            g.text
            for g in m.generate(CONVERSATIONS, max_new_tokens=12, temperature=0.8, seed=s, constraints=rules)
        ]
        for m in (plain, graphs)
        for s in (1, 2)
    ]
    assert runs[0] != runs[1]  # another seed, other samples
    assert runs[2:] == runs[:2]  # the same random draws as generate's


def _same_replies_with_and_without(path, monkeypatch, cache: str, flag: str, each_step) -> None:
    """Three steps of growing conversations, greedy and constrained, in fp32: a model generating
    with ``transformers_backend.<flag>`` on replies as one with it off; ``each_step`` checks
    what the flag did after every step."""
    from leap.models import transformers_backend
    from leap.models.base import ChoiceConstraint

    with_flag = TransformersChatModel(path, dtype="float32", device="cpu", cache=cache)
    without = TransformersChatModel(path, dtype="float32", device="cpu", cache=cache)
    rules = [ChoiceConstraint("ACTION:", ("look", "go to cabinet 1"))] * 4
    conversations = [list(c) for c in CONVERSATIONS]
    for step in range(3):
        monkeypatch.setattr(transformers_backend, flag, False)
        expected = without.generate(conversations, max_new_tokens=10, constraints=rules)
        monkeypatch.setattr(transformers_backend, flag, True)
        got = with_flag.generate(conversations, max_new_tokens=10, constraints=rules)
        each_step()
        assert [g.text for g in got] == [g.text for g in expected]
        conversations = _extend(conversations, expected, step)


@pytest.mark.parametrize("cache", ["prefix", "dynamic"])
def test_reserved_room_changes_no_reply(tiny_model_path, monkeypatch, cache: str) -> None:
    """The same replies with reserved room as with transformers' concatenation, and the room was
    used at every step."""
    from leap.models import transformers_backend
    from leap.models.reserved_cache import reserved_cache

    made, seen = [], []

    def counting(config, capacity):
        made.append(capacity)
        return reserved_cache(config, capacity)

    def used_room() -> None:
        assert len(made) > sum(seen)
        seen.append(len(made) - sum(seen))

    monkeypatch.setattr(transformers_backend, "reserved_cache", counting)
    _same_replies_with_and_without(tiny_model_path, monkeypatch, cache, "RESERVE_CACHE_ROOM", used_room)


@pytest.mark.parametrize("cache", ["prefix", "dynamic"])
def test_grouped_prefill_changes_no_reply(tiny_model_path, monkeypatch, cache: str) -> None:
    """The same replies with the new tokens computed in groups of rows (every new length apart)
    as padded to the longest in one pass."""
    from leap.models import grouped_prefill, transformers_backend

    plans = []

    def every_length_apart(*args, **kwargs):
        plans.append(grouped_prefill.plan_groups(*args, **kwargs, call_tokens=0.0))
        return plans[-1]

    def grouped() -> None:
        assert len(plans[-1]) > 1

    monkeypatch.setattr(transformers_backend, "plan_groups", every_length_apart)
    _same_replies_with_and_without(tiny_model_path, monkeypatch, cache, "GROUP_PREFILL", grouped)
    assert len(plans) == 3


def test_the_head_gets_a_contiguous_input(tiny_model_path, monkeypatch) -> None:
    """generate's first logits come from a strided slice of the hidden states (the last prompt
    position); the head gets it contiguous, which changes no number (and is far faster on CPU)."""
    from leap.models import transformers_backend

    monkeypatch.setattr(transformers_backend, "GROUP_PREFILL", False)  # generate's own prefill
    model = TransformersChatModel(tiny_model_path, dtype="float32", device="cpu", cache="dynamic")
    inputs = []
    model.model.get_output_embeddings().register_forward_hook(lambda m, args, out: inputs.append(args[0]))
    expected = model.generate(CONVERSATIONS, max_new_tokens=3)
    assert inputs and all(x.is_contiguous() for x in inputs)
    monkeypatch.setattr(transformers_backend, "CONTIGUOUS_HEAD", False)
    inputs.clear()
    got = model.generate(CONVERSATIONS, max_new_tokens=3)
    assert not inputs[0].is_contiguous()  # what the hook is for
    assert [g.text for g in got] == [g.text for g in expected]


def test_prefix_cache_evicts_past_its_budget() -> None:
    from leap.models.prefix_cache import PrefixCache

    def states(n: int):
        return [(torch.zeros(1, n, 2), torch.zeros(1, n, 2))]

    cache = PrefixCache(max_tokens=10)
    cache.add([1, 2, 3], states(3))
    cache.add([1, 2, 3, 4, 5], states(5))  # supersedes its own prefix
    assert len(cache) == 1 and cache.tokens_held == 5
    entry, n = cache.lookup([1, 2, 3, 4, 9, 9])
    assert entry is not None and n == 4
    assert cache.lookup([1, 2, 3, 4, 5])[1] == 4  # the last prompt token is always computed
    cache.add([7, 8, 9, 10], states(4))
    cache.add([6, 6, 6], states(3))  # over 10 tokens: the least recently used entry goes
    assert cache.tokens_held == 7 and cache.lookup([1, 2, 3])[0] is None


def test_batches_are_assembled_in_arrays_as_in_lists(monkeypatch) -> None:
    """Rows [pad][reused prefix][pad][new tokens], each part aligned on the right: the arrays'
    batch is the nested lists' one (rows that reuse nothing, rows with nothing new)."""
    import random

    import torch

    from leap.models import transformers_backend
    from leap.models.transformers_backend import left_padded_batch

    rng = random.Random(0)
    prompts = [[rng.randrange(1, 100) for _ in range(rng.randrange(1, 30))] for _ in range(12)]
    reused = [rng.choice([0, len(p), rng.randrange(len(p) + 1)]) for p in prompts]
    ids, mask = left_padded_batch(prompts, reused, pad=0)
    assert ids.dtype == mask.dtype == torch.int64 and ids.shape == mask.shape
    reuse_part = max(reused)
    for row, (p, n) in enumerate(zip(prompts, reused, strict=True)):
        assert ids[row][mask[row].bool()].tolist() == p
        assert ids[row, reuse_part - n : reuse_part].tolist() == p[:n]
        assert ids[row, ids.shape[1] - (len(p) - n) :].tolist() == p[n:]
    monkeypatch.setattr(transformers_backend, "ARRAY_BATCHES", False)
    listed = left_padded_batch(prompts, reused, pad=0)
    assert torch.equal(ids, listed[0]) and torch.equal(mask, listed[1])
