"""Prompt tokens remembered across steps are exactly the tokens of tokenising each prompt whole."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from leap.models import prompt_tokens
from leap.models.prompt_tokens import PromptTokenizer, message_opening
from leap.models.transformers_backend import load_tokenizer

PIECES = ["look", " around", "\n", "  ", "é", "mug 1", "ACTION: go to", "\n\n", "<|im_end|>", "ü ", "."]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_path):
    return load_tokenizer(tiny_model_path)


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 12)))


def _episodes(rng: random.Random, rows: int, steps: int, rewrite_last: bool):
    """Each row's prompt at each step: a transcript grown by a reply and an observation; with
    ``rewrite_last`` the previous observation changes once it is no longer the newest (as a
    candidate list shown for the current turn only)."""
    chats = [
        [{"role": "system", "content": _text(rng)}, {"role": "user", "content": _text(rng)}]
        for _ in range(rows)
    ]
    for _ in range(steps):
        yield [list(chat) for chat in chats]
        for chat in chats:
            if rewrite_last:
                chat[-1] = {"role": "user", "content": chat[-1]["content"] + " (earlier)"}
            chat += [{"role": "assistant", "content": _text(rng)}, {"role": "user", "content": _text(rng)}]


@pytest.mark.parametrize("rewrite_last", [False, True])
def test_remembered_prompt_tokens_equal_whole_tokenisation(tokenizer, rewrite_last) -> None:
    rng = random.Random(1)
    memo = PromptTokenizer(tokenizer)
    assert memo.cut == "<|im_start|>"
    for conversations in _episodes(rng, rows=6, steps=8, rewrite_last=rewrite_last):
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        assert memo(texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    # later steps took most of their tokens from the memo
    assert memo.reused_tokens > memo.new_tokens > 0
    assert memo([]) == []


def test_any_texts_tokenise_as_whole_through_the_memo(tokenizer) -> None:
    """Texts that do not come from the chat template: cut tokens anywhere (inside a message, at
    the start, twice in a row), spaces and line ends next to them, empty texts, repeated texts."""
    rng = random.Random(2)
    memo = PromptTokenizer(tokenizer)
    pieces = [*PIECES, "<|im_start|>", "<|im_start|>user\n", " <|im_start|>", "<|im_start|><|im_start|>"]
    history = [""]
    for _ in range(40):
        texts = []
        for _ in range(5):
            base = rng.choice(history)
            texts.append(base + "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8))))
        history += texts
        assert memo(texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert memo.reused_tokens > 0


def test_the_memo_stays_within_its_bytes(tokenizer) -> None:
    rng = random.Random(3)
    memo = PromptTokenizer(tokenizer, max_bytes=4_000)
    for conversations in _episodes(rng, rows=4, steps=10, rewrite_last=False):
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        assert memo(texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
        assert memo._bytes <= 4_000
    assert len(memo._memo) > 0


def test_switched_off_the_memo_tokenises_whole(tokenizer, monkeypatch) -> None:
    monkeypatch.setattr(prompt_tokens, "REMEMBER_PROMPTS", False)
    memo = PromptTokenizer(tokenizer)
    texts = ["<|im_start|>user\nhi<|im_end|>\n"] * 2
    assert memo(texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]
    assert memo(texts) and memo.reused_tokens == 0 and not memo._memo


def test_a_tokenizer_that_cannot_be_cut_is_tokenised_whole(tiny_model_path, tmp_path) -> None:
    """A message opening that takes the spaces on its left (``lstrip``) changes the tokens of the
    text before it: such a tokenizer is never cut, and the check is what keeps the tokens right."""
    copy = tmp_path / "tokenizer"
    shutil.copytree(tiny_model_path, copy)
    spec = json.loads((copy / "tokenizer.json").read_text())
    for token in spec["added_tokens"]:
        if token["content"] == "<|im_start|>":
            token["lstrip"] = True
    (copy / "tokenizer.json").write_text(json.dumps(spec))
    stripping = load_tokenizer(copy)
    assert message_opening(stripping) == "<|im_start|>"
    memo = PromptTokenizer(stripping)
    assert memo.cut is None
    texts = [
        "<|im_start|>user\nhi  <|im_start|>assistant\n",
        "<|im_start|>user\nhi  <|im_start|>assistant\nok",
    ]
    whole = stripping(texts, add_special_tokens=False)["input_ids"]
    assert memo(texts) == memo(texts) == whole
    # cut anyway, the second text would take the first one's tokens before its opening: wrong
    memo.cut = "<|im_start|>"
    memo(texts[:1])
    assert memo(texts[1:]) != whole[1:]


def test_a_tokenizer_without_chat_template_is_tokenised_whole(tokenizer) -> None:
    plain = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    assert message_opening(plain) is None
    memo = PromptTokenizer(plain)
    assert (
        memo.cut is None
        and memo(["a <|im_start|>b"]) == plain(["a <|im_start|>b"], add_special_tokens=False)["input_ids"]
    )
