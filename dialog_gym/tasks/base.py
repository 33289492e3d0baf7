"""The task protocol: where episodes come from and what counts as a right answer."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

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
