"""Reward functions: they score one finished answer against its reference.

The built-in rewards work on token ids for a whole batch of answers at once, so the vector env
scores hundreds of answers with a handful of numpy operations. A user's own reward is a plain
function of text, ``fn(response, reference, keywords) -> float``, called once per answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from dialog_gym.tokenizers import Tokenizer

TextReward = Callable[[str, str, Sequence[str]], float]


@dataclass(frozen=True)
class AnswerBatch:
    """B finished answers and what they are scored against, as padded token ids."""

    response: np.ndarray  # (B, A) the agent's tokens, EOS not included
    response_len: np.ndarray  # (B,)
    ended: np.ndarray  # (B,) bool: the agent closed the answer with EOS (False: it hit the token limit)
    reference: np.ndarray  # (B, R)
    reference_len: np.ndarray  # (B,)
    keywords: np.ndarray  # (B, K, W)
    keyword_len: np.ndarray  # (B, K); 0 marks an unused slot
    dialogue: np.ndarray | None = None  # (B, L) the env's observation as the answer ends (for learned rewards)


BatchReward = Callable[[AnswerBatch], np.ndarray]


def _valid(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    return np.arange(tokens.shape[-1]) < lengths[..., None]


def keyword_reward(batch: AnswerBatch) -> np.ndarray:
    """+1 when the answer contains one of the keywords as a run of tokens, -1 otherwise."""
    b, k, w = batch.keywords.shape
    if w == 0 or k == 0:
        return -np.ones(b)
    # Pad so every start offset has a full window; the pad value -1 never equals a token id.
    padded = np.concatenate([batch.response, np.full((b, w), -1, batch.response.dtype)], axis=1)
    padded = np.where(np.arange(padded.shape[1]) < batch.response_len[:, None], padded, -1)
    windows = sliding_window_view(padded, w, axis=1)[:, : batch.response.shape[1] + 1]  # (B, O, W)
    same = windows[:, :, None, :] == batch.keywords[:, None, :, :]  # (B, O, K, W)
    in_keyword = np.arange(w)[None, None, None, :] < batch.keyword_len[:, None, :, None]
    hit = (same | ~in_keyword).all(axis=3) & (batch.keyword_len[:, None, :] > 0)  # (B, O, K)
    return np.where(hit.any(axis=(1, 2)), 1.0, -1.0)


def exact_reward(batch: AnswerBatch) -> np.ndarray:
    """1 when the answer is exactly the reference, else 0."""
    width = max(batch.response.shape[1], batch.reference.shape[1])
    response = _pad_to(np.where(_valid(batch.response, batch.response_len), batch.response, -1), width)
    reference = _pad_to(np.where(_valid(batch.reference, batch.reference_len), batch.reference, -1), width)
    same = (response == reference).all(axis=1) & (batch.response_len == batch.reference_len)
    return same.astype(np.float64)


def f1_reward(batch: AnswerBatch) -> np.ndarray:
    """Token F1 between answer and reference (SQuAD's metric over token ids); 1 if both are empty."""
    response_mask = _valid(batch.response, batch.response_len)
    reference_mask = _valid(batch.reference, batch.reference_len)
    same = batch.response[:, :, None] == batch.reference[:, None, :]  # (B, A, R)
    same &= response_mask[:, :, None] & reference_mask[:, None, :]
    # A response token counts as matched while fewer of its earlier copies than reference copies exist.
    repeats = batch.response[:, :, None] == batch.response[:, None, :]  # (B, A, A)
    earlier = np.tril(np.ones(repeats.shape[1:], bool), k=-1)
    rank = (repeats & earlier[None] & response_mask[:, None, :]).sum(axis=2)
    common = ((same.sum(axis=2) > rank) & response_mask).sum(axis=1)
    precision = common / np.maximum(batch.response_len, 1)
    recall = common / np.maximum(batch.reference_len, 1)
    f1 = np.where(common > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    both_empty = (batch.response_len == 0) & (batch.reference_len == 0)
    return np.where(both_empty, 1.0, f1)


def match_reward(batch: AnswerBatch) -> np.ndarray:
    """Fraction of the reference's positions (EOS included) that the answer gets right, in [0, 1]."""
    eos_id = -2  # stands for EOS on both sides; the answer's own EOS is not stored in ``response``
    b, r = batch.reference.shape
    target = np.concatenate([batch.reference, np.full((b, 1), -1)], axis=1)
    target[np.arange(b), batch.reference_len] = eos_id
    emitted = _pad_to(batch.response, r + 1)[:, : r + 1].copy()
    emitted[~_valid(emitted, batch.response_len)] = -3
    closing = batch.response_len[batch.ended]
    emitted[np.flatnonzero(batch.ended)[closing <= r], closing[closing <= r]] = eos_id
    hits = ((emitted == target) & _valid(target, batch.reference_len + 1)).sum(axis=1)
    return hits / (batch.reference_len + 1)


def digits_reward(batch: AnswerBatch) -> np.ndarray:
    """Partial credit for a number: tokens that match the reference aligned from the last one
    (ones with ones, tens with tens), over the longer of the two; 1 exactly when they are equal."""
    width = max(batch.response.shape[1], batch.reference.shape[1])
    response = _right_aligned(batch.response, batch.response_len, width)
    reference = _right_aligned(batch.reference, batch.reference_len, width)
    hits = ((response == reference) & (response >= 0)).sum(axis=1)
    return hits / np.maximum(np.maximum(batch.response_len, batch.reference_len), 1)


def _right_aligned(tokens: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Each row's first ``length`` tokens moved to the end of a ``width`` row padded with -1."""
    source = np.arange(width)[None, :] - (width - lengths[:, None])  # column of ``tokens`` read
    valid = source >= 0
    taken = np.take_along_axis(_pad_to(tokens, width), np.clip(source, 0, width - 1), axis=1)
    return np.where(valid, taken, -1)


def _pad_to(tokens: np.ndarray, width: int) -> np.ndarray:
    if tokens.shape[1] >= width:
        return tokens
    return np.concatenate([tokens, np.full((len(tokens), width - tokens.shape[1]), -1, tokens.dtype)], axis=1)


REWARDS: dict[str, BatchReward] = {
    "keyword": keyword_reward,
    "exact": exact_reward,
    "f1": f1_reward,
    "match": match_reward,
    "digits": digits_reward,
}


def text_reward(fn: TextReward, tokenizer: Tokenizer) -> BatchReward:
    """Adapt a text reward ``fn(response, reference, keywords) -> float`` to a batch of answers."""

    def score(batch: AnswerBatch) -> np.ndarray:
        out = np.empty(len(batch.response_len))
        for i in range(len(out)):
            response = tokenizer.decode(batch.response[i, : batch.response_len[i]], skip_special=True)
            reference = tokenizer.decode(batch.reference[i, : batch.reference_len[i]], skip_special=True)
            keywords = [
                tokenizer.decode(batch.keywords[i, k, :n], skip_special=True)
                for k, n in enumerate(batch.keyword_len[i])
                if n > 0
            ]
            value = fn(response, reference, keywords)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
                raise ValueError(f"the reward function {fn!r} returned {value!r}; it must return a finite float")
            out[i] = value
        return out

    return score


MODEL_PREFIX = "model:"


def resolve_reward(reward: str | TextReward, tokenizer: Tokenizer) -> BatchReward:
    """The batch reward for a name in ``REWARDS``, ``"model:PATH"`` (a saved reward model, which
    needs torch and ``agents``) or a user's text reward function."""
    if isinstance(reward, str) and reward.startswith(MODEL_PREFIX):
        try:
            from agents.reward_model import ModelReward
        except ImportError as error:
            raise ImportError(f"reward={reward!r} needs torch and the agents package ({error})") from None
        path = reward[len(MODEL_PREFIX) :]
        if not path.strip():
            raise ValueError("reward='model:' names no directory; pass reward='model:DIR' with a saved reward model")
        return ModelReward(path, tokenizer)
    if isinstance(reward, str):
        if reward not in REWARDS:
            raise ValueError(
                f"unknown reward {reward!r}; expected one of {sorted(REWARDS)}, 'model:PATH' or a function"
            )
        return REWARDS[reward]
    if callable(reward):
        return text_reward(reward, tokenizer)
    raise TypeError(f"reward must be a name in {sorted(REWARDS)} or a function, got {type(reward).__name__}")
