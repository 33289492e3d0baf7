"""Reward functions: they score one finished answer against its reference.

The built-in rewards work on token ids for a whole batch of answers at once, so the vector env
scores hundreds of answers with a handful of numpy operations. A user's own reward is a plain
function of text, ``fn(response, reference, keywords) -> float``, called once per answer. Other
packages add rewards named ``"PREFIX:ARG"`` (a learned reward model is ``"model:DIR"``) through
``register_reward_prefix`` or an entry point; they return objects following the ``Reward`` protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Callable, Protocol, Sequence, runtime_checkable

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
"""A built-in reward: (B,) scores of a batch of answers; it judges correctness and ignores the dialogue."""


@runtime_checkable
class Reward(Protocol):
    """A reward object, from a plugin (``reward="model:DIR"``) or passed as ``reward=`` directly."""

    judges_correctness: bool
    """Whether ``reward >= success_reward`` says an answer is correct. A learned reward does not: the
    task's own reward then judges correctness, so the true accuracy is reported next to it."""
    needs_dialogue: bool
    """Whether it reads ``AnswerBatch.dialogue``, the env's observation as the answer ends."""

    def __call__(self, batch: AnswerBatch) -> np.ndarray:
        """(B,) float scores of the batch's answers."""
        ...


RewardFactory = Callable[[str, Tokenizer], Reward]
"""Builds the reward that ``"PREFIX:ARG"`` names from ``ARG`` and the env's tokenizer."""


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


class UnknownRewardPrefix(ValueError):
    """``reward="PREFIX:ARG"`` names a prefix no plugin provides."""


ENTRY_POINT_GROUP = "dialog_gym.rewards"
"""Packages provide ``reward="PREFIX:ARG"`` with an entry point named PREFIX in this group, pointing
at a ``RewardFactory`` (e.g. ``model = "agents.reward_model:model_reward"`` in pyproject.toml)."""

_FACTORIES: dict[str, RewardFactory] = {}

PLUGIN_HINTS = {"model": "a learned reward model needs torch and the agents package (import agents.reward_model); "}
"""What to do when a well-known prefix is missing."""


def register_reward_prefix(prefix: str, factory: RewardFactory) -> None:
    """Make ``reward="PREFIX:ARG"`` mean ``factory(ARG, tokenizer)`` (replacing an earlier registration)."""
    if not isinstance(prefix, str) or not prefix.isidentifier():
        raise ValueError(f"a reward prefix must be a name such as 'model', got {prefix!r}")
    if prefix in REWARDS:
        raise ValueError(f"{prefix!r} is a built-in reward name; register the plugin under another prefix")
    if not callable(factory):
        raise TypeError(f"the factory for reward prefix {prefix!r} must be callable, got {type(factory).__name__}")
    _FACTORIES[prefix] = factory


def reward_prefixes() -> list[str]:
    """Every prefix a reward can name: those registered at run time and those installed as entry points."""
    return sorted(set(_FACTORIES) | {entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)})


def _factory(prefix: str, reward: str) -> RewardFactory:
    """The factory registered for ``prefix``, else the installed entry point of that name (loaded once)."""
    if prefix in _FACTORIES:
        return _FACTORIES[prefix]
    found = [entry for entry in entry_points(group=ENTRY_POINT_GROUP) if entry.name == prefix]
    if not found:
        hint = PLUGIN_HINTS.get(prefix, "")
        raise UnknownRewardPrefix(
            f"no reward plugin provides the prefix {prefix!r} of reward={reward!r} (known prefixes: "
            f"{reward_prefixes()}); {hint}register one with dialog_gym.register_reward_prefix({prefix!r}, factory) "
            f"or install a package declaring it in the entry-point group {ENTRY_POINT_GROUP!r}"
        )
    try:
        factory = found[0].load()
    except ImportError as error:
        raise ImportError(
            f"reward={reward!r} needs the plugin {found[0].value}, which failed to import ({error}); install what it needs"
        ) from None
    register_reward_prefix(prefix, factory)
    return factory


def resolve_reward(reward: str | TextReward | Reward, tokenizer: Tokenizer) -> BatchReward | Reward:
    """The batch reward for a name in ``REWARDS``, ``"PREFIX:ARG"`` (a registered plugin, such as
    ``"model:DIR"``, a saved reward model), a ``Reward`` object, or a user's text reward function."""
    if isinstance(reward, str):
        if reward in REWARDS:
            return REWARDS[reward]
        prefix, colon, argument = reward.partition(":")
        if not colon:
            raise ValueError(
                f"unknown reward {reward!r}; expected one of {sorted(REWARDS)}, 'PREFIX:ARG' for a plugin "
                f"(prefixes: {reward_prefixes()}) or a function"
            )
        made = _factory(prefix, reward)(argument, tokenizer)
        if not isinstance(made, Reward):
            raise TypeError(
                f"the plugin for reward prefix {prefix!r} returned a {type(made).__name__}, not a Reward "
                "(a callable with judges_correctness and needs_dialogue attributes)"
            )
        return made
    if isinstance(reward, Reward):
        return reward
    if callable(reward):
        return text_reward(reward, tokenizer)
    raise TypeError(
        f"reward must be a name in {sorted(REWARDS)}, 'PREFIX:ARG', a function or a Reward object, "
        f"got {type(reward).__name__}"
    )


def judges_correctness(reward: BatchReward | Reward) -> bool:
    """Whether ``reward >= success_reward`` says an answer is right (a plain batch function: yes)."""
    return reward.judges_correctness if isinstance(reward, Reward) else True


def needs_dialogue(reward: BatchReward | Reward) -> bool:
    """Whether ``reward`` reads ``AnswerBatch.dialogue`` (a plain batch function: no)."""
    return reward.needs_dialogue if isinstance(reward, Reward) else False
