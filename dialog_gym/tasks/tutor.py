"""Arithmetic and short word problems at chosen levels: the task behind ``Tutor-v0``.

A tutoring session asks ``problems`` problems in turn ("<user>27+45=<agent>" -> "72"), character by
character, so the agent writes the digits of its answer one token at a time. Levels:

=====  ==================================================================================
level  problems
=====  ==================================================================================
1      one-digit addition (``3+4=``)
2      two-digit addition and subtraction (``47-18=``, never negative)
3      the times tables up to 12 (``7*8=``)
4      three-digit addition and subtraction, two-digit times one-digit (``64*7=``)
5      word problems ("tom has 12 pens and gets 5 more . how many pens now ?")
=====  ==================================================================================

A problem belongs to the ``test`` split exactly when a hash of its arithmetic (operation and
operands, in either order where the operation commutes) falls in a fixed fifth of the hash
range, so no test problem is ever asked in training, however it is worded or ordered.

With ``curriculum=True`` the level rises by one each time the agent answers
``curriculum_threshold`` of the last ``curriculum_window`` problems of its level right. The
curriculum adapts on the train split only, restarts when the env is seeded, and is shared by
the rows of a vector env (so they no longer play what single envs with the same seeds would).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import EpisodeLimits, Episodes, concat_ragged
from dialog_gym.tasks.arguments import check_flag, check_int, check_number
from dialog_gym.tasks.base import AdaptiveTask, check_split, keys_in_split
from dialog_gym.tokenizers import CharTokenizer

ADD, SUB, MUL = range(3)
SYMBOLS = "+-*"
MAX_LEVEL = 5
NUMBER_WIDTH = 4  # digits of the largest number any level writes (999 + 999 = 1998)
MAX_ATTEMPTS = 10_000  # redraws of a problem until it lands in the asked split
NAMES = ("anna", "ben", "kate", "leo", "mary", "omar", "rita", "sam", "tom", "zoe")
ITEMS = ("apples", "books", "cards", "coins", "cups", "pens", "shells", "stamps")
WORD_PROBLEMS = {
    ADD: ("{name} has {a} {item} and gets {b} more . how many {item} now ?"),
    SUB: ("{name} has {a} {item} and gives away {b} . how many {item} are left ?"),
    MUL: ("{name} buys {a} boxes of {b} {item} . how many {item} in all ?"),
}
FILLER = "it is "
TEST_HASH_MODULUS = 5  # one problem in five belongs to the test split
PROBLEM_STREAM, DRAW_STREAM = range(2)


def _operand_ranges(level: int) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
    """For each operation the level asks, the inclusive ranges of its two operands."""
    if level == 1:
        return {ADD: ((0, 9), (0, 9))}
    if level == 2:
        return {ADD: ((10, 99), (10, 99)), SUB: ((10, 99), (10, 99))}
    if level == 3:
        return {MUL: ((2, 12), (2, 12))}
    if level == 4:
        return {ADD: ((100, 999), (100, 999)), SUB: ((100, 999), (100, 999)), MUL: ((10, 99), (2, 9))}
    return {ADD: ((2, 49), (2, 49)), SUB: ((2, 49), (2, 49)), MUL: ((2, 9), (2, 9))}


def tutor_corpus() -> list[str]:
    """Every character the generator can write, for building the character tokenizer."""
    return ["0123456789", SYMBOLS, "=", FILLER, *NAMES, *ITEMS, *WORD_PROBLEMS.values()]


class TutorTask(AdaptiveTask):
    """Arithmetic tutoring; see the module docstring. ``level`` 1-5, ``problems`` per session."""

    default_reward = "digits"

    def __init__(
        self,
        level: int = 1,
        problems: int = 1,
        curriculum: bool = False,
        max_level: int = 5,
        curriculum_window: int = 256,
        curriculum_threshold: float = 0.9,
    ) -> None:
        level = check_int("level", level, 1, MAX_LEVEL)
        curriculum = check_flag("curriculum", curriculum)
        # Without a curriculum max_level is unused, but a bad value is still a mistake to name.
        max_level = check_int("max_level", max_level, level if curriculum else 1, MAX_LEVEL)
        problems = check_int("problems", problems, 1, 16)
        curriculum_window = check_int("curriculum_window", curriculum_window, 1, 1 << 20)
        curriculum_threshold = check_number("curriculum_threshold", curriculum_threshold, 0.0, 1.0, open_low=True)
        self.level, self.start_level, self.problems, self.curriculum = level, level, problems, curriculum
        self.max_level = max_level if curriculum else level
        self.curriculum_threshold = float(curriculum_threshold)
        self.recent: deque[bool] = deque(maxlen=curriculum_window)
        self.tokenizer = CharTokenizer.from_corpus(tutor_corpus())
        self.filler_ids = tuple(self.tokenizer.encode(FILLER))
        self._char = {token: i for i, token in enumerate(self.tokenizer.tokens)}
        self._digits = np.array([self._char[d] for d in "0123456789"], np.int64)
        longest = max(self._problem_len(lv) for lv in range(level, self.max_level + 1))
        self.limits = EpisodeLimits(
            max_turns=problems,
            max_segment_len=longest + 3,  # <bos> <user> problem <agent>
            max_dialogue_len=1 + problems * (longest + 2),
            max_question_len=longest + 2,
            max_reference_len=max(self._answer_len(lv) for lv in range(level, self.max_level + 1)),
            max_keywords=1,
            max_keyword_len=max(self._answer_len(lv) for lv in range(level, self.max_level + 1)),
        )

    def num_examples(self, split: str) -> int | None:
        check_split(split)
        return None

    # -- the curriculum -------------------------------------------------------------------------

    def observe_answers(self, correct: np.ndarray, levels: np.ndarray) -> bool:
        """Record finished answers to problems of the current level; returns True when the level
        rose (the problems generated ahead are then stale)."""
        if not self.curriculum or self.level >= self.max_level:
            return False
        self.recent.extend(np.asarray(correct)[np.asarray(levels) == self.level].tolist())
        if len(self.recent) == self.recent.maxlen and np.mean(self.recent) >= self.curriculum_threshold:
            self.level += 1
            self.recent.clear()
            return True
        return False

    def restart(self) -> None:
        """Back to the starting level with no answers recorded (the env was seeded)."""
        self.level = self.start_level
        self.recent.clear()

    # -- problems -------------------------------------------------------------------------------

    @staticmethod
    def _problem_len(level: int) -> int:
        ranges = _operand_ranges(level)
        widths = {op: (len(str(a[1])), len(str(b[1]))) for op, (a, b) in ranges.items()}
        if level < 5:
            return max(wa + wb + 2 for wa, wb in widths.values())
        name, item = max(NAMES, key=len), max(ITEMS, key=len)
        return max(
            len(WORD_PROBLEMS[op].format(name=name, item=item, a="9" * wa, b="9" * wb))
            for op, (wa, wb) in widths.items()
        )

    @staticmethod
    def _answer_len(level: int) -> int:
        ranges = _operand_ranges(level)
        largest = {ADD: lambda a, b: a + b, SUB: lambda a, b: a, MUL: lambda a, b: a * b}
        return max(len(str(largest[op](a[1], b[1]))) for op, (a, b) in ranges.items())

    def _draw(self, keys: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Operation, operands and wording choice (name, item) of the problem behind each key."""
        ranges = _operand_ranges(level)
        ops = np.array(sorted(ranges))
        draws = rs.uniform(keys, DRAW_STREAM, 5)
        op = ops[np.minimum((draws[:, 0] * len(ops)).astype(np.int64), len(ops) - 1)]
        low = np.array([[ranges[o][0][0], ranges[o][1][0]] if o in ranges else [0, 0] for o in range(3)])
        high = np.array([[ranges[o][0][1], ranges[o][1][1]] if o in ranges else [0, 0] for o in range(3)])
        span = high[op] - low[op] + 1
        operands = low[op] + np.minimum((draws[:, 1:3] * span).astype(np.int64), span - 1)
        a, b = operands[:, 0], operands[:, 1]
        a, b = np.where(op == SUB, np.maximum(a, b), a), np.where(op == SUB, np.minimum(a, b), b)
        sizes = np.array([len(NAMES), len(ITEMS)])
        wording = np.minimum((draws[:, 3:5] * sizes).astype(np.int64), sizes - 1)
        return op, a, b, wording

    @staticmethod
    def in_test(op: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether each problem (by its arithmetic alone) belongs to the test split; ``a+b`` and
        ``b+a`` (and ``a*b`` and ``b*a``) are one problem, so they always share a split."""
        commutes = op != SUB
        low, high = np.where(commutes, np.minimum(a, b), a), np.where(commutes, np.maximum(a, b), b)
        return rs.hash_rows(np.stack([op, low, high], axis=1)) % np.uint64(TEST_HASH_MODULUS) == 0

    def problems_of(self, split: str, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The problem of each key, redrawn from derived keys until it lands in ``split``."""
        in_test = lambda k: self.in_test(*self._draw(k, self.level)[:3])  # noqa: E731
        op, a, b, wording = self._draw(keys_in_split(keys, split, in_test, limit=MAX_ATTEMPTS), self.level)
        return op, a, b, wording

    def _number(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Digit tokens of non-negative integers, left-aligned: (B, NUMBER_WIDTH) ids and (B,) lengths."""
        width = NUMBER_WIDTH
        lengths = np.maximum(1, np.floor(np.log10(np.maximum(values, 1))).astype(np.int64) + 1)
        power = 10 ** np.maximum(lengths[:, None] - 1 - np.arange(width)[None, :], 0)
        digits = (values[:, None] // power) % 10
        tokens = np.where(np.arange(width)[None, :] < lengths[:, None], self._digits[digits], self.tokenizer.pad_id)
        return tokens, lengths

    def _text(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Fixed strings chosen per row, as padded character ids."""
        ids = [[self._char[c] for c in text] for text in texts]
        width = max(1, max(len(x) for x in ids))
        out = np.full((len(ids), width), self.tokenizer.pad_id, np.int64)
        for i, x in enumerate(ids):
            out[i, : len(x)] = x
        return out, np.array([len(x) for x in ids], np.int64)

    def _question(
        self, op: np.ndarray, a: np.ndarray, b: np.ndarray, wording: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The problem text of each row as character ids: ``a+b=`` or a worded problem."""
        pad = self.tokenizer.pad_id
        if self.level < 5:
            symbol = np.array([self._char[s] for s in SYMBOLS])[op][:, None]
            equals = np.full((len(op), 1), self._char["="])
            ones = np.ones(len(op), np.int64)
            return concat_ragged([self._number(a), (symbol, ones), self._number(b), (equals, ones)], pad)
        pieces = []
        for template in WORD_PROBLEMS.values():
            # Templates are split at their fields; every row writes every template, and the row's
            # operation picks which one it keeps.
            parts = template.replace("{", "|{").replace("}", "}|").split("|")
            row_pieces = []
            for part in parts:
                if part == "{name}":
                    row_pieces.append(self._text([NAMES[i] for i in wording[:, 0]]))
                elif part == "{item}":
                    row_pieces.append(self._text([ITEMS[i] for i in wording[:, 1]]))
                elif part in ("{a}", "{b}"):
                    row_pieces.append(self._number(a if part == "{a}" else b))
                elif part:
                    row_pieces.append(self._text([part] * len(op)))
            pieces.append(concat_ragged(row_pieces, pad))
        width = max(tokens.shape[1] for tokens, _ in pieces)
        tokens = np.full((len(op), width), pad, np.int64)
        lengths = np.zeros(len(op), np.int64)
        for kind, (kind_tokens, kind_len) in enumerate(pieces):
            rows = op == kind
            tokens[rows, : kind_tokens.shape[1]] = kind_tokens[rows]
            lengths[rows] = kind_len[rows]
        return tokens, lengths

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        check_split(split)
        index = np.asarray(index, np.uint64)
        b, t = len(index), self.problems
        keys = rs.random_bits(index, PROBLEM_STREAM, t).reshape(-1)  # (B * T,) one key per problem
        op, x, y, wording = self.problems_of(split, keys)
        answer = np.where(op == ADD, x + y, np.where(op == SUB, x - y, x * y))
        question, question_len = self._question(op, x, y, wording)
        tok = self.tokenizer
        ones = np.ones(b * t, np.int64)
        opening = np.where(np.arange(t) == 0, 1, 0)[None, :].repeat(b, 0).reshape(-1)  # first problem only
        segment, segment_len = concat_ragged(
            [
                (np.full((b * t, 1), tok.bos_id), opening),
                (np.full((b * t, 1), tok.user_id), ones),
                (question, question_len),
                (np.full((b * t, 1), tok.agent_id), ones),
            ],
            tok.pad_id,
        )
        reference, reference_len = self._number(answer)
        limits = self.limits
        episodes = Episodes.empty(b, limits, tok.pad_id)
        assert segment_len.max() <= limits.max_segment_len, "a problem outgrew the task's limits"
        width = min(segment.shape[1], limits.max_segment_len)  # what lies beyond is padding
        episodes.segments[:, :, :width] = segment[:, :width].reshape(b, t, width)
        episodes.segment_len[:] = segment_len.reshape(b, t)
        answer_width = limits.max_reference_len
        episodes.references[:] = reference[:, :answer_width].reshape(b, t, answer_width)
        episodes.reference_len[:] = reference_len.reshape(b, t)
        episodes.keywords[:, :, 0, :] = episodes.references
        episodes.keyword_len[:, :, 0] = episodes.reference_len
        episodes.n_turns[:] = t
        episodes.index[:] = index
        episodes.tag[:] = self.level
        return episodes
