"""Strict JSON Lines reading for user data files (datasets, preference pairs): one JSON object per line.

Every size is bounded before it is read (the file, each line, the number of lines, the nesting
depth), and what Python's ``json`` lets through silently is refused: a key given twice on one
line, a lone UTF-16 surrogate escape such as ``"\\ud800"`` (not text: it cannot be written back as
UTF-8), and a field the format does not name (a misspelt ``"qustion"`` would otherwise be
ignored). Each problem is one line that names its line number, and the whole file's problems are
reported together, on one line, so a file is fixed in one pass.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable
from typing import BinaryIO

MAX_FILE_BYTES = 256 << 20  # 256 MiB: a data file is read whole into memory
MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any context an env can show
MAX_LINES = 1_000_000
MAX_DEPTH = 32  # nesting of objects and arrays; the formats here need three levels
SHOWN_PROBLEMS = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class DatasetError(ValueError):
    """A data file that cannot be read; the message names the file and every problem's line number."""


class _DuplicateKey(ValueError):
    pass


def brief(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters so a message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def checked_path(path: object, what: str) -> str:
    """``path`` as a string, once it names a regular file of at most ``MAX_FILE_BYTES``.

    ``what`` names the file's role in messages ("dataset", "preference file").
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{what} must be the path of a JSONL file (str or os.PathLike), got {brief(path)} ({type(path).__name__})"
        )
    path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"{what} must be a str path, got the bytes {brief(path)}; decode it first")
    if not path.strip():
        raise ValueError(f"{what} path is empty; pass the path of a JSONL file")
    if os.path.isdir(path):
        raise DatasetError(f"{what} {path!r} is a directory; pass the path of a JSONL file inside it")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} {path!r} does not exist; pass the path of a JSONL file")
    if not os.path.isfile(path):
        raise DatasetError(f"{what} {path!r} is not a regular file; pass the path of a JSONL file")
    size = os.path.getsize(path)
    if size > MAX_FILE_BYTES:
        raise DatasetError(
            f"{what} {path!r} is {size} bytes, more than the {MAX_FILE_BYTES} read into memory; split it into "
            "smaller files"
        )
    return path


def read_objects(path: str, what: str) -> tuple[list[tuple[int, dict]], list[str]]:
    """Every non-blank line of a UTF-8 JSONL file (a BOM allowed) as ``(line number, object)``, and a
    one-line problem for each line that is too long, not UTF-8, not strict JSON or not an object."""
    records, problems = [], []
    with open(path, "rb") as handle:
        if handle.read(2) in _UTF16_BOMS:
            raise DatasetError(f"{what} {path!r} is UTF-16 text; save it as UTF-8")
        handle.seek(0)
        number = 0
        while raw_bytes := handle.readline(MAX_LINE_BYTES + 1):
            number += 1
            if number > MAX_LINES:
                raise DatasetError(f"{what} {path!r} has more than {MAX_LINES} lines; split it into smaller files")
            if len(raw_bytes) > MAX_LINE_BYTES and not raw_bytes.endswith(b"\n"):
                length = len(raw_bytes) + _skip_rest_of_line(handle)
                problems.append(
                    f"line {number}: {length} bytes long, more than the {MAX_LINE_BYTES} a line may hold; shorten it"
                )
                continue
            try:
                raw = raw_bytes.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                problems.append(f"line {number}: not UTF-8 text ({error.reason} at byte {error.start})")
                continue
            if not raw.strip():
                continue
            try:
                record = parse_json(raw)
            except ValueError as error:
                problems.append(f"line {number}: {error}")
                continue
            if not isinstance(record, dict):
                problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
                continue
            records.append((number, record))
    return records, problems


def _skip_rest_of_line(handle: BinaryIO) -> int:
    """Read past the end of the current line in bounded chunks; return how many bytes were skipped."""
    skipped = 0
    while chunk := handle.readline(MAX_LINE_BYTES):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            break
    return skipped


def parse_json(text: str) -> object:
    """``json.loads`` made strict: a ValueError with a one-line reason for invalid JSON, a key given
    twice, nesting deeper than ``MAX_DEPTH`` or a lone surrogate in a string."""
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as error:
        raise ValueError(f"not valid JSON ({error.msg} at column {error.colno})") from None
    except _DuplicateKey as error:
        raise ValueError(str(error)) from None
    except RecursionError:
        raise ValueError(
            f"nested too deeply to read; expected at most {MAX_DEPTH} levels of objects and arrays"
        ) from None
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        raise ValueError(f"not valid JSON ({str(error).splitlines()[0]})") from None
    problem = _structure_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(f"key {brief(key)} appears twice in one object; give each field once")
        out[key] = value
    return out


def _structure_problem(value: object) -> str | None:
    """Nesting beyond ``MAX_DEPTH`` or a lone surrogate anywhere in ``value`` (walked without recursion)."""
    stack: list[tuple[object, int, str]] = [(value, 0, "")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found is not None:
                place = f"field {where!r}" if where else "the line"
                return (
                    f"{place} holds the lone surrogate {found.group()!r} at character {found.start()}, which is not "
                    "text; write the character itself or a valid surrogate pair"
                )
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth >= MAX_DEPTH:
            return f"nested too deeply to read; expected at most {MAX_DEPTH} levels of objects and arrays"
        if isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"key {brief(key)} holds a lone surrogate, which is not text; spell the key in plain text"
                stack.append((child, depth + 1, f"{where}.{key}" if where else key))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))
    return None


def unknown_fields(record: dict, expected: Iterable[str]) -> str | None:
    """Say which keys of ``record`` are not among ``expected`` (with the nearest expected one), or None."""
    expected = sorted(expected)
    unknown = [key for key in record if key not in expected]
    if not unknown:
        return None
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, expected, n=1)
        named.append(brief(key) + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"unknown field {', '.join(named)}; expected fields: {', '.join(expected)}"


def malformed(path: str, problems: list[str]) -> str:
    """One line naming the file and its first ``SHOWN_PROBLEMS`` problems."""
    shown = problems[:SHOWN_PROBLEMS]
    more = f"; ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return f"{path}: {len(problems)} malformed line(s): " + "; ".join(shown) + more
