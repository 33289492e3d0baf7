"""Any task spoken in a Hugging Face vocabulary: its episodes re-written token by token.

The task keeps generating episodes in its own small vocabulary; each of its tokens becomes the
Hugging Face encoding of its text (with a leading space for word vocabularies) and each marker the
vocabulary's own token or a plain-text stand-in (``"\\nUser:"``). The mapping is a fixed table, so
re-writing a batch of episodes is a few numpy operations and the limits stay known in advance
(measured over every episode when a task has few enough, bounded by the longest piece otherwise).
Answers go the other way for scoring: the agent's ids are decoded to text and read by the task's
own tokenizer, so every reward (and an interactive task's user) judges the text the agent wrote,
whatever sequence of ids spelled it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dialog_gym.episodes import SPLITS, EpisodeLimits, Episodes, concat_ragged
from dialog_gym.hf_tokenizer import HFTokenizer
from dialog_gym.rewards import (
    AnswerBatch,
    BatchReward,
    Reward,
    TextReward,
    judges_correctness,
    needs_dialogue,
    resolve_reward,
)
from dialog_gym.tasks.base import AdaptiveTask, InteractiveTask, Reply, RewardResolvingTask, Task
from dialog_gym.tokenizers import SPECIAL_ID_ATTRIBUTES

# The classes of what comes before a native token, which decide its ids in a chat template.
AFTER_WORD, TURN_START, EPISODE_START, REPLY_START = range(4)


class RetokenizedTask(RewardResolvingTask):
    """``task`` with observations, references and actions in the ids of ``tokenizer``.

    ``RetokenizedTask(task, tokenizer)`` is an ``InteractiveTask`` or an ``AdaptiveTask`` (or both)
    exactly when ``task`` is: it builds the subclass below that forwards those methods.
    """

    def __new__(cls, task: Task | None = None, tokenizer: HFTokenizer | None = None) -> RetokenizedTask:
        if cls is RetokenizedTask and task is not None:
            cls = _FORWARDING[isinstance(task, InteractiveTask), isinstance(task, AdaptiveTask)]
        return super().__new__(cls)

    def __init__(self, task: Task, tokenizer: HFTokenizer) -> None:
        self.native, self.tokenizer = task, tokenizer
        native = task.tokenizer
        self.default_reward = task.default_reward
        table = chat_pieces(native, tokenizer) if tokenizer.chat is not None else [plain_pieces(native, tokenizer)]
        # ``table[c][i]``: the ids native token ``i`` becomes when the token before it is of class ``c``
        # (one class in plain vocabularies; four in a chat template, see ``chat_pieces``).
        self.classes = len(table)
        rows = [piece for pieces in table for piece in pieces]
        widest = max(max(len(p) for p in rows), 1)
        self.piece_len = np.array([len(p) for p in rows], np.int64)
        self.pieces = np.full((len(rows), widest), tokenizer.pad_id, np.int64)
        for i, piece in enumerate(rows):
            self.pieces[i, : len(piece)] = piece
        self._turn_opener = np.zeros(native.vocab_size, bool)
        for name in ("bos_id", "sep_id", "user_id", "agent_id"):
            if getattr(native, name, None) is not None:
                self._turn_opener[getattr(native, name)] = True
        # Every native token becomes at most ``grow`` ids and the first of a segment at most ``opening``
        # (a chat template's headers), which bounds every length; a task with few enough episodes has
        # them all measured instead, for a tight window.
        v = native.vocab_size
        grow = max(int(self.piece_len[: 2 * v].max(initial=1)), 1) if self.classes > 1 else widest
        opening = widest if self.classes > 1 else 0
        limits = task.limits
        self.limits = EpisodeLimits(
            max_turns=limits.max_turns,
            max_segment_len=limits.max_segment_len * grow + opening,
            max_dialogue_len=limits.max_dialogue_len * grow + limits.max_turns * opening,
            max_question_len=limits.max_question_len * grow + opening,
            max_reference_len=limits.max_reference_len * grow,
            max_keywords=limits.max_keywords,
            max_keyword_len=limits.max_keyword_len * grow,
        )
        self.limits = self._measured_limits() or self.limits
        self._known: dict[bytes, list[int]] = {}
        filler = np.array(task.filler_ids, np.int64)
        self.filler_ids = tuple(int(i) for i in self.pieces[filler][np.arange(widest) < self.piece_len[filler, None]])

    def _measured_limits(self, most: int = 100_000) -> EpisodeLimits | None:
        """Exact limits from every episode of a task whose splits are finite and small (not for
        interactive tasks, whose user turns are written during play)."""
        sizes = [self.native.num_examples(split) for split in SPLITS]
        if isinstance(self.native, InteractiveTask) or any(n is None for n in sizes) or sum(sizes) > most:
            return None
        segment = dialogue = reference = keyword = 1
        for split, n in zip(SPLITS, sizes):
            for start in range(0, n, 4096):
                batch = self.episodes(split, np.arange(start, min(n, start + 4096), dtype=np.uint64))
                segment = max(segment, int(batch.segment_len.max(initial=0)))
                dialogue = max(dialogue, int(batch.segment_len.sum(1).max(initial=0)))
                reference = max(reference, int(batch.reference_len.max(initial=0)))
                keyword = max(keyword, int(batch.keyword_len.max(initial=0)))
        bound = self.limits
        return replace(
            bound,
            max_segment_len=segment,
            max_dialogue_len=dialogue,
            max_question_len=min(bound.max_question_len, segment),
            max_reference_len=reference,
            max_keyword_len=keyword,
        )

    def num_examples(self, split: str) -> int | None:
        return self.native.num_examples(split)

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        native = self.native.episodes(split, index)
        limits = self.limits
        # The first segment opens the dialogue; the later ones follow an answer.
        first = np.zeros(native.segment_len.shape, np.int64)
        first[:, 1:] = REPLY_START
        first[:, 0] = EPISODE_START
        segments, segment_len = self.to_ids(native.segments, native.segment_len, limits.max_segment_len, first)
        references, reference_len = self.to_ids(native.references, native.reference_len, limits.max_reference_len)
        keywords, keyword_len = self.to_ids(native.keywords, native.keyword_len, limits.max_keyword_len)
        return replace(
            native,
            segments=segments,
            segment_len=segment_len,
            references=references,
            reference_len=reference_len,
            keywords=keywords,
            keyword_len=keyword_len,
        )

    def to_ids(
        self, tokens: np.ndarray, lengths: np.ndarray, width: int, start: int | np.ndarray = TURN_START
    ) -> tuple[np.ndarray, np.ndarray]:
        """Native ids (..., W) with lengths (...) -> Hugging Face ids (..., width) and their lengths.

        ``start`` (an int or one per sequence, shaped like ``lengths``) is the class of what precedes
        each sequence: a reply (``TURN_START``), nothing (``EPISODE_START``) or an answer (``REPLY_START``).
        """
        lead, w = tokens.shape[:-1], tokens.shape[-1]
        flat, flat_len = tokens.reshape(-1, w), lengths.reshape(-1)
        valid = np.arange(w)[None, :] < flat_len[:, None]
        ids = np.where(valid, flat, self.native.tokenizer.pad_id)
        if self.classes > 1:
            before = np.empty_like(ids)
            before[:, 0] = np.broadcast_to(np.asarray(start, np.int64), lengths.shape).reshape(-1)
            before[:, 1:] = np.where(self._turn_opener[ids[:, :-1]], TURN_START, AFTER_WORD)
            ids = before * self.native.tokenizer.vocab_size + ids
        piece_len = np.where(valid, self.piece_len[ids], 0)
        out, out_len = concat_ragged(
            [(self.pieces[ids[:, j]], piece_len[:, j]) for j in range(w)], self.tokenizer.pad_id
        )
        if len(out_len) and int(out_len.max()) > width:
            raise ValueError(f"a sequence took {int(out_len.max())} tokens, more than the limit {width}")
        out = np.pad(out[:, :width], ((0, 0), (0, max(0, width - out.shape[1]))), constant_values=self.tokenizer.pad_id)
        return out.reshape(*lead, width), out_len.reshape(lead)

    def to_native(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hugging Face ids (..., W) -> the task's own ids of the same text, right-padded to the longest."""
        lead, w = tokens.shape[:-1], tokens.shape[-1]
        flat, flat_len = tokens.reshape(-1, w), lengths.reshape(-1)
        encoded = [self._native_ids(row[:n].tobytes()) for row, n in zip(flat, flat_len)]
        width = max([len(e) for e in encoded] + [1])
        out = np.full((len(encoded), width), self.native.tokenizer.pad_id, np.int64)
        for i, ids in enumerate(encoded):
            out[i, : len(ids)] = ids
        return out.reshape(*lead, width), np.array([len(e) for e in encoded], np.int64).reshape(lead)

    def _native_ids(self, key: bytes) -> list[int]:
        """The task tokenizer's ids of the text one sequence of ids spells (remembered: answers repeat)."""
        ids = self._known.get(key)
        if ids is None:
            if len(self._known) >= 200_000:
                self._known.clear()
            text = self.tokenizer.decode(np.frombuffer(key, np.int64), skip_special=True).strip()
            ids = self._known[key] = _encode_leniently(self.native.tokenizer, text)
        return ids

    def resolve_reward(self, reward: str | TextReward | Reward) -> Reward:
        """The task's reward, applied to the text of the agent's answers read in the task's own vocabulary."""
        if isinstance(reward, str) and ":" in reward:
            raise ValueError(
                f"reward={reward!r} is a plugin reward (such as a learned reward model) that reads the env's own "
                "token ids; an env speaking a Hugging Face tokenizer's cannot use it (drop tokenizer= or use a "
                "named reward)"
            )
        return NativeReward(self, resolve_reward(reward, self.native.tokenizer))


def plain_pieces(native, tokenizer: HFTokenizer) -> list[list[int]]:
    """Each native token's ids: its text (after a space in word vocabularies), a marker's own token or text."""
    prefix = " " if getattr(native, "joiner", " ") == " " else ""
    specials = {getattr(native, name, None): marker for name, marker in SPECIAL_ID_ATTRIBUTES.items()}
    pieces: list[list[int]] = []
    for i in range(native.vocab_size):
        if i == native.pad_id:
            pieces.append([])
        elif i in specials:
            pieces.append(tokenizer.marker(specials[i]))
        else:
            pieces.append(tokenizer.encode(prefix + native.id_to_token(i)))
    return pieces


def chat_pieces(native, tokenizer: HFTokenizer) -> list[list[list[int]]]:
    """Each native token's ids for each class of what precedes it, in the tokenizer's chat template.

    The dialogue ``<bos> context <sep> <user> question <agent> answer <eos> <user> question <agent>``
    becomes ``opening context next_user question assistant answer end_of_turn after_answer question
    assistant``: the opening where the episode starts, a new user turn at ``<sep>`` (or ``<user>``
    after words), the assistant header at ``<agent>``, the user header after an answer; a word
    right after a header has no leading space.
    """
    chat = tokenizer.chat
    encode = tokenizer.encode
    prefix = " " if getattr(native, "joiner", " ") == " " else ""
    role = {getattr(native, name, None): name for name in ("bos_id", "sep_id", "user_id", "agent_id", "eos_id")}
    classes: list[list[list[int]]] = [[], [], [], []]
    for i in range(native.vocab_size):
        name = role.get(i)
        if i == native.pad_id:
            texts = ("", "", "", "")
        elif name == "eos_id":
            for c in classes:
                c.append([chat.end_of_turn])
            continue
        elif name == "agent_id":
            texts = (chat.assistant, chat.assistant, chat.opening + chat.assistant, chat.after_answer + chat.assistant)
        elif name is not None:  # <bos>, <sep>, <user>: they open a user turn, or none right after another
            texts = (chat.next_user, "", chat.opening, chat.after_answer)
        else:
            word = "?" if i == getattr(native, "unk_id", None) else native.id_to_token(i)
            texts = (prefix + word, word, chat.opening + word, chat.after_answer + word)
        for c, text in zip(classes, texts):
            c.append(encode(text) if text else [])
    return classes


class NativeReward:
    """A reward of the native task applied to a re-tokenized env's answers, read back as native ids."""

    needs_dialogue = False  # the dialogue is in the env's ids, which the native reward cannot read

    def __init__(self, task: RetokenizedTask, inner: BatchReward | Reward) -> None:
        if needs_dialogue(inner):
            raise ValueError(
                "this reward reads the dialogue in the env's own ids; an env speaking a Hugging Face tokenizer's "
                "cannot use it (drop tokenizer= or use a reward of the answers)"
            )
        self.task, self.inner = task, inner
        self.judges_correctness = judges_correctness(inner)

    def __call__(self, batch: AnswerBatch) -> np.ndarray:
        to_native = self.task.to_native
        response, response_len = to_native(batch.response, batch.response_len)
        reference, reference_len = to_native(batch.reference, batch.reference_len)
        keywords, keyword_len = to_native(batch.keywords, batch.keyword_len)
        return self.inner(
            AnswerBatch(response, response_len, batch.ended, reference, reference_len, keywords, keyword_len)
        )


class InteractiveRetokenizedTask(RetokenizedTask, InteractiveTask):
    """A re-tokenized interactive task: the agent's answers reach the native task as its own ids."""

    def respond(
        self, split: str, index: np.ndarray, answers: np.ndarray, answer_len: np.ndarray, turn: np.ndarray
    ) -> Reply:
        native_answers, native_len = self.to_native(answers, answer_len)
        reply = self.native.respond(split, index, native_answers, native_len, turn)
        segment, segment_len = self.to_ids(reply.segment, reply.segment_len, self.limits.max_segment_len, REPLY_START)
        reference, reference_len = self.to_ids(reply.reference, reply.reference_len, self.limits.max_reference_len)
        return replace(
            reply, segment=segment, segment_len=segment_len, reference=reference, reference_len=reference_len
        )


class AdaptiveRetokenizedTask(RetokenizedTask, AdaptiveTask):
    """A re-tokenized adaptive task: the native task sees every result and restarts with the env."""

    def observe_answers(self, correct: np.ndarray, tags: np.ndarray) -> bool:
        return self.native.observe_answers(correct, tags)

    def restart(self) -> None:
        self.native.restart()


class InteractiveAdaptiveRetokenizedTask(InteractiveRetokenizedTask, AdaptiveRetokenizedTask):
    """A re-tokenized task that is both interactive and adaptive."""


_FORWARDING = {
    (False, False): RetokenizedTask,
    (True, False): InteractiveRetokenizedTask,
    (False, True): AdaptiveRetokenizedTask,
    (True, True): InteractiveAdaptiveRetokenizedTask,
}


def _encode_leniently(tokenizer, text: str) -> list[int]:
    """The task tokenizer's ids of ``text``; words it does not know become its unknown token (or are dropped)."""
    try:
        return list(tokenizer.encode(text))
    except ValueError:
        unk = getattr(tokenizer, "unk_id", None)
        ids = []
        for word in text.split():
            try:
                ids += list(tokenizer.encode(word))
            except ValueError:
                ids += [] if unk is None else [unk]
        return ids
