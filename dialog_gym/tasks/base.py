"""The task protocol: where episodes come from and what counts as a right answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import SPLITS, EpisodeLimits, Episodes
from dialog_gym.tokenizers import Tokenizer


@runtime_checkable
class Task(Protocol):
    """A source of episodes. Episode ``k`` of a split is a pure function of ``(split, k)``.

    ``episodes`` takes a batch of indices so that generated tasks can build hundreds of episodes
    with a few numpy operations; the env draws the indices from its seeded stream.
    """

    tokenizer: Tokenizer
    limits: EpisodeLimits
    filler_ids: tuple[int, ...]
    """Tokens put before an answer to make a verbose demonstration; empty if the task has none."""
    default_reward: str
    """The reward the task is meant to be scored with when the user names none."""

    def num_examples(self, split: str) -> int | None:
        """How many distinct episodes the split holds; None when it is unbounded (generated)."""
        ...

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        """The episodes with these indices (uint64, any value; finite splits wrap around)."""
        ...


def check_split(split: str) -> str:
    """Return ``split`` if it names a split, else raise a one-line error."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    return split


@dataclass
class Reply:
    """An interactive task's verdict on the answers that just ended, one entry per row.

    A task with a ``respond(split, index, answers, answer_len, turn) -> Reply`` method plays the
    user itself: the kernel hands it every answer of the dialogue so far (``answers`` (R, T, A)
    with ``answer_len`` (R, T), EOS not counted) and takes the reward, the user's next turn and
    the expert's next answer from it. Its ``episodes`` give the expert's whole dialogue, which
    is what demonstrations show.
    """

    reward: np.ndarray  # (R,) float64
    correct: np.ndarray  # (R,) bool: a good move (for a final move: the goal reached)
    done: np.ndarray  # (R,) bool: the dialogue is over
    success: np.ndarray  # (R,) bool: the dialogue reached its goal
    segment: np.ndarray  # (R, S) the user's next turn, with its speaker markers
    segment_len: np.ndarray  # (R,)
    reference: np.ndarray  # (R, A) the expert's next answer
    reference_len: np.ndarray  # (R,)


def keys_in_split(
    index: np.ndarray, split: str, in_test: Callable[[np.ndarray], np.ndarray], limit: int = 10_000
) -> np.ndarray:
    """For each episode index, the first key derived from it whose draw ``in_test`` puts in ``split``.

    Generated tasks draw an episode's hidden content from its key and redraw until the content
    lands in the asked split, so that train and test never share content.
    """
    want_test = check_split(split) == "test"
    index = np.asarray(index, np.uint64)
    keys = np.empty(len(index), np.uint64)
    pending, attempt = np.arange(len(index)), np.zeros(len(index), np.uint64)
    while len(pending):
        if int(attempt.max()) >= limit:
            raise RuntimeError(f"no draw landed in the {split!r} split after {limit} attempts")
        candidates = rs.episode_index(index[pending], attempt[pending])
        accepted = in_test(candidates) == want_test
        keys[pending[accepted]] = candidates[accepted]
        pending = pending[~accepted]
        attempt[pending] += np.uint64(1)
    return keys
