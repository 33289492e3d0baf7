"""A fixed, seeded lookup table from questions to answers: the task behind ``DialogQA-Toy-v0``.

The vocabulary is tiny and the optimum is known (every answer right), so any agent, including
Stable-Baselines3's MLP on one-hot observations, can be checked against it. Both splits ask the
same table: the task measures learning a mapping, not generalisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dialog_gym.episodes import EpisodeLimits, Episodes
from dialog_gym.tasks.arguments import check_int
from dialog_gym.tasks.base import check_split

TOY_SPECIALS = ("<pad>", "<eos>", "<agent>")
MAX_FULL_TABLE = 2**20  # the most questions a table holds (n_questions=0 enumerates every one)
MAX_VOCAB_SIZE = 2**16
MAX_TEXT_LEN = 64  # tokens of a question or an answer
MAX_TABLE_CELLS = 2**25  # token slots of the question table (256 MiB of int64)
DEFAULT_QUESTIONS = 32  # or every possible question, when a small vocabulary has fewer


class ToyTokenizer:
    """The toy vocabulary: three special tokens and content tokens named ``w0``, ``w1``, ..."""

    pad_id, eos_id, agent_id = 0, 1, 2
    bos_id = sep_id = unk_id = user_id = None

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = check_int("vocab_size", vocab_size, len(TOY_SPECIALS) + 1, MAX_VOCAB_SIZE)
        self.tokens = list(TOY_SPECIALS) + [f"w{i}" for i in range(vocab_size - len(TOY_SPECIALS))]
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    def encode(self, text: str) -> list[int]:
        """Ids of the whitespace-separated tokens of ``text``; an unknown token is an error."""
        try:
            return [self._ids[token] for token in text.split()]
        except KeyError as error:
            raise ValueError(f"{error.args[0]!r} is not a token of this toy vocabulary") from None

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """The tokens of ``ids`` joined by spaces; ``skip_special`` drops the special tokens."""
        first = len(TOY_SPECIALS) if skip_special else 0
        return " ".join(self.tokens[int(i)] for i in ids if int(i) >= first)

    def id_to_token(self, i: int) -> str:
        return self.tokens[int(i)]

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)


class ToyLookupTask:
    """``n_questions`` questions of ``question_len`` tokens, each with a fixed ``answer_len``-token answer.

    An episode shows ``question <agent>``; the agent answers and closes with EOS. ``n_questions``
    defaults to 32, or to every possible question when fewer exist; 0 asks for all of them.
    """

    default_reward = "match"
    filler_ids: tuple[int, ...] = ()

    def __init__(
        self,
        vocab_size: int = 16,
        n_questions: int | None = None,
        question_len: int = 2,
        answer_len: int = 3,
        table_seed: int = 0,
    ) -> None:
        vocab_size = check_int(
            "vocab_size",
            vocab_size,
            len(TOY_SPECIALS) + 1,
            MAX_VOCAB_SIZE,
            "3 special tokens and at least one content token",
        )
        question_len = check_int("question_len", question_len, 1, MAX_TEXT_LEN)
        answer_len = check_int("answer_len", answer_len, 1, MAX_TEXT_LEN)
        table_seed = check_int("table_seed", table_seed, 0, 2**64 - 1)
        content = vocab_size - len(TOY_SPECIALS)
        possible = content**question_len
        if n_questions is None:
            n_questions = min(DEFAULT_QUESTIONS, possible)
        n_questions = check_int("n_questions", n_questions, 0, MAX_FULL_TABLE, "0 asks for every possible question")
        if n_questions > possible:
            raise ValueError(
                f"n_questions={n_questions} is more than the {possible} distinct questions of {question_len} "
                f"tokens over {content} content tokens; lower n_questions or raise vocab_size"
            )
        if n_questions == 0 and possible > MAX_FULL_TABLE:
            raise ValueError(
                f"n_questions=0 asks for all {possible} possible questions, more than {MAX_FULL_TABLE}; "
                f"give n_questions explicitly"
            )
        cells = (n_questions or possible) * (question_len + 1 + 2 * answer_len)
        if cells > MAX_TABLE_CELLS:
            raise ValueError(
                f"{n_questions or possible} questions of {question_len} tokens with {answer_len}-token answers need "
                f"{cells} table slots, more than {MAX_TABLE_CELLS}; lower n_questions, question_len or answer_len"
            )
        self.vocab_size, self.question_len, self.answer_len = vocab_size, question_len, answer_len
        self.tokenizer = ToyTokenizer(vocab_size)
        rng = np.random.default_rng(table_seed)
        questions = _draw_questions(rng, content, question_len, n_questions or possible)
        first = len(TOY_SPECIALS)
        self.questions = questions + first  # (n, question_len) token ids
        self.answers = rng.integers(first, vocab_size, size=(len(questions), answer_len))
        self.limits = EpisodeLimits(
            max_turns=1,
            max_segment_len=question_len + 1,
            max_dialogue_len=question_len + 1,
            max_question_len=question_len + 1,
            max_reference_len=answer_len,
            max_keywords=1,
            max_keyword_len=answer_len,
        )
        table = Episodes.empty(len(questions), self.limits, self.tokenizer.pad_id)
        table.segments[:, 0, :question_len] = self.questions
        table.segments[:, 0, question_len] = self.tokenizer.agent_id
        table.segment_len[:] = question_len + 1
        table.references[:, 0] = self.answers
        table.reference_len[:] = answer_len
        table.keywords[:, 0, 0] = self.answers
        table.keyword_len[:] = answer_len
        table.n_turns[:] = 1
        self.table = table

    @property
    def n_questions(self) -> int:
        return len(self.questions)

    def num_examples(self, split: str) -> int | None:
        check_split(split)
        return self.n_questions

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        check_split(split)
        index = np.asarray(index, np.uint64)
        batch = self.table.take((index % np.uint64(self.n_questions)).astype(np.int64))
        batch.index = index.copy()
        return batch


def _draw_questions(rng: np.random.Generator, content: int, length: int, count: int) -> np.ndarray:
    """``count`` distinct token tuples over ``content`` symbols, as content indices (count, length)."""
    possible = content**length
    if possible <= MAX_FULL_TABLE:
        codes = rng.choice(possible, size=count, replace=False) if count < possible else np.arange(possible)
        digits = content ** np.arange(length - 1, -1, -1)
        return (codes[:, None] // digits) % content
    seen: set[tuple[int, ...]] = set()
    rows: list[tuple[int, ...]] = []
    while len(rows) < count:
        for row in map(tuple, rng.integers(0, content, size=(count, length)).tolist()):
            if row not in seen and len(rows) < count:
                seen.add(row)
                rows.append(row)
    return np.array(rows, np.int64)
