"""Episodes from a user's JSONL file: ``gym.make("DialogQA-v0", dataset="path.jsonl")``.

Each line is one episode, either a single question::

    {"context": "...", "question": "...", "answer": "...", "keywords": ["..."]}

or a conversation about one context::

    {"context": "...", "turns": [{"question": "...", "answer": "...", "keywords": ["..."]}, ...]}

``keywords`` is optional (default: the answer itself); each keyword must occur in its answer. A
line may say ``"split": "train"`` or ``"test"``; when no line does, a stable hash of each line's
content puts one line in five into ``test``. Every malformed line is reported with its number.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

import numpy as np

from dialog_gym.episodes import SPLITS, EpisodeLimits, Episodes, pad_sequences
from dialog_gym.tasks.base import check_split
from dialog_gym.tokenizers import CharTokenizer, Tokenizer, WordTokenizer

FILLER = "the answer is"
TEST_HASH_MODULUS = 5


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


class DatasetError(ValueError):
    """A dataset file that cannot be read; the message lists every problem with its line number."""


def read_jsonl(path: str | os.PathLike[str]) -> list[Example]:
    """Parse and validate every line of ``path``; raise ``DatasetError`` listing all bad lines."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"dataset file {path!r} does not exist; pass the path of a JSONL file")
    records, problems = jsonl_objects(path)
    examples = []
    for number, record in records:
        try:
            examples.append(_parse_record(record, number))
        except ValueError as error:
            problems.append(f"line {number}: {error}")
    if problems:
        shown = problems[:20] + ([f"... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise DatasetError(f"{path}: {len(problems)} malformed line(s):\n  " + "\n  ".join(shown))
    if not examples:
        raise DatasetError(f"{path}: the file holds no examples; expected one JSON object per line")
    return examples


def jsonl_objects(path: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """Every non-blank line of a UTF-8 JSONL file (a BOM allowed) as ``(line number, object)``, and a
    one-line problem for each line that is not UTF-8, not JSON or not a JSON object."""
    records, problems = [], []
    with open(path, "rb") as handle:
        for number, raw_bytes in enumerate(handle, start=1):
            try:
                raw = raw_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                problems.append(f"line {number}: not UTF-8 text ({error.reason} at byte {error.start})")
                continue
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as error:
                problems.append(f"line {number}: not valid JSON ({error.msg} at column {error.colno})")
                continue
            if not isinstance(record, dict):
                problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
                continue
            records.append((number, record))
    return records, problems


def _parse_record(record: dict, number: int) -> Example:
    context = _text(record, "context")
    if "turns" in record:
        if "question" in record or "answer" in record:
            raise ValueError("give either 'question'/'answer' or 'turns', not both")
        turns = record["turns"]
        if not isinstance(turns, list) or not turns:
            raise ValueError("'turns' must be a non-empty list of {question, answer, keywords?} objects")
        parsed = []
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise ValueError(f"turn {i} must be an object, got {type(turn).__name__}")
            try:
                parsed.append(_turn(turn))
            except ValueError as error:
                raise ValueError(f"turn {i}: {error}") from None
    else:
        parsed = [_turn(record)]
    split = record.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(f"'split' must be one of {list(SPLITS)}, got {split!r}")
    return Example(context=context, turns=tuple(parsed), split=split, line=number)


def _turn(record: dict) -> Turn:
    question, answer = _text(record, "question"), _text(record, "answer")
    keywords = record.get("keywords", [answer])
    if not isinstance(keywords, list) or not keywords or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise ValueError(f"'keywords' must be a non-empty list of non-empty strings, got {keywords!r}")
    return Turn(question=question, answer=answer, keywords=tuple(keywords))


def _text(record: dict, field: str) -> str:
    if field not in record:
        raise ValueError(f"missing field {field!r}")
    value = record[field]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"field {field!r} must be a non-empty string, got {value!r}")
    return value


def _stable_split(example: Example) -> str:
    content = json.dumps([example.context, [(t.question, t.answer) for t in example.turns]], ensure_ascii=False)
    digest = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:8], "little")
    return "test" if digest % TEST_HASH_MODULUS == 0 else "train"


class ExampleTask:
    """Episodes from a list of examples (contexts with their turns), split and tokenized.

    ``source`` names where the examples came from in error messages. Examples without a split
    go to ``test`` by a stable hash of their content (one in five) unless some example has one.
    """

    default_reward = "keyword"

    def __init__(self, examples: list[Example], tokenizer: str | Tokenizer = "word", source: str = "examples") -> None:
        self.source = source
        texts = (
            [FILLER]
            + [e.context for e in examples]
            + [x for e in examples for t in e.turns for x in (t.question, t.answer, *t.keywords)]
        )
        if tokenizer == "word":
            self.tokenizer: Tokenizer = WordTokenizer.from_corpus(texts)
        elif tokenizer == "char":
            self.tokenizer = CharTokenizer.from_corpus(texts)
        elif isinstance(tokenizer, str):
            raise ValueError(f"unknown tokenizer {tokenizer!r}; expected 'word', 'char' or a Tokenizer object")
        else:
            self.tokenizer = tokenizer
        self.filler_ids = tuple(self.tokenizer.encode(FILLER))
        problems = [f"line {e.line}: {p}" for e in examples for p in self._keyword_problems(e)]
        if problems:
            raise DatasetError(f"{self.source}: {len(problems)} malformed line(s):\n  " + "\n  ".join(problems[:20]))
        explicit = any(e.split is not None for e in examples)
        self.examples = {
            split: [e for e in examples if (e.split or ("train" if explicit else _stable_split(e))) == split]
            for split in SPLITS
        }
        encoded = {split: [self._encode(e) for e in chosen] for split, chosen in self.examples.items()}
        self.limits = _limits([x for split in SPLITS for x in encoded[split]])
        self.tables = {split: self._table(encoded[split]) for split in SPLITS}

    def _keyword_problems(self, example: Example) -> list[str]:
        """Keywords that are not a run of their answer's tokens (the reference would score -1)."""
        problems = []
        for t, turn in enumerate(example.turns):
            answer = self.tokenizer.encode(turn.answer)
            for keyword in turn.keywords:
                ids = self.tokenizer.encode(keyword)
                if not any(answer[i : i + len(ids)] == ids for i in range(len(answer) - len(ids) + 1)):
                    problems.append(f"turn {t}: keyword {keyword!r} does not occur in the answer {turn.answer!r}")
        return problems

    def _encode(self, example: Example) -> tuple[list[list[int]], list[list[int]], list[list[list[int]]], int]:
        tok = self.tokenizer
        questions = [_present(tok.user_id, *tok.encode(t.question), tok.agent_id) for t in example.turns]
        segments = [_present(tok.bos_id, *tok.encode(example.context), tok.sep_id) + questions[0], *questions[1:]]
        answers = [tok.encode(t.answer) for t in example.turns]
        keywords = [[tok.encode(k) for k in t.keywords] for t in example.turns]
        return segments, answers, keywords, len(questions[0])

    def _table(self, encoded: list) -> Episodes:
        limits, pad = self.limits, self.tokenizer.pad_id
        table = Episodes.empty(len(encoded), limits, pad)
        for row, (segments, answers, keywords, _) in enumerate(encoded):
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
        table.index[:] = np.arange(len(encoded), dtype=np.uint64)
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
        self.path = os.fspath(path)
        super().__init__(read_jsonl(path), tokenizer, source=self.path)


def _present(*ids: int | None) -> list[int]:
    """The ids that exist in the tokenizer (a Hugging Face vocabulary may lack some markers)."""
    return [i for i in ids if i is not None]


def _padded(sequences: list[list[int]], rows: int, width: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    tokens, lengths = pad_sequences(sequences, width, pad)
    out, out_len = np.full((rows, width), pad, np.int64), np.zeros(rows, np.int64)
    out[: len(sequences)], out_len[: len(sequences)] = tokens, lengths
    return out, out_len


def _limits(encoded: list) -> EpisodeLimits:
    return EpisodeLimits(
        max_turns=max(len(s) for s, _, _, _ in encoded),
        max_segment_len=max(len(x) for s, _, _, _ in encoded for x in s),
        max_dialogue_len=max(sum(len(x) for x in s) for s, _, _, _ in encoded),
        max_question_len=max(max([q0, *(len(x) for x in s[1:])]) for s, _, _, q0 in encoded),
        max_reference_len=max(len(x) for _, a, _, _ in encoded for x in a),
        max_keywords=max(len(k) for _, _, ks, _ in encoded for k in ks),
        max_keyword_len=max(len(x) for _, _, ks, _ in encoded for k in ks for x in k),
    )
