"""Checks of task constructor arguments: strict types and bounded sizes, so that a bad value fails in
one line naming it before anything is allocated (``vocab_size=2**31`` must not reach ``np.empty``).

Strict means: an integer argument takes an ``int`` or numpy integer, never a bool, a float or a
string (``"3"`` from a config file is a mistake worth naming, not a value to guess at); a number
takes an ``int`` or ``float``, never a bool, and never NaN.
"""

from __future__ import annotations

import math

import numpy as np

from dialog_gym.jsonl import brief


def check_int(name: str, value: object, low: int, high: int, meaning: str = "") -> int:
    """``value`` as an ``int`` if it is an integer in ``[low, high]``, else a ValueError naming it.

    ``meaning`` says what the bounds stand for ("3 special tokens and at least one content token").
    """
    expected = f"an integer in [{low}, {high}]" + (f" ({meaning})" if meaning else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be {expected}, got {brief(value)} ({type(value).__name__})")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_number(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
    meaning: str = "",
) -> float:
    """``value`` as a ``float`` if it is a number in the interval, else a ValueError naming it."""
    interval = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
    expected = f"a number in {interval}" + (f" ({meaning})" if meaning else "")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be {expected}, got {brief(value)} ({type(value).__name__})")
    number = float(value)
    above = number > low if open_low else number >= low
    below = number < high if open_high else number <= high
    if math.isnan(number) or not (above and below):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def check_flag(name: str, value: object) -> bool:
    """``value`` if it is ``True`` or ``False``, else a ValueError naming it."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {brief(value)} ({type(value).__name__})")
    return bool(value)
