"""Training rows: packing whole-episode transcripts, and the loss mask of packed rows."""

from __future__ import annotations

import pytest

from leap.agents import PromptSettings
from leap.data import Sample, make_sample, sft_rows
from leap.envs import make_env
from leap.policies import build_policy
from leap.rollout import Episode, run_episodes
from leap.train import sft_features

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
    trained = [i for i, m in zip(features["input_ids"], features["assistant_masks"], strict=True) if m]
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
