"""Demonstrations for maximum-likelihood pretraining: whole dialogues with the answers filled in.

A demonstration is exactly the token sequence the env would produce if an agent gave the
demonstrated answers, with a mask marking the agent's tokens (answers and their EOS), so a
policy can be trained by teacher forcing with the loss on those tokens only. Like human data,
demonstrations can be imperfect: a fraction ``noise`` of the answers is replaced by a wrong
answer (another episode's reference) or a verbose one (the task's filler words, then the
reference); the env's own reward says which demonstrated answers are correct.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dialog_gym.episodes import concat_ragged, pad_sequences
from dialog_gym.jsonl import DatasetError, brief, checked_path, malformed, read_objects, unknown_fields
from dialog_gym.random_streams import episode_index, uniform
from dialog_gym.rewards import AnswerBatch
from dialog_gym.tokenizers import Tokenizer

if TYPE_CHECKING:
    from dialog_gym.kernel import DialogueKernel


@dataclass
class Demonstrations:
    """``n`` demonstrated dialogues as right-padded token ids."""

    ids: np.ndarray  # (n, S) the whole dialogue, oldest token first
    lengths: np.ndarray  # (n,)
    answer_mask: np.ndarray  # (n, S) bool: tokens the agent produces (answers and their EOS)
    correct: np.ndarray  # (n, T) bool: the demonstrated answer is correct by the env's reward
    n_turns: np.ndarray  # (n,)
    index: np.ndarray  # (n,) uint64: ``reset(options={"index": int(index[i])})`` plays episode i
    tokenizer: Tokenizer

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def accuracy(self) -> float:
        """Fraction of demonstrated answers that the env's reward counts as correct."""
        valid = np.arange(self.correct.shape[1])[None, :] < self.n_turns[:, None]
        return float(self.correct[valid].mean())

    def text(self, i: int) -> dict[str, str | list[str]]:
        """Demonstration ``i`` as text: context, the user's questions and the demonstrated answers."""
        ids, mask = self.ids[i, : self.lengths[i]], self.answer_mask[i, : self.lengths[i]]
        edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
        user, answers, previous = [], [], 0
        for begin, end in zip(edges[::2], edges[1::2]):
            user.append(ids[previous:begin])
            answers.append(self.tokenizer.decode(ids[begin:end], skip_special=True))
            previous = end
        context = np.array([], np.int64)
        sep = self.tokenizer.sep_id
        if user and sep is not None and sep in user[0]:
            cut = int(np.flatnonzero(user[0] == sep)[0])
            context, user[0] = user[0][:cut], user[0][cut + 1 :]
        decode = lambda part: self.tokenizer.decode(part, skip_special=True)  # noqa: E731
        return {"context": decode(context), "questions": [decode(q) for q in user], "answers": answers}


MAX_DEMONSTRATION_TOKENS = 2**28
"""Most token ids one batch of demonstrations may hold (2 GiB of int64, before the other arrays)."""


def make_demonstrations(
    kernel: DialogueKernel, n: int, *, seed: int = 0, noise: float = 0.0, split: str = "train"
) -> Demonstrations:
    """``n`` demonstrations of ``kernel``'s task from ``split``, a fraction ``noise`` of answers imperfect
    (what ``env.demonstrations(n, seed, noise)`` returns)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive number of demonstrations, got {n!r}")
    tokens = int(n) * kernel.full_dialogue_len
    if tokens > MAX_DEMONSTRATION_TOKENS:
        raise ValueError(
            f"{n} demonstrations of up to {kernel.full_dialogue_len} tokens would hold {tokens:,} token ids, more than "
            f"{MAX_DEMONSTRATION_TOKENS:,}; ask for at most {MAX_DEMONSTRATION_TOKENS // kernel.full_dialogue_len:,}"
        )
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be a fraction in [0, 1], got {noise!r}")
    task, tokenizer = kernel.task, kernel.tokenizer
    if task.num_examples(split) == 0:
        raise ValueError(f"the {split!r} split holds no episode to demonstrate; add data to it")
    key = np.uint64(np.random.default_rng(seed).integers(2**63))
    index = episode_index(np.full(n, key, np.uint64), np.arange(n, dtype=np.uint64))
    size = task.num_examples(split)
    if size is not None:
        index %= np.uint64(size)  # the same episodes, numbered as reset(options={"index": ...}) expects
    episodes = task.episodes(split, index)
    turns = episodes.references.shape[1]
    room = kernel.max_answer_tokens - 1  # an answer's tokens before EOS

    answers = np.full((n, turns, room), tokenizer.pad_id, np.int64)
    answer_len = np.minimum(episodes.reference_len, room)
    width = min(room, episodes.references.shape[2])
    answers[:, :, :width] = episodes.references[:, :, :width]
    draws = uniform(index, 0, 2 * turns).reshape(n, turns, 2)
    noisy = draws[..., 0] < noise
    filler = np.array(task.filler_ids, np.int64)
    verbose = noisy & (draws[..., 1] < 0.5) & (len(filler) > 0)
    # A wrong answer is the reference of the same turn in the previous demonstration, or of its
    # first turn where it had fewer turns (never an empty answer).
    other, other_len = np.roll(answers, 1, axis=0), np.roll(answer_len, 1, axis=0)
    short = other_len == 0
    other[short], other_len[short] = (
        np.broadcast_to(other[:, :1], other.shape)[short],
        np.broadcast_to(other_len[:, :1], short.shape)[short],
    )
    wrong = noisy & ~verbose
    answers[wrong], answer_len[wrong] = other[wrong], other_len[wrong]
    if len(filler):
        long_answers, long_len = concat_ragged(
            [
                (np.broadcast_to(filler, (n * turns, len(filler))), np.full(n * turns, len(filler))),
                (answers.reshape(n * turns, room), answer_len.reshape(-1)),
            ],
            tokenizer.pad_id,
        )
        long_answers, long_len = (
            long_answers[:, :room].reshape(n, turns, room),
            np.minimum(long_len, room).reshape(n, turns),
        )
        answers[verbose], answer_len[verbose] = long_answers[verbose], long_len[verbose]

    if kernel.respond is not None:
        # An interactive task's later turns follow from what was said, so a demonstration ends with
        # its first imperfect answer, and the task itself judges each answer.
        changed = (wrong | verbose) & (np.arange(turns)[None, :] < episodes.n_turns[:, None])
        first = np.where(changed.any(1), changed.argmax(1) + 1, episodes.n_turns)
        episodes.n_turns = np.minimum(episodes.n_turns, first)
    live = np.arange(turns)[None, :] < episodes.n_turns[:, None]
    if kernel.respond is not None:
        correct = np.zeros((n, turns), bool)
        for t in range(turns):
            reply = kernel.respond(split, index, answers, np.where(live, answer_len, 0), np.full(n, t))
            correct[:, t] = reply.correct & live[:, t]
        return _assemble(episodes, answers, answer_len, live, correct, index, tokenizer)
    scores = np.zeros((n, turns))
    for t in range(turns):
        batch = AnswerBatch(
            response=answers[:, t],
            response_len=answer_len[:, t],
            ended=np.ones(n, bool),
            reference=episodes.references[:, t],
            reference_len=episodes.reference_len[:, t],
            keywords=episodes.keywords[:, t],
            keyword_len=episodes.keyword_len[:, t],
        )
        scores[:, t] = kernel.scorer.judge(batch)
    correct = (scores >= kernel.scorer.success_reward) & live
    return _assemble(episodes, answers, answer_len, live, correct, index, tokenizer)


def _assemble(
    episodes,
    answers: np.ndarray,
    answer_len: np.ndarray,
    live: np.ndarray,
    correct: np.ndarray,
    index: np.ndarray,
    tokenizer: Tokenizer,
) -> Demonstrations:
    """Interleave user segments and answers (each answer closed by EOS); unused turns are empty."""
    n, turns = answer_len.shape
    pieces, is_answer = [], []
    for t in range(turns):
        closed = np.concatenate([answers[:, t], np.full((n, 1), tokenizer.pad_id)], axis=1)
        closed[np.arange(n), answer_len[:, t]] = tokenizer.eos_id
        pieces.append((episodes.segments[:, t], np.where(live[:, t], episodes.segment_len[:, t], 0)))
        pieces.append((closed, np.where(live[:, t], answer_len[:, t] + 1, 0)))
        is_answer += [False, True]
    ids, lengths = concat_ragged(pieces, tokenizer.pad_id)
    marks, _ = concat_ragged(
        [(np.full(tokens.shape, flag, np.int64), piece_len) for (tokens, piece_len), flag in zip(pieces, is_answer)],
        0,
    )
    return Demonstrations(
        ids=ids,
        lengths=lengths,
        answer_mask=marks.astype(bool),
        correct=correct,
        n_turns=episodes.n_turns.copy(),
        index=index,
        tokenizer=tokenizer,
    )


@dataclass
class Preferences:
    """Preference pairs for a reward model: the same dialogue ending in a better and a worse answer.

    Both sides are right-padded token ids of the dialogue up to and including one answer and its
    EOS, the way the env's observation reads when that answer ends.
    """

    chosen: np.ndarray  # (n, S)
    chosen_len: np.ndarray  # (n,)
    rejected: np.ndarray  # (n, S)
    rejected_len: np.ndarray  # (n,)
    tokenizer: Tokenizer

    def __len__(self) -> int:
        return len(self.chosen_len)

    def split(self, fraction: float) -> tuple[Preferences, Preferences]:
        """The first ``1 - fraction`` of the pairs and the rest (e.g. for a held-out accuracy)."""
        cut = int(round(len(self) * (1 - fraction)))
        part = lambda rows: Preferences(
            self.chosen[rows],
            self.chosen_len[rows],
            self.rejected[rows],  # noqa: E731
            self.rejected_len[rows],
            self.tokenizer,
        )
        return part(slice(0, cut)), part(slice(cut, None))


def _answer_spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of answer tokens in one demonstration's mask."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def task_preferences(kernel: DialogueKernel, n: int, *, seed: int = 0, split: str = "train") -> Preferences:
    """Up to ``n`` pairs from the task: at one turn of a dialogue, the reference answer (chosen)
    against a corrupted one that the env counts as wrong (rejected); earlier turns hold the
    reference answers. Corruptions the env still counts as right (a verbose answer under the
    keyword reward) make no pair, so such a model does not learn to prefer concise answers. Agents
    call it as ``env.preferences(n, seed, split)``."""
    clean = make_demonstrations(kernel, n, seed=seed, noise=0.0, split=split)
    corrupted = make_demonstrations(kernel, n, seed=seed, noise=1.0, split=split)
    pick = uniform(clean.index, 1, 1)[:, 0]
    chosen, rejected = [], []
    for i in range(n):
        shown = corrupted.n_turns[i]  # an interactive task's corrupted dialogue ends at its first corruption
        worse = np.flatnonzero(clean.correct[i, :shown] & ~corrupted.correct[i, :shown])
        if not len(worse):
            continue
        turn = int(worse[min(int(pick[i] * len(worse)), len(worse) - 1)])
        start, end = _answer_spans(clean.answer_mask[i, : clean.lengths[i]])[turn]
        bad_start, bad_end = _answer_spans(corrupted.answer_mask[i, : corrupted.lengths[i]])[turn]
        chosen.append(clean.ids[i, :end])
        rejected.append(np.concatenate([clean.ids[i, :start], corrupted.ids[i, bad_start:bad_end]]))
    return _preferences(chosen, rejected, kernel.tokenizer)


def _preferences(chosen: list, rejected: list, tokenizer: Tokenizer) -> Preferences:
    width = max([len(x) for x in chosen + rejected] + [1])
    pad = lambda rows: pad_sequences(rows, width, tokenizer.pad_id)  # noqa: E731
    (chosen_ids, chosen_len), (rejected_ids, rejected_len) = pad(chosen), pad(rejected)
    return Preferences(chosen_ids, chosen_len, rejected_ids, rejected_len, tokenizer)


PREFERENCE_FIELDS = ("context", "question", "chosen", "rejected")


def read_preferences(path: str | os.PathLike[str], tokenizer: Tokenizer) -> Preferences:
    """Pairs from a JSONL file of ``{"context", "question"?, "chosen", "rejected"}`` lines, encoded the way
    a dataset env shows a dialogue; every malformed line is reported with its number."""
    from dialog_gym.tasks.dataset import MAX_ANSWER_TOKENS, MAX_CONTEXT_TOKENS, MAX_QUESTION_TOKENS, MAX_TABLE_CELLS

    path = checked_path(path, "preference file")
    records, problems = read_objects(path, "preference file")
    most = {"context": MAX_CONTEXT_TOKENS, "question": MAX_QUESTION_TOKENS}
    most |= {"chosen": MAX_ANSWER_TOKENS, "rejected": MAX_ANSWER_TOKENS}
    chosen, rejected, width = [], [], 1
    for number, record in records:
        problem = unknown_fields(record, PREFERENCE_FIELDS)
        fields = ("context", "chosen", "rejected") + (("question",) if "question" in record else ())
        bad = [f for f in fields if not isinstance(record.get(f), str) or not record[f].strip()]
        if problem is None and bad:
            problem = f"field {bad[0]!r} must be a non-empty string, got {brief(record.get(bad[0]))}"
        ids = {} if problem is not None else {f: tokenizer.encode(record[f]) for f in fields}
        long = [f for f in ids if len(ids[f]) > most[f]]
        if long:
            problem = f"field {long[0]!r} is {len(ids[long[0]])} tokens long, more than {most[long[0]]}; shorten it"
        if problem is not None:
            problems.append(f"line {number}: {problem}")
            continue
        prompt = [tokenizer.bos_id, *ids["context"]]
        if "question" in ids:
            prompt += [tokenizer.sep_id, tokenizer.user_id, *ids["question"]]
        prompt = [i for i in prompt + [tokenizer.agent_id] if i is not None]
        chosen.append(np.array(prompt + ids["chosen"] + [tokenizer.eos_id], np.int64))
        rejected.append(np.array(prompt + ids["rejected"] + [tokenizer.eos_id], np.int64))
        width = max(width, len(chosen[-1]), len(rejected[-1]))
        if 2 * len(chosen) * width > MAX_TABLE_CELLS:
            raise DatasetError(
                f"{path}: {len(chosen)} pairs of up to {width} tokens by line {number} need more than "
                f"{MAX_TABLE_CELLS} token slots; use fewer pairs or shorter texts"
            )
    if problems:
        raise DatasetError(malformed(path, problems))
    if not chosen:
        raise DatasetError(f"{path}: the file holds no pairs; expected one JSON object per line")
    return _preferences(chosen, rejected, tokenizer)
