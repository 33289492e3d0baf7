"""The step kernel of a single env: one row, its common steps in scalar operations.

``DialogEnv`` steps one token at a time, as SB3, Tianshou and most agents drive an env, so its
kernel's index-array operations over one row would cost more than the work they do. A token inside
an answer (most steps) and a token that ends one take the scalar paths here; every other step
(starting an episode, an interactive task's reply) is ``DialogueKernel.step``'s, so a single env
and a row of the vector env give the same episodes for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialog_gym.kernel import DialogueKernel
from dialog_gym.options import EnvOptions
from dialog_gym.rewards import AnswerBatch
from dialog_gym.tasks.base import Task

AnswerState = tuple[int, np.ndarray, np.ndarray, int, int, float]  # turn, window, answer, pos, length, return


@dataclass(slots=True)
class AnswerEnd:
    """What a one-row kernel's step that ends an answer produced, as Python scalars."""

    reward: float  # the step's reward (the answer's score, plus shaping)
    score: float  # the answer's reward
    correct: bool
    terminated: bool
    truncated: bool
    out_of_turns: bool = False


class SingleKernel(DialogueKernel):
    """A ``DialogueKernel`` of one row with scalar fast paths for ``DialogEnv``."""

    def __init__(
        self, task: Task, options: EnvOptions | None = None, *, prefetch: int | None = None, **settings
    ) -> None:
        super().__init__(task, 1, options, prefetch=prefetch, **settings)

    def append_token(self, token: int) -> float | None:
        """Row 0's step for a token inside an answer, in scalar operations (a one-row kernel's fast path).

        Returns the step's reward, or None, having changed nothing, when the token ends the
        answer (EOS or the token limit) or the row's episode is over: ``step`` then takes the
        token. For a token inside an answer both do the same to the state.
        """
        pos = self.pos.item()
        if token == self.tokenizer.eos_id or pos + 1 >= self.max_answer_tokens or self.done.item(0):
            return None
        turn = self.turn.item()
        reward = 0.0
        if self.shaping:
            slot = self.slot.item()
            reference_len = int(self.ahead.reference_len[slot, turn])
            share = self.shaping / (reference_len + 1)
            expert = self.ahead.references[slot, turn, pos] if pos < reference_len else self.tokenizer.eos_id
            reward = share if token == expert else -share
            self.episode_return[0] += reward
        window = self.obs[0]
        window[:-1] = window[1:]
        window[-1] = token
        self.answers[0, turn, pos] = token
        self.pos[0] = pos + 1
        self.episode_length[0] = self.episode_length.item() + 1
        return reward

    def save_answer(self) -> AnswerState:
        """Row 0's state that ``append_token`` changes, for ``restore_answer`` (a turn-level step that
        fails on its reply's last token takes back the tokens before it)."""
        turn = self.turn.item()
        return (
            turn,
            self.obs[0].copy(),
            self.answers[0, turn].copy(),
            self.pos.item(),
            self.episode_length.item(),
            self.episode_return.item(),
        )

    def restore_answer(self, saved: AnswerState) -> None:
        """Put back what ``save_answer`` saved (nothing else may have changed since)."""
        turn, obs, answer, pos, length, episode_return = saved
        self.obs[0], self.answers[0, turn] = obs, answer
        self.pos[0], self.episode_length[0], self.episode_return[0] = pos, length, episode_return

    def finish_answer(self, token: int) -> AnswerEnd | None:
        """Row 0's step for a token that ends its answer, in scalar operations (a one-row kernel).

        Tasks that reply to the agent themselves take ``step`` instead: this returns None for
        them, having changed nothing. Like ``step``, it judges the answer before changing state.
        """
        pos, turn, slot = self.pos.item(), self.turn.item(), self.slot.item()
        ended = token == self.tokenizer.eos_id
        if self.respond is not None or self.done[0] or not (ended or pos + 1 >= self.max_answer_tokens):
            return None
        column = min(pos, self.max_answer_tokens - 1)
        length = pos + 1 - ended  # the answer's tokens, EOS not counted
        response = self.answers[0:1, turn].copy()  # (1, A)
        response[0, column] = token
        score, correct = self._score_one(slot, turn, response, length, ended, token)
        last = turn == self.ahead.n_turns.item(slot) - 1
        if self.observe_answers is not None and self.observe_answers(
            np.array([correct]), self.ahead.tag[slot : slot + 1]
        ):
            self.streams.forget_ahead()

        # From here on nothing can fail.
        reward = 0.0
        if self.shaping:
            reference_len = self.ahead.reference_len.item(slot, turn)
            share = self.shaping / (reference_len + 1)
            expert = self.ahead.references.item(slot, turn, pos) if pos < reference_len else self.tokenizer.eos_id
            reward = share if token == expert else -share
        reward += score
        window = self.obs[0]
        window[:-1] = window[1:]
        window[-1] = token
        self.answers[0, turn, column] = token
        self.pos[0] = pos + 1
        self.episode_length[0] += 1
        self.answer_len[0, turn] = pos + 1
        self.answers_given[0] += 1
        self.answers_correct[0] += correct
        self.answer_tokens[0] += length
        if ended and not last:
            self.turn[0] = turn + 1
            self.pos[0] = 0
            self._append_segment_one(0)
        self.done[0] = (ended and last) or not ended  # terminated, or truncated at the token limit
        self.episode_return[0] += reward
        return AnswerEnd(reward, score, correct, ended and last, not ended)

    def _score_one(
        self, slot: int, turn: int, response: np.ndarray, length: int, ended: bool, token: int
    ) -> tuple[float, bool]:
        """``_score`` for one answer (``response`` (1, A)), with episode arrays sliced rather than gathered;
        a pure reward's scores are remembered, so a single env that meets the same answer to the same
        question again (an agent that has learned, or the oracle) does not call numpy again."""
        ahead = self.ahead
        key = None
        if self.scorer.is_pure:
            key = (
                response[0, :length].tobytes(),
                ended,
                ahead.references[slot, turn, : ahead.reference_len.item(slot, turn)].tobytes(),
                ahead.keywords[slot, turn].tobytes(),
                ahead.keyword_len[slot, turn].tobytes(),
            )

        def batch() -> AnswerBatch:
            dialogue = None
            if self.scorer.reads_dialogue:
                dialogue = np.concatenate([self.obs[0:1, 1:], np.array([[token]])], axis=1)
            return AnswerBatch(
                response=response,
                response_len=np.array([length]),
                ended=np.array([ended]),
                reference=ahead.references[slot, turn : turn + 1],
                reference_len=ahead.reference_len[slot, turn : turn + 1],
                keywords=ahead.keywords[slot, turn : turn + 1],
                keyword_len=ahead.keyword_len[slot, turn : turn + 1],
                dialogue=dialogue,
            )

        return self.scorer.score_one(batch, key)

    def row_stats(self, row: int = 0) -> dict[str, float | int | bool]:
        """``episode_stats`` of the row as Python scalars."""
        answers, correct = self.answers_given.item(row), self.answers_correct.item(row)
        if self.respond is None:
            questions = int(self.ahead.n_turns[self.slot.item(row)])
            success = correct == questions
        else:
            questions, success = answers, self.success.item(row)
        return {
            "return": self.episode_return.item(row),
            "length": self.episode_length.item(row),
            "answers": answers,
            "correct": correct,
            "questions": questions,
            "success": success,
            "answer_tokens": self.answer_tokens.item(row),
        }
