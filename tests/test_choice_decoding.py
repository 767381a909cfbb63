"""Constrained decoding: after the marker, a reply can only be one of its choices."""

from __future__ import annotations

import torch

from leap.agents import LLMPolicy
from leap.envs.base import ActionSpace, FreeFormRule
from leap.models.base import ChoiceConstraint
from leap.models.choice_decoding import ChoiceLogitsProcessor, build_trie
from leap.policy import AgentView

CHOICES = ("go to cabinet 1", "go to cabinet 10", "open cabinet 1", "take mug 2 from cabinet 1")
CONVERSATIONS = [
    [{"role": "user", "content": "Task: put a mug in cabinet 1."}],
    [{"role": "user", "content": "Where next? " * 5}],
    [{"role": "user", "content": "Short."}],
]


def test_whole_reply_is_a_choice_greedy_and_sampled(tiny_model) -> None:
    constraint = ChoiceConstraint("", CHOICES)  # empty marker: constrained from the first token
    for temperature in (0.0, 1.0):
        gens = tiny_model.generate(
            CONVERSATIONS,
            temperature=temperature,
            max_new_tokens=16,
            seed=3,
            constraints=[constraint] * len(CONVERSATIONS),
        )
        assert all(g.text.strip() in CHOICES for g in gens), [g.text for g in gens]


def test_unconstrained_rows_of_a_batch_decode_as_alone(tiny_model) -> None:
    alone = tiny_model.generate(CONVERSATIONS[1:2], max_new_tokens=12)[0].text
    mixed = tiny_model.generate(
        CONVERSATIONS[:2], max_new_tokens=12, constraints=[ChoiceConstraint("", CHOICES), None]
    )
    assert mixed[0].text.strip() in CHOICES
    assert mixed[1].text == alone


def _allowed(processor: ChoiceLogitsProcessor, text: str, vocab: int) -> set[int]:
    tokens = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = [7, 8, 9]
    scores = torch.zeros(1, vocab)
    out = processor(torch.tensor([prompt + tokens]), scores.clone())
    return set(torch.nonzero(out[0] > float("-inf")).flatten().tolist())


def test_processor_follows_the_marker_then_the_trie(tiny_model) -> None:
    tokenizer = tiny_model.tokenizer
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    make = lambda: ChoiceLogitsProcessor(  # noqa: E731 - a fresh processor per reply
        tokenizer, 3, [ChoiceConstraint("ACTION:", CHOICES)], eos
    )
    assert len(_allowed(make(), "REASON: I look", vocab)) == vocab  # before the marker: free
    first = {ids[0] for ids in (tokenizer(" " + c, add_special_tokens=False)["input_ids"] for c in CHOICES)}
    assert _allowed(make(), "REASON: I look.\nACTION:", vocab) == first
    one = tokenizer(" go to cabinet 1", add_special_tokens=False)["input_ids"]
    after_one = _allowed(make(), "REASON: I look.\nACTION: go to cabinet 1", vocab)
    assert eos in after_one and len(after_one) == 2  # end here, or go on to "10"
    assert build_trie(tokenizer, CHOICES)[one[0]]  # the shared prefix is one branch
    done = _allowed(make(), "REASON: I look.\nACTION: open cabinet 1", vocab)
    assert done == {eos}
    # text that leaves the trie releases the row instead of making it unsatisfiable
    assert len(_allowed(make(), "REASON: I look.\nACTION: dance", vocab)) == vocab


def test_a_batch_masks_each_row_as_alone(tiny_model) -> None:
    """Rows in every state at one decoding step (free, after the marker, inside and at the end of a
    choice, released, finished, without a constraint) are masked as each alone would be."""
    tokenizer = tiny_model.tokenizer
    eos = tokenizer.eos_token_id
    tails = [
        " I look",
        " I look.\nACTION:",
        " I look.\nACTION: go to cabinet 1",
        " I look.\nACTION: open cabinet 1",
        " I look.\nACTION: dance",
        " I look.\nACTION:",
        " I look.\nACTION: open cabinet 1",
    ]
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    width = max(len(encode("REASON:" + t)) for t in tails) + 1
    rows = []
    for tail in tails:  # filler words bring every row to the same generated length
        n = width - len(encode("REASON:" + tail))
        rows.append(encode("REASON:" + " x" * n + tail))
    rows[-1] = [*rows[-1][1:], eos]  # finished at the step before
    assert len({len(r) for r in rows}) == 1
    constraint = ChoiceConstraint("ACTION:", CHOICES)
    constraints = [constraint] * 5 + [None, constraint]
    ids = torch.tensor([[7, 8, 9, *r] for r in rows])
    scores = torch.randn(len(rows), len(tokenizer))
    batched = ChoiceLogitsProcessor(tokenizer, 3, constraints, eos)(ids, scores.clone())
    for row, rule in enumerate(constraints):
        alone = ChoiceLogitsProcessor(tokenizer, 3, [rule], eos)(
            ids[row : row + 1], scores[row : row + 1].clone()
        )
        assert torch.equal(batched[row], alone[0]), row
    kept = [int(torch.isfinite(batched[row]).sum()) for row in range(len(rows))]
    assert kept == [len(tokenizer), 3, 2, 1, len(tokenizer), len(tokenizer), len(tokenizer)]
    assert torch.equal(batched[kept.index(1)].isfinite().nonzero().flatten(), torch.tensor([eos]))


def test_the_marker_search_by_newest_token_finds_what_a_whole_search_finds(tiny_model) -> None:
    """A row's reply is searched for the marker only when its newest token holds the marker's
    last character; fed one token at a time, the mask is the same as searching the whole reply at
    every step, for texts around the marker and for random tokens (partial characters, special
    tokens) with the marker's tokens among them."""
    import random

    tokenizer = tiny_model.tokenizer
    vocab, eos = len(tokenizer), tokenizer.eos_token_id
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    replies = [
        encode(text)
        for text in (
            "REASON: I look.\nACTION: go to cabinet 1",
            "REASON: café ACTION:open cabinet 1",
            "ACTION:: take mug 2 from cabinet 1",
            "REASON: 日本 ACTION : go ACTION: go to cabinet 10",
            "xACTION:go to cabinet 1",
        )
    ]
    rng = random.Random(0)
    for _ in range(30):
        noise = [rng.randrange(vocab) for _ in range(rng.randrange(1, 12))]
        at = rng.randrange(len(noise) + 1)
        replies.append(noise[:at] + encode(rng.choice(["ACTION:", " ACTION:", "\nACTION:"])) + noise[at:])
    constraint = ChoiceConstraint("ACTION:", CHOICES)
    scores = torch.randn(1, vocab)
    found = 0
    for reply in replies:
        by_newest = ChoiceLogitsProcessor(tokenizer, 3, [constraint], eos)
        whole = ChoiceLogitsProcessor(tokenizer, 3, [constraint], eos)
        whole._may_end_marker = lambda row, tokens, marker: True  # always the whole reply
        for k in range(len(reply) + 1):
            ids = torch.tensor([[7, 8, 9, *reply[:k]]])
            assert torch.equal(by_newest(ids, scores.clone()), whole(ids, scores.clone())), (reply, k)
        assert by_newest.start == whole.start and by_newest.released == whole.released
        assert by_newest._pieces  # the newest tokens were looked at alone
        found += by_newest.start[0] is not None
    assert found > len(replies) // 2


def test_policy_passes_candidates_only_for_closed_action_spaces(tiny_model) -> None:
    closed = AgentView("e", "t", "obs", ActionSpace(choices=CHOICES))
    open_ = AgentView("e", "t", "obs", ActionSpace(choices=("submit",), free_form=FreeFormRule(".+", "any")))
    assert LLMPolicy._constraint(closed) == ChoiceConstraint("ACTION:", CHOICES)
    assert LLMPolicy._constraint(open_) is None
    policy = LLMPolicy(tiny_model, constrain_actions=True, max_new_tokens=8)
    assert len(policy.act([closed, closed])) == 2


def test_choices_are_tokenised_once_per_tokenizer(tiny_model, monkeypatch) -> None:
    """A rollout's candidate actions repeat from step to step: a choice is tokenised the first
    time a batch holds it (all new choices of the batch in one call), then remembered."""
    from leap.models import choice_decoding

    tokenizer = tiny_model.tokenizer
    calls: list[list[str]] = []
    tokenize = type(tokenizer).__call__

    def counting(self, text, *args, **kwargs):
        calls.append(list(text) if isinstance(text, list) else [text])
        return tokenize(self, text, *args, **kwargs)

    monkeypatch.setattr(type(tokenizer), "__call__", counting)
    old = ("go to shelf 71 (memo)", "open drawer 72 (memo)")
    new = ("take mug 73 (memo)",)
    eos = tokenizer.eos_token_id
    first = ChoiceLogitsProcessor(tokenizer, 3, [ChoiceConstraint("ACTION:", old)] * 3, eos)
    second = ChoiceLogitsProcessor(tokenizer, 3, [ChoiceConstraint("ACTION:", old + new), None], eos)
    assert calls == [[" " + c for c in old], [" " + c for c in new]]
    fresh = [tokenize(tokenizer, " " + c, add_special_tokens=False)["input_ids"] for c in old + new]
    assert second.tries[0] == choice_decoding.build_trie(tokenizer, old + new)
    assert choice_decoding.choice_tokens(tokenizer, old + new) == fresh
    assert first.tries[0] == first.tries[2] and second.tries[1] is None
    monkeypatch.setattr(choice_decoding, "CHOICE_MEMO", 2)  # a full memo starts again
    choice_decoding.choice_tokens(tokenizer, ("close fridge 74 (memo)",))
    assert list(choice_decoding._CHOICE_TOKENS[tokenizer]) == ["close fridge 74 (memo)"]
