"""Known-answer tests for the built-in rewards and for ``resolve_reward``.

Every batch is built by hand from lists of token ids. The padding of each batch is filled with
``fill``, which the ``fill`` fixture also sets to real token ids: a reward that read past an
answer's length would then score a different value.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dialog_gym.rewards import (
    REWARDS,
    AnswerBatch,
    digits_reward,
    exact_reward,
    f1_reward,
    keyword_reward,
    match_reward,
    resolve_reward,
)
from dialog_gym.tokenizers import WordTokenizer

A, B, C, D, X = 7, 8, 9, 10, 11  # ordinary token ids (0..6 are the tokenizer's specials)


def answers(
    responses: Sequence[Sequence[int]],
    references: Sequence[Sequence[int]],
    keywords: Sequence[Sequence[Sequence[int]]] | None = None,
    ended: Sequence[bool] | None = None,
    fill: int = 0,
    extra: int = 2,
) -> AnswerBatch:
    """An ``AnswerBatch`` of these rows, each array ``extra`` columns wider than needed, padded with ``fill``."""
    n = len(responses)
    keywords = [[] for _ in range(n)] if keywords is None else keywords
    ended = [True] * n if ended is None else ended

    def padded(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        width = max((len(r) for r in rows), default=0) + extra
        out = np.full((len(rows), width), fill, np.int64)
        for i, row in enumerate(rows):
            out[i, : len(row)] = row
        return out, np.array([len(r) for r in rows], np.int64)

    response, response_len = padded(responses)
    reference, reference_len = padded(references)
    k = max((len(slots) for slots in keywords), default=0) + 1  # always one unused slot
    w = max((len(kw) for slots in keywords for kw in slots), default=0) + extra
    keyword_ids = np.full((n, k, w), fill, np.int64)
    keyword_len = np.zeros((n, k), np.int64)
    for i, slots in enumerate(keywords):
        for j, kw in enumerate(slots):
            keyword_ids[i, j, : len(kw)] = kw
            keyword_len[i, j] = len(kw)
    return AnswerBatch(
        response=response,
        response_len=response_len,
        ended=np.array(ended, bool),
        reference=reference,
        reference_len=reference_len,
        keywords=keyword_ids,
        keyword_len=keyword_len,
    )


@pytest.fixture(params=[0, A, B, X], ids=lambda v: f"fill{v}")
def fill(request: pytest.FixtureRequest) -> int:
    return request.param


# -- keyword --------------------------------------------------------------------------------------

KEYWORD_CASES = [
    # (response, keywords of the row, expected)
    ([A, B, C], [[B]], 1.0),
    ([A, B, C], [[D]], -1.0),
    ([A, B, C], [[A]], 1.0),  # first token
    ([A, B, C], [[C]], 1.0),  # last token
    ([A, B, C], [[B, C]], 1.0),  # multi-token keyword at the end
    ([A, B, C], [[A, B]], 1.0),  # multi-token keyword at the start
    ([A, B, C], [[A, B, C]], 1.0),  # the whole response
    ([A, B, C], [[A, C]], -1.0),  # tokens present but not adjacent
    ([A, B, C], [[C, B]], -1.0),  # adjacent but in the wrong order
    ([A, B], [[B, C]], -1.0),  # would match if the response went on
    ([A, B], [[A, B, C]], -1.0),  # keyword longer than the response
    ([A], [[A, A]], -1.0),
    ([], [[A]], -1.0),  # empty response
    ([A, B, C], [[D], [B, C], [X]], 1.0),  # several slots, the second one hits
    ([A, B, C], [[D], [X, A], [C, D]], -1.0),  # several slots, none hits
    ([D, X, A, B], [[C], [A, B]], 1.0),
    ([A, B, C], [], -1.0),  # every slot unused: an empty keyword must not match
]


@pytest.mark.parametrize(("response", "keywords", "expected"), KEYWORD_CASES)
def test_keyword_reward_known_answers(response, keywords, expected, fill) -> None:
    batch = answers([response], [[A]], [keywords], fill=fill)
    np.testing.assert_array_equal(keyword_reward(batch), [expected])


def test_keyword_reward_scores_each_row_of_a_batch(fill) -> None:
    rows = [(r, k) for r, k, _ in KEYWORD_CASES]
    batch = answers([r for r, _ in rows], [[A]] * len(rows), [k for _, k in rows], fill=fill)
    out = keyword_reward(batch)
    assert out.shape == (len(rows),) and out.dtype == np.float64
    np.testing.assert_array_equal(out, [e for _, _, e in KEYWORD_CASES])


def test_keyword_reward_ignores_unused_slots_in_the_middle() -> None:
    batch = answers([[A, B]], [[A]], [[[X], [A, B]]])
    keyword_len = batch.keyword_len.copy()
    keyword_len[0, 0] = 0  # slot 0 still holds X's ids but is marked unused
    hit = AnswerBatch(**{**batch.__dict__, "keyword_len": keyword_len})
    np.testing.assert_array_equal(keyword_reward(hit), [1.0])
    keyword_len[0, 1] = 0
    miss = AnswerBatch(**{**batch.__dict__, "keyword_len": keyword_len})
    np.testing.assert_array_equal(keyword_reward(miss), [-1.0])


@pytest.mark.parametrize("shape", [(2, 0, 3), (2, 3, 0)], ids=["no_slots", "zero_width"])
def test_keyword_reward_without_keywords_is_minus_one(shape) -> None:
    batch = answers([[A, B], []], [[A], [B]])
    empty = AnswerBatch(
        **{**batch.__dict__, "keywords": np.zeros(shape, np.int64), "keyword_len": np.zeros(shape[:2], np.int64)}
    )
    np.testing.assert_array_equal(keyword_reward(empty), [-1.0, -1.0])


# -- exact ----------------------------------------------------------------------------------------

EXACT_CASES = [
    ([A, B], [A, B], 1.0),
    ([A, C], [A, B], 0.0),  # same length, one token differs
    ([B, A], [A, B], 0.0),  # same tokens, other order
    ([A], [A, B], 0.0),  # a prefix of the reference
    ([A, B, C], [A, B], 0.0),  # the reference and more
    ([], [], 1.0),
    ([], [A], 0.0),
    ([A], [], 0.0),
]


@pytest.mark.parametrize(("response", "reference", "expected"), EXACT_CASES)
def test_exact_reward_known_answers(response, reference, expected, fill) -> None:
    batch = answers([response], [reference], fill=fill)
    np.testing.assert_array_equal(exact_reward(batch), [expected])


@pytest.mark.parametrize("extra", [0, 1, 5])
def test_exact_reward_scores_each_row_whatever_the_widths(extra, fill) -> None:
    batch = answers([r for r, _, _ in EXACT_CASES], [r for _, r, _ in EXACT_CASES], fill=fill, extra=extra)
    np.testing.assert_array_equal(exact_reward(batch), [e for _, _, e in EXACT_CASES])


def test_exact_reward_with_a_response_array_wider_than_the_reference_array() -> None:
    wide = answers([[A, B]], [[A]], extra=6)
    narrow = answers([[A, B]], [[A, B]], extra=0)
    batch = AnswerBatch(**{**wide.__dict__, "reference": narrow.reference, "reference_len": narrow.reference_len})
    assert batch.response.shape[1] > batch.reference.shape[1]
    np.testing.assert_array_equal(exact_reward(batch), [1.0])


# -- f1 -------------------------------------------------------------------------------------------

F1_CASES = [
    ([A, B], [A, B], 1.0),
    ([B, A], [A, B], 1.0),  # order does not matter
    ([A, A, B], [A, B, B], 2 / 3),  # common 2 (one A, one B): P = R = 2/3
    ([A, B], [A, C, D], 0.4),  # common 1: P = 1/2, R = 1/3, F1 = 2/5
    ([A, A, A], [A], 0.5),  # common 1: P = 1/3, R = 1
    ([A], [A, A, A], 0.5),  # common 1: P = 1, R = 1/3
    ([A, A, B, C], [A, A, A, B], 0.75),  # common 3: P = R = 3/4
    ([A, B, C, D], [A], 0.4),  # common 1: P = 1/4, R = 1, F1 = 2/5
    ([A, B], [C, D], 0.0),  # disjoint
    ([A, A], [B], 0.0),
    ([], [], 1.0),  # both empty
    ([], [A], 0.0),
    ([A], [], 0.0),
]


@pytest.mark.parametrize(("response", "reference", "expected"), F1_CASES)
def test_f1_reward_known_answers(response, reference, expected, fill) -> None:
    batch = answers([response], [reference], fill=fill)
    np.testing.assert_allclose(f1_reward(batch), [expected], rtol=0, atol=1e-12)


def test_f1_reward_scores_each_row_of_a_batch(fill) -> None:
    batch = answers([r for r, _, _ in F1_CASES], [r for _, r, _ in F1_CASES], fill=fill)
    out = f1_reward(batch)
    assert out.shape == (len(F1_CASES),)
    np.testing.assert_allclose(out, [e for _, _, e in F1_CASES], rtol=0, atol=1e-12)


# -- match ----------------------------------------------------------------------------------------

MATCH_CASES = [
    # (response, ended, reference, expected): the target is reference + EOS
    ([A, B], True, [A, B], 1.0),
    ([A, B], False, [A, B], 2 / 3),  # right tokens, but the answer hit the limit: no EOS
    ([A], True, [A, B], 1 / 3),  # EOS comes one position early
    ([A], False, [A, B], 1 / 3),
    ([B, A], True, [A, B], 1 / 3),  # only the EOS is in place
    ([A, B, C], True, [A, B], 2 / 3),  # longer: a token where EOS belongs
    ([A, B, C], False, [A, B], 2 / 3),
    ([X, B, D, D], False, [A, B], 1 / 3),
    ([A, X, C], True, [A, B, C], 3 / 4),
    ([], True, [A, B], 0.0),  # EOS first, where A belongs
    ([], False, [A, B], 0.0),
    ([], True, [], 1.0),  # empty reference: only the EOS counts
    ([], False, [], 0.0),
    ([A], True, [], 0.0),
]


@pytest.mark.parametrize(("response", "ended", "reference", "expected"), MATCH_CASES)
def test_match_reward_known_answers(response, ended, reference, expected, fill) -> None:
    batch = answers([response], [reference], ended=[ended], fill=fill)
    np.testing.assert_allclose(match_reward(batch), [expected], rtol=0, atol=1e-12)


@pytest.mark.parametrize("extra", [0, 1, 6])
def test_match_reward_scores_each_row_whatever_the_widths(extra, fill) -> None:
    batch = answers(
        [r for r, _, _, _ in MATCH_CASES],
        [r for _, _, r, _ in MATCH_CASES],
        ended=[e for _, e, _, _ in MATCH_CASES],
        fill=fill,
        extra=extra,
    )
    out = match_reward(batch)
    assert out.shape == (len(MATCH_CASES),)
    np.testing.assert_allclose(out, [e for _, _, _, e in MATCH_CASES], rtol=0, atol=1e-12)


# -- cross-check against plain Python -------------------------------------------------------------


def f1_by_counter(response: list[int], reference: list[int]) -> float:
    if not response and not reference:
        return 1.0
    common = sum((Counter(response) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(response), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def keyword_by_search(response: list[int], keywords: list[list[int]]) -> float:
    found = any(response[i : i + len(kw)] == kw for kw in keywords for i in range(len(response) - len(kw) + 1))
    return 1.0 if found else -1.0


def match_by_position(response: list[int], ended: bool, reference: list[int]) -> float:
    eos = -100
    emitted, target = response + ([eos] if ended else []), reference + [eos]
    return sum(i < len(emitted) and emitted[i] == t for i, t in enumerate(target)) / len(target)


tokens = st.lists(st.sampled_from([A, B, C, D]), max_size=6)
keyword_slots = st.lists(st.lists(st.sampled_from([A, B, C, D]), min_size=1, max_size=3), max_size=3)
rows = st.tuples(tokens, tokens, keyword_slots, st.booleans())  # response, reference, keywords, ended


def digits_by_place(response: list[int], reference: list[int]) -> float:
    """Places (ones, tens, ...) where both have the same token, over the longer length."""
    same = sum(a == b for a, b in zip(reversed(response), reversed(reference)))
    return same / max(len(response), len(reference), 1)


@settings(max_examples=150, deadline=None)
@given(batch_rows=st.lists(rows, min_size=1, max_size=8), fill=st.sampled_from([0, A, B]), extra=st.integers(0, 3))
def test_rewards_agree_with_plain_python(batch_rows, fill, extra) -> None:
    responses, references, keywords, ended = (list(x) for x in zip(*batch_rows))
    batch = answers(responses, references, keywords, ended, fill=fill, extra=extra)
    before = {name: value.copy() for name, value in batch.__dict__.items() if value is not None}

    np.testing.assert_allclose(
        f1_reward(batch), [f1_by_counter(r, ref) for r, ref in zip(responses, references)], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(exact_reward(batch), [float(r == ref) for r, ref in zip(responses, references)])
    np.testing.assert_array_equal(keyword_reward(batch), [keyword_by_search(r, k) for r, k in zip(responses, keywords)])
    np.testing.assert_allclose(
        match_reward(batch),
        [match_by_position(r, e, ref) for r, e, ref in zip(responses, ended, references)],
        rtol=0,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        digits_reward(batch), [digits_by_place(r, ref) for r, ref in zip(responses, references)], rtol=0, atol=1e-12
    )
    for name, value in before.items():  # a reward must not write into the batch it scores
        np.testing.assert_array_equal(getattr(batch, name), value, err_msg=name)


# -- resolve_reward -------------------------------------------------------------------------------


@pytest.fixture
def tok() -> WordTokenizer:
    return WordTokenizer.from_corpus(["the cat sat on the mat", "a dog barked"])


def test_builtin_reward_names(tok) -> None:
    assert set(REWARDS) == {"keyword", "exact", "f1", "match", "digits"}
    for name, fn in [
        ("keyword", keyword_reward),
        ("exact", exact_reward),
        ("f1", f1_reward),
        ("match", match_reward),
        ("digits", digits_reward),
    ]:
        assert REWARDS[name] is fn
        assert resolve_reward(name, tok) is fn


@pytest.mark.parametrize("name", ["bleu", "F1", ""])
def test_resolve_reward_unknown_name_lists_the_valid_ones(name, tok) -> None:
    with pytest.raises(ValueError) as info:
        resolve_reward(name, tok)
    message = str(info.value)
    assert repr(name) in message
    for valid in REWARDS:
        assert repr(valid) in message


@pytest.mark.parametrize("reward", [3, None, ["f1"], 1.5])
def test_resolve_reward_rejects_what_is_neither_name_nor_function(reward, tok) -> None:
    with pytest.raises(TypeError, match=type(reward).__name__) as info:
        resolve_reward(reward, tok)
    assert "function" in str(info.value)


def test_text_reward_receives_decoded_text_per_answer(tok) -> None:
    calls = []

    def score(response: str, reference: str, keywords: list[str]) -> float:
        calls.append((response, reference, list(keywords)))
        return len(response.split()) / 10

    dog = tok.token_to_id("dog")
    batch = answers(
        [tok.encode("the cat sat"), tok.encode("a dog")],
        [tok.encode("on the mat"), tok.encode("a dog barked")],
        [[tok.encode("mat"), tok.encode("the cat")], [tok.encode("barked")]],
        fill=dog,  # padding that would decode to "dog" if read
    )
    out = resolve_reward(score, tok)(batch)
    assert calls == [
        ("the cat sat", "on the mat", ["mat", "the cat"]),
        ("a dog", "a dog barked", ["barked"]),
    ]
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, [0.3, 0.2])


def test_text_reward_skips_special_tokens_and_sees_empty_answers(tok) -> None:
    calls = []
    batch = answers([[tok.bos_id, *tok.encode("the cat")], []], [tok.encode("the mat"), tok.encode("a dog")])
    resolve_reward(lambda r, ref, kw: calls.append((r, ref, kw)) or 0, tok)(batch)
    assert calls == [("the cat", "the mat", []), ("", "a dog", [])]


@pytest.mark.parametrize("value", [np.float32(0.5), np.int64(2), 1, -3.25])
def test_text_reward_accepts_numeric_returns(value, tok) -> None:
    batch = answers([tok.encode("a dog")], [tok.encode("a dog")])
    np.testing.assert_array_equal(resolve_reward(lambda *_: value, tok)(batch), [float(value)])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float64("nan"), "1.0", None])
def test_text_reward_rejects_a_non_finite_or_non_number_return(value, tok) -> None:
    batch = answers([tok.encode("a dog")], [tok.encode("a dog")])

    def bad(response: str, reference: str, keywords: Sequence[str]):
        return value

    with pytest.raises(ValueError, match="finite float") as info:
        resolve_reward(bad, tok)(batch)
    assert repr(value) in str(info.value)
    assert "bad" in str(info.value)
