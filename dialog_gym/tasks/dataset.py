"""Episodes from a user's JSONL file: ``gym.make("DialogQA-v0", dataset="path.jsonl")``.

Each line is one episode, either a single question::

    {"context": "...", "question": "...", "answer": "...", "keywords": ["..."]}

or a conversation about one context::

    {"context": "...", "turns": [{"question": "...", "answer": "...", "keywords": ["..."]}, ...]}

``keywords`` is optional (default: the answer itself); each keyword must occur in its answer. A
line may say ``"split": "train"`` or ``"test"``; when no line does, a stable hash of each line's
content puts one line in five into ``test``. Every malformed line is reported with its number,
and so is a field the format does not name. A line may hold at most ``MAX_TURNS`` turns, and its
texts at most ``MAX_CONTEXT_TOKENS`` / ``MAX_QUESTION_TOKENS`` / ``MAX_ANSWER_TOKENS`` tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from dialog_gym.episodes import SPLITS, EpisodeLimits, Episodes, pad_sequences
from dialog_gym.jsonl import DatasetError, brief, checked_path, malformed, read_objects, unknown_fields
from dialog_gym.tasks.base import check_split
from dialog_gym.tokenizers import CharTokenizer, Tokenizer, WordTokenizer

__all__ = ["DatasetError", "Example", "ExampleTask", "JsonlTask", "Turn", "read_jsonl"]

FILLER = "the answer is"
TEST_HASH_MODULUS = 5
SINGLE_FIELDS = ("context", "question", "answer", "keywords", "split")
LINE_FIELDS = ("context", "turns", "split")
TURN_FIELDS = ("question", "answer", "keywords")
# What one line may hold, so that a single huge line cannot set a window of millions of tokens.
MAX_TURNS = 64
MAX_KEYWORDS = 32
MAX_CONTEXT_TOKENS = 4096
MAX_QUESTION_TOKENS = 1024
MAX_ANSWER_TOKENS = 1024
MAX_DIALOGUE_TOKENS = 8192  # context, questions and answers of one line together
MAX_TABLE_CELLS = 1 << 27  # token slots of the padded episode table (1 GiB of int64)


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str
    keywords: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """One line of the file: a context and the turns asked about it."""

    context: str
    turns: tuple[Turn, ...]
    split: str | None
    line: int


def read_jsonl(path: str | os.PathLike[str]) -> list[Example]:
    """Parse and validate every line of ``path``; raise ``DatasetError`` listing all bad lines."""
    path = checked_path(path, "dataset")
    records, problems = read_objects(path, "dataset")
    examples = []
    for number, record in records:
        try:
            examples.append(_parse_record(record, number))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if problems:
        raise DatasetError(malformed(path, problems))
    if not examples:
        raise DatasetError(f"{path}: the file holds no examples; expected one JSON object per line")
    return examples


def _parse_record(record: dict, number: int) -> Example:
    if "turns" in record and ("question" in record or "answer" in record):
        raise ValueError("give either 'question'/'answer' or 'turns', not both")
    unknown = unknown_fields(record, LINE_FIELDS if "turns" in record else SINGLE_FIELDS)
    if unknown is not None:
        raise ValueError(unknown)
    context = _text(record, "context")
    if "turns" in record:
        turns = record["turns"]
        if not isinstance(turns, list) or not turns:
            raise ValueError("'turns' must be a non-empty list of {question, answer, keywords?} objects")
        if len(turns) > MAX_TURNS:
            raise ValueError(f"'turns' holds {len(turns)} turns, more than {MAX_TURNS}; split the conversation")
        parsed = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise ValueError(f"turn {i} must be an object, got {type(turn).__name__}")
            try:
                unknown = unknown_fields(turn, TURN_FIELDS)
                if unknown is not None:
                    raise ValueError(unknown)
                parsed.append(_turn(turn))
            except ValueError as error:
                raise ValueError(f"turn {i}: {error}") from None
    else:
        parsed = [_turn(record)]
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"'split' must be one of {list(SPLITS)}, got {brief(split)}")
    return Example(context=context, turns=tuple(parsed), split=split, line=number)


def _turn(record: dict) -> Turn:
    question, answer = _text(record, "question"), _text(record, "answer")
    keywords = record.get("keywords", [answer])
    if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise ValueError(f"'keywords' must be a non-empty list of non-empty strings, got {brief(keywords)}")
    if len(keywords) > MAX_KEYWORDS:
        raise ValueError(f"'keywords' holds {len(keywords)} keywords, more than {MAX_KEYWORDS}; keep the telling ones")
    return Turn(question=question, answer=answer, keywords=tuple(keywords))


def _text(record: dict, field: str) -> str:
    if field not in record:
        raise ValueError(f"missing field {field!r}")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {field!r} must be a non-empty string, got {brief(value)}")
    return value


def _stable_split(example: Example) -> str:
    content = json.dumps([example.context, [(t.question, t.answer) for t in example.turns]], ensure_ascii=False)
    digest = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:8], "little")
    return "test" if digest % TEST_HASH_MODULUS == 0 else "train"


@dataclass
class _Pieces:
    """The token ids of one example's texts, before speaker markers are added."""

    context: list[int]
    questions: list[list[int]]
    answers: list[list[int]]
    keywords: list[list[list[int]]]


class ExampleTask:
    """Episodes from a list of examples (contexts with their turns), split and tokenized.

    ``source`` names where the examples came from in error messages. Examples without a split
    go to ``test`` by a stable hash of their content (one in five) unless some example has one.
    Every example is checked (lengths, keywords) before the episode tables are allocated.
    """

    default_reward = "keyword"

    def __init__(self, examples: list[Example], tokenizer: str | Tokenizer = "word", source: str = "examples") -> None:
        self.source = source
        self.tokenizer = _build_tokenizer(tokenizer, examples)
        self.filler_ids = tuple(self.tokenizer.encode(FILLER))
        problems, limits = [], None
        for example in examples:
            pieces = self._pieces(example)
            found = self._problems(example, pieces)
            problems += [f"line {example.line}: {p}" for p in found]
            if not found:
                limits = _widen(limits, self._assemble(pieces))
        if problems:
            raise DatasetError(malformed(self.source, problems))
        if limits is None:
            raise DatasetError(f"{self.source}: holds no examples; expected at least one")
        self.limits = limits
        _check_table_size(self.source, len(examples), limits)
        explicit = any(e.split is not None for e in examples)
        self.examples = {
            split: [e for e in examples if (e.split or ("train" if explicit else _stable_split(e))) == split]
            for split in SPLITS
        }
        self.tables = {split: self._table(self.examples[split]) for split in SPLITS}

    def _pieces(self, example: Example) -> _Pieces:
        encode = self.tokenizer.encode
        return _Pieces(
            context=encode(example.context),
            questions=[encode(t.question) for t in example.turns],
            answers=[encode(t.answer) for t in example.turns],
            keywords=[[encode(k) for k in t.keywords] for t in example.turns],
        )

    def _problems(self, example: Example, pieces: _Pieces) -> list[str]:
        """Texts longer than an episode may show, and keywords that are not a run of their answer's
        tokens (the reference would score -1)."""
        context = len(pieces.context)
        problems = [] if context <= MAX_CONTEXT_TOKENS else [_too_long("the context", context, MAX_CONTEXT_TOKENS)]
        total = context + sum(map(len, pieces.questions)) + sum(map(len, pieces.answers))
        for t, (turn, question, answer) in enumerate(zip(example.turns, pieces.questions, pieces.answers)):
            for name, ids, most in (("question", question, MAX_QUESTION_TOKENS), ("answer", answer, MAX_ANSWER_TOKENS)):
                if len(ids) > most:
                    problems.append(f"turn {t}: " + _too_long(f"the {name}", len(ids), most))
            if len(answer) > MAX_ANSWER_TOKENS:
                continue
            for keyword, ids in zip(turn.keywords, pieces.keywords[t]):
                if not any(answer[i : i + len(ids)] == ids for i in range(len(answer) - len(ids) + 1)):
                    problems.append(
                        f"turn {t}: keyword {brief(keyword)} does not occur in the answer {brief(turn.answer)}"
                    )
        if total > MAX_DIALOGUE_TOKENS and not problems:
            problems.append(
                _too_long("the whole dialogue (context, questions and answers)", total, MAX_DIALOGUE_TOKENS)
            )
        return problems

    def _assemble(self, pieces: _Pieces) -> tuple[list[list[int]], list[list[int]], list[list[list[int]]], int]:
        """The user segments (with speaker markers), answers, keywords and first question length."""
        tok = self.tokenizer
        questions = [_present(tok.user_id, *q, tok.agent_id) for q in pieces.questions]
        segments = [_present(tok.bos_id, *pieces.context, tok.sep_id) + questions[0], *questions[1:]]
        return segments, pieces.answers, pieces.keywords, len(questions[0])

    def _table(self, examples: list[Example]) -> Episodes:
        limits, pad = self.limits, self.tokenizer.pad_id
        table = Episodes.empty(len(examples), limits, pad)
        for row, example in enumerate(examples):
            segments, answers, keywords, _ = self._assemble(self._pieces(example))
            table.segments[row], table.segment_len[row] = _padded(
                segments, limits.max_turns, limits.max_segment_len, pad
            )
            table.references[row], table.reference_len[row] = _padded(
                answers, limits.max_turns, limits.max_reference_len, pad
            )
            for t, turn_keywords in enumerate(keywords):
                table.keywords[row, t], table.keyword_len[row, t] = _padded(
                    turn_keywords, limits.max_keywords, limits.max_keyword_len, pad
                )
            table.n_turns[row] = len(segments)
        table.index[:] = np.arange(len(examples), dtype=np.uint64)
        return table

    def num_examples(self, split: str) -> int | None:
        return len(self.examples[check_split(split)])

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        table = self.tables[check_split(split)]
        index = np.asarray(index, np.uint64)
        batch = table.take((index % np.uint64(len(table))).astype(np.int64))
        batch.index = index.copy()
        return batch


class JsonlTask(ExampleTask):
    """Episodes read from a JSONL file; see the module docstring for the format."""

    def __init__(self, path: str | os.PathLike[str], tokenizer: str | Tokenizer = "word") -> None:
        self.path = checked_path(path, "dataset")
        super().__init__(read_jsonl(self.path), tokenizer, source=self.path)


def _present(*ids: int | None) -> list[int]:
    """The ids that exist in the tokenizer (a Hugging Face vocabulary may lack some markers)."""
    return [i for i in ids if i is not None]


def _padded(sequences: list[list[int]], rows: int, width: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    tokens, lengths = pad_sequences(sequences, width, pad)
    out, out_len = np.full((rows, width), pad, np.int64), np.zeros(rows, np.int64)
    out[: len(sequences)], out_len[: len(sequences)] = tokens, lengths
    return out, out_len


def _build_tokenizer(tokenizer: object, examples: list[Example]) -> Tokenizer:
    """``"word"`` or ``"char"``: a vocabulary built from the examples' text; a Tokenizer is used as it is."""
    if isinstance(tokenizer, str):
        kinds = {"word": WordTokenizer, "char": CharTokenizer}
        if tokenizer not in kinds:
            raise ValueError(f"unknown tokenizer {tokenizer!r}; expected 'word', 'char' or a Tokenizer object")
        texts = [FILLER] + [e.context for e in examples]
        texts += [x for e in examples for t in e.turns for x in (t.question, t.answer, *t.keywords)]
        return kinds[tokenizer].from_corpus(texts)
    if not isinstance(tokenizer, Tokenizer):
        raise TypeError(
            f"tokenizer must be 'word', 'char' or a Tokenizer object, got {brief(tokenizer)} ({type(tokenizer).__name__})"
        )
    return tokenizer


def _too_long(what: str, length: int, most: int) -> str:
    return f"{what} is {length} tokens long, more than the {most} an episode may show; shorten it"


def _widen(limits: EpisodeLimits | None, encoded: tuple) -> EpisodeLimits:
    """``limits`` grown to hold one more encoded example."""
    segments, answers, keywords, first_question = encoded
    sizes = EpisodeLimits(
        max_turns=len(segments),
        max_segment_len=max(len(x) for x in segments),
        max_dialogue_len=sum(len(x) for x in segments),
        max_question_len=max([first_question, *(len(x) for x in segments[1:])]),
        max_reference_len=max(len(x) for x in answers),
        max_keywords=max(len(k) for k in keywords),
        max_keyword_len=max(len(x) for k in keywords for x in k),
    )
    if limits is None:
        return sizes
    return EpisodeLimits(**{f: max(getattr(limits, f), getattr(sizes, f)) for f in EpisodeLimits.__dataclass_fields__})


def _check_table_size(source: str, rows: int, limits: EpisodeLimits) -> None:
    """Refuse, before allocating, an episode table of more than ``MAX_TABLE_CELLS`` token slots."""
    per_turn = limits.max_segment_len + limits.max_reference_len + limits.max_keywords * limits.max_keyword_len
    cells = rows * limits.max_turns * per_turn
    if cells > MAX_TABLE_CELLS:
        raise DatasetError(
            f"{source}: {rows} examples padded to {limits.max_turns} turns of {per_turn} tokens need {cells} token "
            f"slots, more than {MAX_TABLE_CELLS}; use fewer examples or shorten the longest contexts"
        )
