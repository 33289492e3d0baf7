"""The task protocols: where episodes come from and what counts as a right answer.

Every task is a ``Task``. A task that does more declares it by subclassing one of the protocols
below, and the step kernel checks them with ``isinstance``: ``InteractiveTask`` (plays the user
itself), ``AdaptiveTask`` (changes with the agent's results, a curriculum) and
``RewardResolvingTask`` (turns a reward name into a reward in its own terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import SPLITS, EpisodeLimits, Episodes
from dialog_gym.rewards import BatchReward, Reward, TextReward
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

    ``InteractiveTask.respond`` returns it: the kernel hands the task every answer of the dialogue
    so far and takes the reward, the user's next turn and the expert's next answer from it. Such a
    task's ``episodes`` give the expert's whole dialogue, which is what demonstrations show.
    """

    reward: np.ndarray  # (R,) float64
    correct: np.ndarray  # (R,) bool: a good move (for a final move: the goal reached)
    done: np.ndarray  # (R,) bool: the dialogue is over
    success: np.ndarray  # (R,) bool: the dialogue reached its goal
    segment: np.ndarray  # (R, S) the user's next turn, with its speaker markers
    segment_len: np.ndarray  # (R,)
    reference: np.ndarray  # (R, A) the expert's next answer
    reference_len: np.ndarray  # (R,)


@runtime_checkable
class InteractiveTask(Task, Protocol):
    """A task that plays the user: it scores each answer and writes the user's next turn from it."""

    def respond(
        self, split: str, index: np.ndarray, answers: np.ndarray, answer_len: np.ndarray, turn: np.ndarray
    ) -> Reply:
        """The verdict on the answers that just ended in episodes ``index`` of ``split``: ``answers``
        (R, T, A) holds every answer of each dialogue so far with ``answer_len`` (R, T), EOS not
        counted; ``turn`` (R,) is the turn that just ended."""
        ...


@runtime_checkable
class AdaptiveTask(Task, Protocol):
    """A task that adapts to the agent while it trains (a curriculum); the test split never adapts."""

    def observe_answers(self, correct: np.ndarray, tags: np.ndarray) -> bool:
        """Record finished answers (``correct`` (R,) bool) with their episodes' ``tags``; True when the
        task changed, so that episodes generated ahead are generated again."""
        ...

    def restart(self) -> None:
        """Forget what was observed (the env was seeded)."""
        ...


@runtime_checkable
class RewardResolvingTask(Task, Protocol):
    """A task that turns a reward into one scoring in its own terms (a re-tokenized task reads the
    answers' text with its own tokenizer); the others' rewards read the env's ids."""

    def resolve_reward(self, reward: str | TextReward | Reward) -> BatchReward | Reward:
        """The batch reward that ``reward`` names, for answers in this task's ids."""
        ...


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
