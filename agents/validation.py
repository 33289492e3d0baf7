"""Config values checked against the types their dataclass declares, and built from YAML mappings.

A config read from YAML holds whatever the file says: ``anneal_lr: "no"`` is a string (which
Python would read as true), ``clip_coef: "0.2"`` a string, ``epochs: 2.5`` a float. Every config
dataclass calls ``check_types`` first thing in ``__post_init__``, so such a value fails in one line
naming its key instead of being used or failing later without a name.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml


class ConfigTypeError(TypeError, ValueError):
    """A config value of the wrong type. It is a ValueError too: to a caller it is a bad value like any other."""


def _describe(value: Any) -> str:
    return f"{value!r} (a {type(value).__name__})"


def _accepts(expected: Any, value: Any) -> bool:
    """Whether ``value`` is of the annotated type (int, float, bool, str, Path, X | None, dict, list, Literal)."""
    origin = typing.get_origin(expected)
    if origin is typing.Annotated:
        return _accepts(typing.get_args(expected)[0], value)
    if origin in (Union, types.UnionType):
        return any(_accepts(option, value) for option in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if expected is Any:
        return True
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    if expected is Path:
        return isinstance(value, (str, Path))
    if origin is dict or expected is dict:
        return isinstance(value, dict) and all(isinstance(key, str) for key in value)
    if origin in (list, tuple) or expected in (list, tuple):
        return isinstance(value, (list, tuple))
    if dataclasses.is_dataclass(expected):
        return isinstance(value, expected)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is typing.Annotated:
        return _type_name(typing.get_args(expected)[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(option) for option in typing.get_args(expected))
    if origin is typing.Literal:
        return " or ".join(repr(option) for option in typing.get_args(expected))
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))


def check_types(config: Any, section: str = "") -> None:
    """Raise a one-line TypeError for the first field of ``config`` whose value is not of its declared type.

    Integers given for float fields are converted to float (YAML writes ``1`` for ``1.0``).
    """
    hints = typing.get_type_hints(type(config), include_extras=True)
    for f in dataclasses.fields(config):
        expected, value = hints[f.name], getattr(config, f.name)
        if not _accepts(expected, value):
            raise ConfigTypeError(
                f"{section}{f.name} must be {_type_name(expected)}, got {_describe(value)}; "
                f"see `dialog-gym train --help` for what it means"
            )
        if isinstance(value, int) and not isinstance(value, bool) and _wants_float(expected):
            object.__setattr__(config, f.name, float(value))


def _wants_float(expected: Any) -> bool:
    """True for ``float`` and ``float | None``: an integer given there is stored as a float."""
    options = typing.get_args(expected) if typing.get_origin(expected) in (Union, types.UnionType) else (expected,)
    return float in options and int not in options


def from_mapping(cls: type, data: Any, section: str = "") -> Any:
    """Build dataclass ``cls`` from a (YAML) mapping, nested dataclass sections included.

    Unknown keys are refused with the list of known ones; values are type-checked by the
    dataclasses themselves (``check_types`` in ``__post_init__``).
    """
    where = section.rstrip(".") or "the config"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TypeError(f"{where} must be a mapping of keys to values, got {_describe(data)}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(known)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    kwargs = {}
    for key, value in data.items():
        expected = hints[key]
        if typing.get_origin(expected) is typing.Annotated:
            expected = typing.get_args(expected)[0]
        if dataclasses.is_dataclass(expected) and not isinstance(value, expected):
            value = from_mapping(expected, value, f"{section}{key}.")
        kwargs[key] = value
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as a float as YAML 1.2 does (YAML 1.1 wants ``3.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: Path) -> Any:
    """A YAML file's content, with one-line errors for a missing file, bad syntax or a Python tag."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ValueError(f"{path}: not a valid YAML config{where}: {problem}") from None


def parse_scalar(text: str) -> Any:
    """A command-line value read as a YAML scalar (``3`` -> 3, ``true`` -> True, ``3e-4`` -> 0.0003)."""
    try:
        return yaml.load(text, Loader=_Loader) if text.strip() else ""
    except yaml.YAMLError:
        return text
