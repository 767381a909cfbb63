"""Training rows: packing whole-episode transcripts, and the loss mask of packed rows."""

from __future__ import annotations

import pytest

from leap.agents import PromptSettings
from leap.builders import build_policy
from leap.data import Sample, make_sample, sft_rows
from leap.envs import make_env
from leap.packing import IGNORE, sft_features
from leap.rollout import Episode, run_episodes

TURNS = PromptSettings(style="student", layout="turns", history_steps=30, list_actions=False)


@pytest.fixture(scope="module")
def demos() -> list[Episode]:
    return run_episodes(
        lambda: make_env("household"),
        ["train/0001", "train/0002"],
        build_policy("planner", "household"),
        show_progress=False,
    )


def _samples(episode: Episode, settings: PromptSettings, targets: dict | None = None) -> list[Sample]:
    """One sample per step; the target is the step's own action unless ``targets`` says otherwise."""
    targets = targets or {}
    return [
        make_sample(
            episode,
            t,
            iteration=0,
            teacher="expert",
            reason=s.reason,
            action=targets.get(t, s.action),
            settings=settings,
        )
        for t, s in enumerate(episode.steps)
    ]


def test_a_demonstration_transcript_packs_into_one_row(demos, tiny_model_path) -> None:
    samples = [s for e in demos for s in _samples(e, TURNS)]
    rows = sft_rows(samples)
    assert len(rows) == 2  # one per episode
    first = rows[0]
    n = demos[0].n_actions
    assert first["prompt"] == samples[0].prompt
    assert [m["role"] for m in first["completion"]] == ["assistant", "user"] * (n - 1) + ["assistant"]
    assert [m["content"] for m in first["completion"][::2]] == [s.completion for s in samples[:n]]
    # the packed row is the last step's prompt with its target: the same tokens, once
    last = samples[n - 1]
    assert first["prompt"] + first["completion"][:-1] == last.prompt

    from leap.models.transformers_backend import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_path)
    features = sft_features(tokenizer, first["prompt"], first["completion"])
    trained = [label for label in features["labels"] if label != IGNORE]
    text = tokenizer.decode(trained)
    for sample in samples[:n]:
        assert sample.completion + "<|im_end|>" in text
    for message in first["completion"][1::2]:  # observations are context, never targets
        assert message["content"] not in text


def test_a_correction_that_differs_from_the_history_starts_a_new_row(demos) -> None:
    episode = demos[0]
    alternative = next(c for c in episode.steps[2].candidates["choices"] if c != episode.steps[2].action)
    samples = _samples(episode, TURNS, targets={2: alternative})
    rows = sft_rows(samples)
    # steps 0-2 chain (step 2's target is last in its row); step 3's history has the original
    # step-2 action, not the target, so it cannot follow it
    assert len(rows) == 2
    assert rows[0]["completion"][-1]["content"].endswith(f"ACTION: {alternative}")
    assert rows[1]["prompt"] == samples[3].prompt


def test_single_message_prompts_are_never_packed(demos) -> None:
    single = PromptSettings(style="student", history_steps=30, list_actions=False)
    samples = _samples(demos[0], single)
    rows = sft_rows(samples)
    assert len(rows) == len(samples)
    assert all(len(r["completion"]) == 1 for r in rows)


def _summed_loss(model, input_ids, labels, **inputs) -> tuple[float, int]:
    import torch

    with torch.no_grad():
        logits = model(input_ids=input_ids, **inputs).logits.float()
    targets = labels[:, 1:]
    predicted = logits[:, :-1].reshape(-1, logits.shape[-1])
    losses = torch.nn.functional.cross_entropy(
        predicted, targets.reshape(-1), ignore_index=IGNORE, reduction="sum"
    )
    return float(losses), int((targets != IGNORE).sum())


@pytest.mark.parametrize("attention", ["sdpa", "eager", "flex"])
def test_prefix_packing_computes_the_same_loss_as_separate_rows(demos, tiny_model_path, attention) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from leap.models.transformers_backend import load_tokenizer
    from leap.packing import PrefixTreeCollator, pack_shared_prefixes

    episode = demos[0]
    # a correction at every step: no chain, one row per step, each prompt a prefix of the next
    targets = {
        t: next(c for c in s.candidates["choices"] if c != s.action) for t, s in enumerate(episode.steps)
    }
    samples = _samples(episode, TURNS, targets) + _samples(demos[1], TURNS)
    tokenizer = load_tokenizer(tiny_model_path)
    rows = [sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(samples)]
    assert len(rows) == episode.n_actions + 1
    packed = pack_shared_prefixes(rows, max_length=4096)
    assert len(packed) == 2  # the corrections in one sequence, the demonstration in another
    assert sum(len(r["input_ids"]) for r in packed) < sum(len(r["input_ids"]) for r in rows) / 2

    # flex attention (the GPU path: the rows one after another in a single sequence, a block mask)
    # has no CPU backward and inductor's CPU kernels for it are fragile: here its mask function is
    # evaluated at every position and applied with sdpa; the GPU benchmark compares the kernels
    flex = attention == "flex"
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path, dtype=torch.float32, attn_implementation="sdpa" if flex else attention
    )
    model.eval()
    expected, expected_tokens = 0.0, 0
    for row in rows:
        loss, n = _summed_loss(model, torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]]))
        expected, expected_tokens = expected + loss, expected_tokens + n
    kinds = {"sdpa": "bool", "eager": "float", "flex": "block"}
    collate = PrefixTreeCollator(
        tokenizer.pad_token_id, mask=kinds[attention], concatenate=flex, multiple_of=64
    )
    batch = collate(packed)
    assert batch["input_ids"].shape[0] == (1 if flex else len(packed))
    assert batch["input_ids"].shape[1] % 64 == 0
    assert sum(collate.counts) == sum(len(r["input_ids"]) for r in packed)
    if flex:
        from torch.nn.attention.flex_attention import create_mask

        width = batch["input_ids"].shape[1]
        batch["attention_mask"] = create_mask(batch["attention_mask"].mask_mod, 1, 1, width, width, "cpu")
    got, got_tokens = _summed_loss(
        model,
        batch["input_ids"],
        batch["labels"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
    )
    assert got_tokens == expected_tokens
    assert got == pytest.approx(expected, rel=1e-4)
    if flex:
        return
    # without the tree mask the same tokens give another loss: the mask is what makes it exact
    plain, _ = _summed_loss(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
    assert plain != pytest.approx(expected, rel=1e-3)


def test_rows_side_by_side_in_lanes_compute_the_same_loss_as_separate_rows(demos, tiny_model_path) -> None:
    """Several packed rows in lanes as wide as the longest (a micro-batch of many rows): the
    rows never see each other, each attends as alone, so the loss is that of every unpacked row
    on its own; fewer positions are computed than with each row padded to the longest."""
    import torch
    from transformers import AutoModelForCausalLM

    from leap.models.transformers_backend import load_tokenizer
    from leap.packing import PrefixTreeCollator, fill_lanes, pack_shared_prefixes

    tokenizer = load_tokenizer(tiny_model_path)
    first, second = demos
    corrections = {
        t: next(c for c in s.candidates["choices"] if c != s.action) for t, s in enumerate(first.steps)
    }
    groups = [
        _samples(first, TURNS, corrections) + _samples(first, TURNS),  # a trunk with branches
        _samples(second, TURNS),
        _samples(second, TURNS)[:2],
        _samples(first, TURNS)[:1],
    ]
    rows = [[sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(g)] for g in groups]
    packed = [p for group in rows for p in pack_shared_prefixes(group, max_length=4096)]
    assert len(packed) == 4 and max(packed[0]["branch"]) > 0
    lengths = [len(r["input_ids"]) for r in packed]

    collate = PrefixTreeCollator(tokenizer.pad_token_id, lanes=True)
    batch = collate(packed)
    lanes = fill_lanes(lengths, max(lengths))
    assert batch["input_ids"].shape == (len(lanes), max(lengths)) and len(lanes) < len(packed)
    assert collate.counts == [sum(lengths)]
    assert collate.slots == [len(lanes) * max(lengths)] and collate.slots[0] < len(packed) * max(lengths)

    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.eval()
    expected, expected_tokens = 0.0, 0
    for row in (r for group in rows for r in group):
        loss, n = _summed_loss(model, torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]]))
        expected, expected_tokens = expected + loss, expected_tokens + n
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    got, got_tokens = _summed_loss(model, batch.pop("input_ids"), batch.pop("labels"), **batch)
    assert got_tokens == expected_tokens
    assert got == pytest.approx(expected, rel=1e-4)
    # each row's logits are those of the row collated alone, wherever its lane puts it
    alone = PrefixTreeCollator(tokenizer.pad_token_id)
    for k, lane in enumerate(lanes):
        offset = 0
        for i in lane:
            single = alone([packed[i]])
            with torch.no_grad():
                own = model(**{key: v for key, v in single.items() if key != "labels"}).logits[0]
            torch.testing.assert_close(logits[k, offset : offset + lengths[i]], own, atol=1e-5, rtol=1e-4)
            offset += lengths[i]


def test_lanes_are_filled_longest_first() -> None:
    from leap.packing import fill_lanes

    assert fill_lanes([5, 10, 3, 4, 8], 10) == [[1], [4], [0, 3], [2]]
    assert fill_lanes([10, 2, 8], 10) == [[0], [2, 1]]
    assert fill_lanes([12, 4], 10) == [[0], [1]]  # a row wider than the lanes has its own
    assert fill_lanes([], 10) == []


def test_plain_causal_rows_train_without_a_dense_mask(demos, tiny_model_path) -> None:
    """A micro-batch of one demonstration transcript (no branches, no padding) gets no mask, so
    sdpa runs its causal kernel; the loss is the one the dense tree mask gives. A row with
    branches, or padding, keeps its mask."""
    import torch
    from transformers import AutoModelForCausalLM

    from leap.models.transformers_backend import load_tokenizer
    from leap.packing import PrefixTreeCollator, pack_shared_prefixes

    tokenizer = load_tokenizer(tiny_model_path)
    episode = demos[0]
    targets = {0: next(c for c in episode.steps[0].candidates["choices"] if c != episode.steps[0].action)}
    samples = _samples(episode, TURNS, targets)[:1] + _samples(episode, TURNS) + _samples(demos[1], TURNS)
    rows = [sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(samples)]
    packed = pack_shared_prefixes(rows, max_length=4096)
    trunks = [r for r in packed if max(r["branch"]) == 0]
    branched = [r for r in packed if max(r["branch"]) > 0]
    assert len(trunks) == len(branched) == 1  # the second demonstration; the first with its correction
    trunk = trunks[0]

    short, dense = PrefixTreeCollator(tokenizer.pad_token_id), PrefixTreeCollator(tokenizer.pad_token_id)
    dense.causal_shortcut = False
    assert "attention_mask" not in short([trunk])
    assert "attention_mask" in short(branched[:1])
    first = [
        sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(_samples(episode, TURNS))
    ]
    other = pack_shared_prefixes(first, max_length=4096)
    assert len(other) == 1 and len(other[0]["input_ids"]) != len(trunk["input_ids"])
    assert "attention_mask" in short([trunk, other[0]])  # two plain rows, padded: the mask stays
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_path, dtype=torch.float32, attn_implementation="sdpa"
    )
    model.eval()
    losses = [
        _summed_loss(model, b.pop("input_ids"), b.pop("labels"), **b)
        for b in (short([trunk]), dense([trunk]))
    ]
    assert losses[0][1] == losses[1][1] > 0
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-5)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_the_tree_mask_is_built_on_the_device_that_uses_it(demos, tiny_model_path, kind) -> None:
    """The dense mask is computed where the model runs (only the rows' small index tensors go
    there), the same mask as built on the host; the meta device stands in for a GPU: any operation
    that needs host tensors or values fails there. Training hands its device to the collator."""
    from types import SimpleNamespace

    import torch

    from leap.models.transformers_backend import load_tokenizer
    from leap.packing import PrefixTreeCollator, pack_shared_prefixes
    from leap.train import _tree_collator

    tokenizer = load_tokenizer(tiny_model_path)
    episode = demos[0]
    targets = {0: next(c for c in episode.steps[0].candidates["choices"] if c != episode.steps[0].action)}
    samples = _samples(episode, TURNS, targets) + _samples(demos[1], TURNS)
    rows = [sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(samples)]
    packed = pack_shared_prefixes(rows, max_length=4096)
    on_host = PrefixTreeCollator(tokenizer.pad_token_id, mask=kind, lanes=True, label_positions=True)
    on_host.mask_on_device = False
    expected = on_host(packed)
    here = PrefixTreeCollator(tokenizer.pad_token_id, mask=kind, lanes=True)(packed)
    assert torch.equal(here["attention_mask"], expected["attention_mask"])
    # the mask, and (copy_ahead) the batch's other tensors with it: nothing left for the trainer
    # to copy from host memory, which on a GPU waits for the device
    collate = PrefixTreeCollator(
        tokenizer.pad_token_id, mask=kind, lanes=True, device="meta", label_positions=True
    )
    meta = collate(packed)
    names = {"input_ids", "labels", "position_ids", "label_positions", "attention_mask"}
    assert set(meta) == set(expected) == names
    for name, tensor in meta.items():
        assert tensor.device.type == "meta"
        assert tensor.shape == expected[name].shape and tensor.dtype == expected[name].dtype
    # plain causal rows get no mask, and still arrive on the device
    plain = pack_shared_prefixes(
        [sft_features(tokenizer, r["prompt"], r["completion"]) for r in sft_rows(_samples(demos[1], TURNS))],
        max_length=4096,
    )
    plain_batch = collate(plain[:1])
    assert "attention_mask" not in plain_batch and plain_batch["input_ids"].device.type == "meta"
    # without copying ahead only the mask is built there (the trainer copies the rest)
    collate.copy_ahead = False
    behind = collate(packed)
    assert behind["attention_mask"].device.type == "meta"
    assert all(torch.equal(behind[k], expected[k]) for k in ("input_ids", "labels", "position_ids"))
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="sdpa"))
    assert _tree_collator(model, tokenizer, "sdpa", "cuda", False, True).device == "cuda"
