"""The step kernel: N dialogue episodes advanced together with numpy.

``DialogVectorEnv`` runs it with N rows and ``DialogEnv`` with one (``SingleKernel``, which adds
scalar paths for its common steps), so a single env and a row of the vector env give the same
episodes for the same seed. Which episode each row plays is ``EpisodeStreams``' job. Per step the
work is a fixed number of array operations over N rows: appending a token shifts a window of
``max_len`` ids, and only finished answers are scored, so a step costs the same late in a long
dialogue as at its start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialog_gym.episode_streams import EpisodeStreams
from dialog_gym.episodes import Episodes
from dialog_gym.options import EnvOptions
from dialog_gym.rewards import AnswerBatch
from dialog_gym.scoring import AnswerScorer
from dialog_gym.sizing import answer_and_window, check_memory, dialogue_len, prefetch_depth
from dialog_gym.tasks.base import AdaptiveTask, InteractiveTask, Reply, Task
from dialog_gym.tokenizers import SPECIAL_ID_ATTRIBUTES


@dataclass
class StepOutcome:
    """What one kernel step produced, one entry per row."""

    reward: np.ndarray  # (N,) float64
    terminated: np.ndarray  # (N,) bool: the last answer ended with EOS
    truncated: np.ndarray  # (N,) bool: an answer reached max_answer_tokens
    reset: np.ndarray  # (N,) bool: the row started a new episode instead (next-step autoreset)
    answer_done: np.ndarray  # (N,) bool: an answer ended on this step
    answer_reward: np.ndarray  # (N,) float64, where answer_done
    answer_correct: np.ndarray  # (N,) bool, where answer_done
    out_of_turns: np.ndarray  # (N,) bool: truncated because an interactive task's turn limit was reached


@dataclass
class FinishedAnswers:
    """The answers a step ends, judged before the step changes any state; one entry per row in ``rows``."""

    rows: np.ndarray  # (R,) the rows whose answer ends
    turn: np.ndarray  # (R,) the turn each answer belongs to
    ended: np.ndarray  # (R,) bool: closed with EOS (False: it reached max_answer_tokens)
    lengths: np.ndarray  # (R,) the answer's tokens, EOS not counted
    scores: np.ndarray  # (R,) float64 the reward of each answer
    correct: np.ndarray  # (R,) bool
    last: np.ndarray  # (R,) bool: the episode's last answer
    turns_left: np.ndarray  # (R,) bool: an interactive task has a turn left after this one
    reply: Reply | None  # an interactive task's reply, None for other tasks
    new_curriculum: bool  # an adaptive task changed: episodes generated ahead must be made again


class DialogueKernel:
    """State and step logic for ``num_envs`` dialogue episodes of one task and split."""

    def __init__(
        self, task: Task, num_envs: int, options: EnvOptions | None = None, *, prefetch: int | None = None, **settings
    ) -> None:
        """``settings`` (``split=``, ``reward=``, ...) replace fields of ``options``; see ``EnvOptions``."""
        options = EnvOptions.build(options, **settings)
        if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.task, self.options = task, options
        split = self.split = options.split
        if task.num_examples(split) == 0:
            raise ValueError(f"the {split!r} split of this task holds no episode; pick another split or add data")
        self.tokenizer = task.tokenizer
        self.limits = limits = task.limits
        self.max_answer_tokens, self.max_len = answer_and_window(task, options)
        # Each row keeps ``depth`` upcoming episodes generated ahead (see ``EpisodeStreams``).
        self.depth = prefetch_depth(task, split, int(num_envs)) if prefetch is None else prefetch
        n = self.num_envs = int(num_envs)
        check_memory(n, limits, self.max_len, self.max_answer_tokens, self.depth)
        self.respond = task.respond if isinstance(task, InteractiveTask) else None
        self.scorer = AnswerScorer(task, options.reward, options.success_reward)
        self.shaping = float(options.shaping)

        t, pad = limits.max_turns, self.tokenizer.pad_id
        self.rows = np.arange(n)
        self.obs = np.full((n, self.max_len), pad, np.int64)
        self.answers = np.full((n, t, self.max_answer_tokens), pad, np.int64)
        self.turn = np.zeros(n, np.int64)
        self.pos = np.zeros(n, np.int64)  # tokens emitted in the current answer
        self.episode_return = np.zeros(n)
        self.episode_length = np.zeros(n, np.int64)
        self.answer_len = np.zeros((n, t), np.int64)  # tokens of each finished answer, EOS included
        self.answers_given = np.zeros(n, np.int64)
        self.answers_correct = np.zeros(n, np.int64)
        self.success = np.zeros(n, bool)  # an interactive task's verdict on the whole dialogue
        self.answer_tokens = np.zeros(n, np.int64)  # answer tokens over the episode, EOS not counted
        self.done = np.ones(n, bool)  # the row's episode is over (or never started)

        self.streams = EpisodeStreams(task, split, n, self.depth, limits, pad)
        # Read on every step: the episodes generated ahead, and where each row's current one sits.
        self.ahead, self.slot = self.streams.ahead, self.streams.slot

        # A task that adapts to the agent (a curriculum) sees every finished answer's result and its
        # episode's tag while training; when it changes, the episodes generated ahead but not yet
        # started are generated again. Seeding the env restarts it; the test split never adapts.
        self.observe_answers = task.observe_answers if isinstance(task, AdaptiveTask) and split == "train" else None

        self.action_mask = np.ones(self.tokenizer.vocab_size, bool)
        for special in SPECIAL_ID_ATTRIBUTES.keys() - {"eos_id"}:
            token = getattr(self.tokenizer, special, None)
            if token is not None:
                self.action_mask[token] = False
        self.action_mask.flags.writeable = False

    @property
    def full_dialogue_len(self) -> int:
        """Most tokens a whole dialogue can have: every user segment and every answer at its limit."""
        return dialogue_len(self.limits, self.max_answer_tokens)

    # -- episodes -------------------------------------------------------------------------------

    def seed_rows(self, rows: np.ndarray, keys: np.ndarray) -> None:
        """Restart the episode streams of ``rows`` from the given 64-bit keys."""
        if self.observe_answers is not None:
            self.task.restart()
        self.streams.seed(rows, keys)

    def reset_rows(self, rows: np.ndarray, index: np.ndarray | None = None) -> None:
        """Start the next episode of each row's stream (or the episodes ``index`` of the split)."""
        if index is None:
            self.streams.prefetch(rows)
            self._start(rows)
        else:
            self._start(rows, self.task.episodes(self.split, np.asarray(index, np.uint64)))

    def _start(self, rows: np.ndarray, episodes: Episodes | None = None) -> None:
        """Begin the episode at each row's stream position (``episodes``, if given, replace it); cannot fail."""
        if len(rows) == 1 and episodes is None:
            self._start_one(int(rows[0]))
            return
        self.streams.advance(rows, episodes)
        pad = self.tokenizer.pad_id
        self.obs[rows] = pad
        self.answers[rows] = pad
        self.answer_len[rows] = 0
        for state in self.scalar_state:
            state[rows] = 0
        self.done[rows] = False
        self._append_segments(rows, fresh=True)

    def _start_one(self, row: int) -> None:
        """``_start`` of one row from its stream, in scalar writes instead of index arrays."""
        self.streams.advance_one(row)
        pad = self.tokenizer.pad_id
        self.obs[row] = pad
        self.answers[row] = pad
        self.answer_len[row] = 0
        for state in self.scalar_state:
            state[row] = 0
        self.done[row] = False
        self._append_segment_one(row, fresh=True)

    @property
    def scalar_state(self) -> tuple[np.ndarray, ...]:
        """The (N,) per-episode counters that a new episode starts at zero."""
        return (
            self.turn,
            self.pos,
            self.episode_return,
            self.episode_length,
            self.answers_given,
            self.answers_correct,
            self.answer_tokens,
            self.success,
        )

    def _append_segments(self, rows: np.ndarray, fresh: bool = False) -> None:
        """Append user segment ``turn`` to the observation window of each row, dropping the oldest ids
        (``fresh``: the windows hold only padding)."""
        if len(rows) == 1:
            self._append_segment_one(int(rows[0]), fresh)
            return
        segments = self.ahead.segments[self.slot[rows], self.turn[rows]]  # (R, S)
        lengths = self.ahead.segment_len[self.slot[rows], self.turn[rows]]  # (R,)
        width = segments.shape[1]
        if fresh and width <= self.max_len:
            # Only the last S positions change: each segment moved to the right end of S columns.
            source = np.arange(width)[None, :] - (width - lengths)[:, None]  # (R, S) segment column shown
            shown = segments[np.arange(len(rows))[:, None], np.maximum(source, 0)]
            self.obs[rows, self.max_len - width :] = np.where(source >= 0, shown, self.tokenizer.pad_id)
            return
        joined = np.concatenate([self.obs[rows], segments], axis=1)  # (R, L + S)
        # The window after appending is joined[len : len + L] of each row.
        columns = lengths[:, None] + np.arange(self.max_len)[None, :]
        self.obs[rows] = joined[np.arange(len(rows))[:, None], columns]

    def _append_segment_one(self, row: int, fresh: bool = False) -> None:
        """``_append_segments`` for one row, with slices instead of index arrays (``fresh``: the window holds only padding)."""
        slot, turn = self.slot.item(row), self.turn.item(row)
        length = self.ahead.segment_len.item(slot, turn)
        window, segment = self.obs[row], self.ahead.segments[slot, turn]
        if length >= self.max_len:
            window[:] = segment[length - self.max_len : length]
        elif length:
            if not fresh:
                window[:-length] = window[length:]
            window[-length:] = segment[:length]

    # -- stepping -------------------------------------------------------------------------------

    def reference_len(self) -> np.ndarray:
        """Length of each row's current reference answer, EOS not counted."""
        return self.ahead.reference_len[self.slot, self.turn]

    def reference(self, row: int) -> np.ndarray:
        """The token ids of the row's current reference answer."""
        slot, turn = self.slot.item(row), self.turn.item(row)
        return self.ahead.references[slot, turn, : self.ahead.reference_len.item(slot, turn)]

    def expert_action(self) -> np.ndarray:
        """The token the reference answer has next, per row (EOS once the reference is complete)."""
        _, turns, width = self.ahead.references.shape
        answer = self.slot * turns + self.turn  # flat indices: one gather instead of three index arrays
        next_token = self.ahead.references.reshape(-1)[answer * width + np.minimum(self.pos, width - 1)]
        return np.where(self.pos < self.ahead.reference_len.reshape(-1)[answer], next_token, self.tokenizer.eos_id)

    def step(self, actions: np.ndarray) -> StepOutcome:
        """Append one token per row; rows whose episode was over start a new one instead.

        ``actions`` must already be validated: (N,) integer ids in ``[0, vocab_size)``. Every
        array operation runs over all rows; rows that start a new episode are overwritten at
        the end, which is cheaper than gathering the live rows first.

        Everything that can fail (a reward function, an interactive task's reply, generating the
        next episodes) runs before any state changes, so a step that raises leaves the kernel as
        it was: it never half-happens.
        """
        n = self.num_envs
        resetting = self.done.copy()
        live = ~resetting
        ended = (actions == self.tokenizer.eos_id) & live
        at_limit = live & ~ended & (self.pos >= self.max_answer_tokens - 1)
        answer_done = ended | at_limit
        finished = self._judge(np.flatnonzero(answer_done), actions, ended) if answer_done.any() else None
        if finished is not None and finished.new_curriculum:
            # Episodes generated ahead at the old difficulty are made again (unobservable if a later step fails).
            self.streams.forget_ahead()
        starting = np.flatnonzero(resetting) if resetting.any() else None
        if starting is not None:
            self.streams.prefetch(starting)

        # From here on nothing can fail.
        reward = np.zeros(n)
        if self.shaping:
            share = self.shaping / (self.reference_len() + 1)
            reward += np.where(actions == self.expert_action(), share, -share) * live
        self.obs[:, :-1] = self.obs[:, 1:]
        self.obs[:, -1] = actions
        self.answers[self.rows, self.turn, np.minimum(self.pos, self.max_answer_tokens - 1)] = actions
        self.pos += 1
        self.episode_length += 1
        answer_reward = np.zeros(n)
        answer_correct = np.zeros(n, bool)
        terminated = np.zeros(n, bool)
        out_of_turns = np.zeros(n, bool)
        if finished is not None:
            rows = finished.rows
            reward[rows] += finished.scores
            answer_reward[rows], answer_correct[rows] = finished.scores, finished.correct
            terminated[rows] = finished.ended & finished.last
            out_of_turns[rows] = finished.ended & ~finished.turns_left
            self._close_answers(finished)
        truncated = at_limit | out_of_turns
        np.logical_or(terminated, truncated, out=self.done)
        self.episode_return += reward
        if starting is not None:
            self._start(starting)
        return StepOutcome(
            reward, terminated, truncated, resetting, answer_done, answer_reward, answer_correct, out_of_turns
        )

    def _judge(self, rows: np.ndarray, actions: np.ndarray, ended: np.ndarray) -> FinishedAnswers:
        """Score the answers that ``actions`` end in ``rows``, reading the state without changing it."""
        turn, row_ended, pos = self.turn[rows], ended[rows], self.pos[rows]
        lengths = pos + 1 - row_ended  # the answer's tokens, EOS not counted
        column = np.minimum(pos, self.max_answer_tokens - 1)
        reply = None
        if self.respond is None:
            response = self.answers[rows, turn]  # (R, A) a copy, given this step's token below
            response[np.arange(len(rows)), column] = actions[rows]
            scores, correct = self._score(rows, turn, response, lengths, row_ended, actions)
            last = turn == self.ahead.n_turns[self.slot[rows]] - 1
            turns_left = np.ones(len(rows), bool)
        else:
            answers = self.answers[rows]  # (R, T, A) a copy
            answers[np.arange(len(rows)), turn, column] = actions[rows]
            reply = self._reply(rows, answers, turn, lengths)
            scores, correct, last = reply.reward, reply.correct, reply.done
            turns_left = last | (turn < self.limits.max_turns - 1)
        moving_on = row_ended & ~last & turns_left
        if reply is not None:
            self._check_reply(reply, moving_on)
        new_curriculum = self.observe_answers is not None and bool(
            self.observe_answers(correct, self.ahead.tag[self.slot[rows]])
        )
        return FinishedAnswers(rows, turn, row_ended, lengths, scores, correct, last, turns_left, reply, new_curriculum)

    def _close_answers(self, finished: FinishedAnswers) -> None:
        """Record the judged answers and move the rows that go on to their next turn."""
        rows, turn = finished.rows, finished.turn
        if finished.reply is not None:
            self.success[rows] = finished.reply.success
        self.answer_len[rows, turn] = self.pos[rows]
        self.answers_given[rows] += 1
        self.answers_correct[rows] += finished.correct
        self.answer_tokens[rows] += finished.lengths
        moving_on = finished.ended & ~finished.last & finished.turns_left
        advancing = rows[moving_on]
        if len(advancing):
            if finished.reply is not None:
                self._write_next_turn(advancing, finished.reply, moving_on)
            self.turn[advancing] += 1
            self.pos[advancing] = 0
            self._append_segments(advancing)

    def _reply(self, rows: np.ndarray, answers: np.ndarray, turn: np.ndarray, lengths: np.ndarray) -> Reply:
        """An interactive task's reply to the answers just finished in ``rows`` (``answers`` (R, T, A))."""
        turns = np.arange(self.limits.max_turns)[None, :]
        answer_len = np.where(turns < turn[:, None], self.answer_len[rows] - 1, 0)  # earlier answers ended with EOS
        answer_len[np.arange(len(rows)), turn] = lengths
        return self.respond(self.split, self.ahead.index[self.slot[rows]], answers, answer_len, turn)

    def _check_reply(self, reply: Reply, moving_on: np.ndarray) -> None:
        """Refuse a reply whose next turn does not fit the task's limits."""
        for tokens, lengths, target in (
            (reply.segment, reply.segment_len, self.ahead.segments),
            (reply.reference, reply.reference_len, self.ahead.references),
        ):
            if tokens.shape[1] > target.shape[2] and lengths[moving_on].max(initial=0) > target.shape[2]:
                raise ValueError(
                    f"the task replied with {lengths[moving_on].max()} tokens, more than its limits allow "
                    f"({target.shape[2]}); raise the task's EpisodeLimits"
                )

    def _write_next_turn(self, advancing: np.ndarray, reply: Reply, moving_on: np.ndarray) -> None:
        """Put the user's reply and the expert's next answer in as the next turn of ``advancing`` rows."""
        slot, nxt = self.slot[advancing], self.turn[advancing] + 1
        for tokens, lengths, target, target_len in (
            (reply.segment, reply.segment_len, self.ahead.segments, self.ahead.segment_len),
            (reply.reference, reply.reference_len, self.ahead.references, self.ahead.reference_len),
        ):
            width = min(tokens.shape[1], target.shape[2])
            target[slot, nxt] = self.tokenizer.pad_id
            target[slot, nxt, :width] = tokens[moving_on, :width]
            target_len[slot, nxt] = lengths[moving_on]

    def _score(
        self,
        rows: np.ndarray,
        turn: np.ndarray,
        response: np.ndarray,
        lengths: np.ndarray,
        ended: np.ndarray,
        actions: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The reward of each finished answer and whether it is correct."""
        ahead, slot = self.ahead, self.slot[rows]
        dialogue = None
        if self.scorer.reads_dialogue:  # the observation as it reads once this step's token is in
            dialogue = np.concatenate([self.obs[rows, 1:], actions[rows, None]], axis=1)
        batch = AnswerBatch(
            response=response,
            response_len=lengths,
            ended=ended,
            reference=ahead.references[slot, turn],
            reference_len=ahead.reference_len[slot, turn],
            keywords=ahead.keywords[slot, turn],
            keyword_len=ahead.keyword_len[slot, turn],
            dialogue=dialogue,
        )
        return self.scorer.score(batch)

    # -- what the envs report -------------------------------------------------------------------

    def episode_stats(self, rows: np.ndarray | slice) -> dict[str, np.ndarray]:
        """Statistics of the episodes of ``rows`` (final once they have ended)."""
        questions = self.ahead.n_turns[self.slot[rows]] if self.respond is None else self.answers_given[rows]
        return {
            "return": self.episode_return[rows],
            "length": self.episode_length[rows],
            "answers": self.answers_given[rows],
            "correct": self.answers_correct[rows],
            "questions": questions,
            "success": self.answers_correct[rows] == questions if self.respond is None else self.success[rows],
            "answer_tokens": self.answer_tokens[rows],
        }

    def agent_tokens(self) -> np.ndarray:
        """(N, max_len) bool: which positions of each observation hold the agent's own tokens (its
        answers and their EOS) rather than context, user turns or padding. Computed on demand."""
        out = np.zeros((self.num_envs, self.max_len), bool)
        for row in range(self.num_envs):
            runs, slot = [], self.slot[row]
            for t in range(int(self.turn[row]) + 1):
                emitted = self.pos[row] if t == self.turn[row] else self.answer_len[row, t]
                runs += [np.zeros(self.ahead.segment_len[slot, t], bool), np.ones(emitted, bool)]
            kept = np.concatenate(runs)[-self.max_len :]
            out[row, self.max_len - len(kept) :] = kept
        return out

    def history(self, row: int) -> np.ndarray:
        """Every token of the row's dialogue so far, oldest first (not cut to ``max_len``)."""
        pieces, slot = [], self.slot[row]
        for t in range(int(self.turn[row]) + 1):
            pieces.append(self.ahead.segments[slot, t, : self.ahead.segment_len[slot, t]])
            emitted = self.pos[row] if t == self.turn[row] else self.answer_len[row, t]
            pieces.append(self.answers[row, t, :emitted])
        return np.concatenate(pieces)
