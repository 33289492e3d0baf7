"""Text <-> token ids: the `Tokenizer` protocol and word- and character-level vocabularies.

The word and character tokenizers are built from a corpus, so any language works (Chinese text is
best served by `CharTokenizer`, since a run of Han characters is one "word"). Both reserve ids 0..6
for `SPECIAL_TOKENS`, so `pad_id == 0` and an env can left-pad observations with zeros.

Neither applies Unicode normalisation: NFKC would fold the full-width "？" and "，" of Chinese text
into ASCII, so what an env shows would differ from what the user wrote. `CharTokenizer` round-trips
any text exactly, up to runs of whitespace; `WordTokenizer` lowercases and spaces out punctuation.
"""

from __future__ import annotations

import json
import operator
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np

__all__ = [
    "SPECIAL_ID_ATTRIBUTES",
    "SPECIAL_TOKENS",
    "CharTokenizer",
    "Tokenizer",
    "VocabTokenizer",
    "WordTokenizer",
    "load_tokenizer",
]

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<sep>", "<unk>", "<user>", "<agent>")
PAD_ID, BOS_ID, EOS_ID, SEP_ID, UNK_ID, USER_ID, AGENT_ID = range(len(SPECIAL_TOKENS))
# The `Tokenizer` attribute that holds each special token's id, with the token it stands for.
SPECIAL_ID_ATTRIBUTES: dict[str, str] = dict(
    zip(("pad_id", "bos_id", "eos_id", "sep_id", "unk_id", "user_id", "agent_id"), SPECIAL_TOKENS)
)

_WORD_PIECE = re.compile(r"\w+|[^\w\s]")
_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_TOKENIZER_FILE_BYTES = 256 << 20
_VocabT = TypeVar("_VocabT", bound="VocabTokenizer")


@runtime_checkable
class Tokenizer(Protocol):
    """What an env needs from a tokenizer: text <-> integer ids plus the ids of the special tokens.

    - `pad_id`: left-pads observations to a fixed length (required).
    - `eos_id`: ends an answer; emitting it ends the agent's turn (required).
    - `bos_id`: starts a dialogue.
    - `sep_id`: separates the context from the dialogue that follows it.
    - `user_id` / `agent_id`: mark whose turn follows.
    - `unk_id`: stands for any out-of-vocabulary piece.

    The optional ones are `None` when a vocabulary has no such token (e.g. a Hugging Face one).
    """

    @property
    def vocab_size(self) -> int: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...
    @property
    def bos_id(self) -> int | None: ...
    @property
    def sep_id(self) -> int | None: ...
    @property
    def unk_id(self) -> int | None: ...
    @property
    def user_id(self) -> int | None: ...
    @property
    def agent_id(self) -> int | None: ...

    def encode(self, text: str) -> list[int]:
        """Return the ids of `text` (no special tokens added)."""
        ...

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """Return the text of `ids`; with `skip_special`, special tokens are dropped."""
        ...

    def id_to_token(self, i: int) -> str:
        """Return the token string of id `i`."""
        ...

    def token_to_id(self, token: str) -> int | None:
        """Return the id of `token`, or None if it is not in the vocabulary."""
        ...


class VocabTokenizer:
    """A fixed list of tokens whose position is the id; subclasses say how text splits into pieces.

    Immutable once built (an env must never change the tokenizer it was given), hence hashable.
    """

    kind: ClassVar[str] = ""
    joiner: ClassVar[str] = ""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not type(self).kind:
            raise TypeError(f"{type(self).__name__} is a base class; use WordTokenizer or CharTokenizer")
        problem = type(self)._tokens_problem(tokens)
        if problem is not None:
            raise ValueError(f"bad tokens for {type(self).__name__}: {problem}")
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self._tokens)}

    @classmethod
    def _tokens_problem(cls, tokens: object) -> str | None:
        """Say what is wrong with `tokens` as a vocabulary of `cls`, or None if nothing is."""
        if not isinstance(tokens, (list, tuple)):
            return f"tokens is {type(tokens).__name__}; expected a list of unique strings"
        for i, token in enumerate(tokens):
            if not isinstance(token, str):
                return f"token {i} is {token!r} ({type(token).__name__}); expected a string"
            problem = cls._token_problem(token)
            if problem is not None:
                return f"token {i} {token!r} {problem}"
        if tuple(tokens[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            return (
                f"the first tokens are {list(tokens[: len(SPECIAL_TOKENS)])}; "
                f"expected the specials {list(SPECIAL_TOKENS)} at ids 0..{len(SPECIAL_TOKENS) - 1}"
            )
        first_id: dict[str, int] = {}
        for i, token in enumerate(tokens):
            if token in first_id:
                return f"token {token!r} appears twice (ids {first_id[token]} and {i}); expected unique tokens"
            first_id[token] = i
        return None

    @classmethod
    def _token_problem(cls, token: str) -> str | None:
        if token == "":
            return "is empty; expected a non-empty string"
        return "holds a lone surrogate, which is not text; expected valid Unicode" if _SURROGATE.search(token) else None

    @classmethod
    def normalize(cls, text: str) -> str:
        """Return the canonical form of `text` that `decode(encode(text))` reproduces."""
        return cls.joiner.join(cls.pieces(text))

    @classmethod
    def pieces(cls, text: str) -> list[str]:
        """Split `text` into the pieces that `encode` maps to ids, one id per piece."""
        raise NotImplementedError

    @property
    def tokens(self) -> list[str]:
        """The vocabulary, indexed by id (a copy)."""
        return list(self._tokens)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    @property
    def sep_id(self) -> int:
        return SEP_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    @property
    def user_id(self) -> int:
        return USER_ID

    @property
    def agent_id(self) -> int:
        return AGENT_ID

    def encode(self, text: str) -> list[int]:
        """Return one id per piece of `text`; pieces outside the vocabulary become `unk_id`."""
        return [self._ids.get(piece, UNK_ID) for piece in self.pieces(text)]

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        """Return the tokens of `ids` joined back into text; `skip_special` drops ids 0..6."""
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1:
                raise ValueError(f"decode expects a 1-D sequence of ids, got shape {ids.shape}")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = self._check_id(i)
            if skip_special and i < len(SPECIAL_TOKENS):
                continue
            out.append(self._tokens[i])
        return self.joiner.join(out)

    def id_to_token(self, i: int) -> str:
        """Return the token whose id is `i`."""
        return self._tokens[self._check_id(i)]

    def token_to_id(self, token: str) -> int | None:
        """Return the id of `token`, or None if it is not in the vocabulary."""
        return self._ids.get(token)

    def _check_id(self, i: object) -> int:
        try:
            index = operator.index(i)
        except TypeError:
            raise TypeError(f"token ids must be integers, got {i!r} ({type(i).__name__})") from None
        if not 0 <= index < len(self._tokens):
            raise ValueError(f"token id {index} is out of range; expected 0 <= id < {len(self._tokens)}")
        return index

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write `{"type": ..., "tokens": [...]}` as JSON atomically (temp file + `os.replace`)."""
        path = os.fspath(path)
        payload = json.dumps({"type": self.kind, "tokens": list(self._tokens)}, indent=0)
        directory = os.path.dirname(os.path.abspath(path))
        prefix = f".{os.path.basename(path)}."
        fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(payload + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, path)
        except BaseException:
            if os.path.exists(tmp_path):
                os.remove(tmp_path)
            raise

    @classmethod
    def from_corpus(
        cls: type[_VocabT],
        texts: Iterable[str],
        min_count: int = 1,
        max_size: int | None = None,
        extra_tokens: Iterable[str] = (),
    ) -> _VocabT:
        """Build a vocabulary: specials, `extra_tokens`, then corpus pieces by count (ties A-Z).

        Pieces seen fewer than `min_count` times are left out; the most frequent are kept so that
        `vocab_size <= max_size`.
        """
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        for name, arg in (("texts", texts), ("extra_tokens", extra_tokens)):
            if isinstance(arg, str):
                raise ValueError(f"{name} must be an iterable of strings, got the str {arg!r}; wrap it in a list")
        head = list(SPECIAL_TOKENS)
        for token in extra_tokens:
            if token not in head:
                head.append(token)
        if max_size is not None and (
            isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < len(head)
        ):
            raise ValueError(
                f"max_size must be None or an integer >= {len(head)} (the {len(SPECIAL_TOKENS)} "
                f"specials plus {len(head) - len(SPECIAL_TOKENS)} extra tokens), got {max_size!r}"
            )
        counts: Counter[str] = Counter()
        for n, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"texts[{n}] is {type(text).__name__}; expected str")
            surrogate = _SURROGATE.search(text)
            if surrogate is not None:
                raise ValueError(
                    f"texts[{n}] holds the lone surrogate {surrogate.group()!r} at character {surrogate.start()}, "
                    "which is not text; expected valid Unicode"
                )
            counts.update(cls.pieces(text))
        taken = set(head)
        ranked = sorted(
            (piece for piece, count in counts.items() if count >= min_count and piece not in taken),
            key=lambda piece: (-counts[piece], piece),
        )
        if max_size is not None:
            ranked = ranked[: max_size - len(head)]
        return cls(head + ranked)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VocabTokenizer):
            return NotImplemented
        return type(self) is type(other) and self._tokens == other._tokens

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._tokens))

    def __repr__(self) -> str:
        learned = list(self._tokens[len(SPECIAL_TOKENS) :])
        preview = ", ".join(repr(t) for t in learned[:8]) + (", ..." if len(learned) > 8 else "")
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, learned=[{preview}])"

    def __reduce__(self) -> tuple[type[VocabTokenizer], tuple[list[str]]]:
        return (type(self), (list(self._tokens),))


class WordTokenizer(VocabTokenizer):
    """One id per word or punctuation mark, after lowercasing; decodes with spaces."""

    kind: ClassVar[str] = "word"
    joiner: ClassVar[str] = " "

    @classmethod
    def pieces(cls, text: str) -> list[str]:
        return _WORD_PIECE.findall(text.lower())

    @classmethod
    def _token_problem(cls, token: str) -> str | None:
        if token == "" or any(c.isspace() for c in token):
            return "is empty or holds whitespace; expected a word token without spaces"
        return super()._token_problem(token)


class CharTokenizer(VocabTokenizer):
    """One id per Unicode code point, exactly as written (no normalisation, case kept) except that
    runs of whitespace become one space and leading and trailing whitespace is dropped."""

    kind: ClassVar[str] = "char"
    joiner: ClassVar[str] = ""

    @classmethod
    def pieces(cls, text: str) -> list[str]:
        return list(" ".join(text.split()))


_KINDS: dict[str, type[WordTokenizer] | type[CharTokenizer]] = {
    WordTokenizer.kind: WordTokenizer,
    CharTokenizer.kind: CharTokenizer,
}


def load_tokenizer(path: str | os.PathLike[str]) -> WordTokenizer | CharTokenizer:
    """Read a tokenizer written by `save`, checking the file so a bad one fails here."""
    from dialog_gym.jsonl import brief, parse_json

    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {brief(path)} ({type(path).__name__})")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such tokenizer file; expected a JSON file written by save()")
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a regular file; expected a JSON file written by save()")
    if os.path.getsize(path) > MAX_TOKENIZER_FILE_BYTES:
        raise ValueError(f"{path}: larger than {MAX_TOKENIZER_FILE_BYTES} bytes; expected a file written by save()")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        data = parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected a file written by save()"
        ) from None
    except ValueError as e:
        raise ValueError(f"{path}: {e}; expected a file written by save()") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level is {type(data).__name__}; expected an object with 'type' and 'tokens'")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise ValueError(f"{path}: 'type' is {kind!r}; expected one of {sorted(_KINDS)}")
    cls = _KINDS[kind]
    if "tokens" not in data:
        raise ValueError(f"{path}: no 'tokens' key; expected a list of unique strings")
    problem = cls._tokens_problem(data["tokens"])
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    return cls(data["tokens"])
