"""How a kernel scores finished answers: the env's reward, and the judge of correctness beside it.

``AnswerScorer`` resolves the ``reward`` option (a built-in name, a ``TextReward``, any
``Reward``) against the task, and scores a batch of answers (``AnswerBatch``). A reward that
does not judge correctness (a learned reward model) gets the task's own metric as the judge, so
the true accuracy is reported next to the learned reward. A built-in reward is a pure function
of the answer and its reference, so a one-row kernel remembers the scores it has computed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dialog_gym.rewards import (
    REWARDS,
    AnswerBatch,
    BatchReward,
    Reward,
    TextReward,
    judges_correctness,
    needs_dialogue,
    resolve_reward,
)
from dialog_gym.tasks.base import InteractiveTask, RewardResolvingTask, Task

__all__ = ["KNOWN_SCORES", "AnswerScorer"]

KNOWN_SCORES = 1 << 16  # most answers a scorer remembers the scores of


class AnswerScorer:
    """The reward and the judge of ``task``'s answers under the ``reward`` option; an answer is correct
    when the judge's score reaches ``success_reward``."""

    def __init__(self, task: Task, reward: str | TextReward | Reward | None, success_reward: float) -> None:
        # An interactive task answers the agent itself (a simulated user): it scores each answer,
        # so no reward can replace its own.
        interactive = isinstance(task, InteractiveTask)
        if interactive and reward is not None:
            raise ValueError(f"this task scores the agent's turns itself; reward={reward!r} cannot replace its reward")
        if interactive:
            self.name = "the task's own"
        else:
            self.name = reward if isinstance(reward, str) else (task.default_reward if reward is None else "custom")
        # A task may score in its own terms (one re-tokenized for a Hugging Face vocabulary reads the
        # answers' text with its own tokenizer); otherwise rewards read the env's ids.
        if isinstance(task, RewardResolvingTask):
            resolve = task.resolve_reward
        else:
            resolve = lambda r: resolve_reward(r, task.tokenizer)  # noqa: E731
        self.reward_fn: BatchReward | Reward = resolve(task.default_reward if reward is None else reward)
        self.correct_fn = None if judges_correctness(self.reward_fn) else resolve(task.default_reward)
        self.reads_dialogue = needs_dialogue(self.reward_fn)
        """The reward reads the observation as it is once the answer's last token is in."""
        self.success_reward = float(success_reward)
        self.is_pure = self.correct_fn is None and any(self.reward_fn is fn for fn in REWARDS.values())
        """The reward is a built-in one, a function of the answer and its reference only."""
        self.known: dict[tuple, tuple[float, bool]] = {}

    def judge(self, batch: AnswerBatch) -> np.ndarray:
        """Each answer's score under the judge of correctness (the task's metric, or the reward itself)."""
        return np.asarray((self.reward_fn if self.correct_fn is None else self.correct_fn)(batch), dtype=np.float64)

    def score(self, batch: AnswerBatch) -> tuple[np.ndarray, np.ndarray]:
        """(R,) float64 rewards and (R,) bool correctness of a batch of finished answers."""
        scores = np.asarray(self.reward_fn(batch), dtype=np.float64)
        judge = scores if self.correct_fn is None else self.judge(batch)
        return scores, judge >= self.success_reward

    def score_one(self, batch: Callable[[], AnswerBatch], key: tuple | None) -> tuple[float, bool]:
        """``score`` of the one answer ``batch()`` holds, as Python scalars; a pure reward's result is
        remembered under ``key`` (the answer and its reference; None: not remembered), and ``batch`` is
        only built when the result is not known."""
        if key is not None:
            known = self.known.get(key)
            if known is not None:
                return known
        scores, correct = self.score(batch())
        result = (float(scores[0]), bool(correct[0]))
        if key is not None:
            if len(self.known) >= KNOWN_SCORES:
                self.known.clear()
            self.known[key] = result
        return result
