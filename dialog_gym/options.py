"""``EnvOptions``: every setting of an env that is not the task's, checked once, in one place.

``gym.make(env_id, **kwargs)`` sends the keywords named here to the env and the rest to the task;
``DialogEnv``, ``DialogVectorEnv`` and the step kernel all read the same frozen ``EnvOptions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from dialog_gym.episodes import SPLITS
from dialog_gym.rewards import Reward, TextReward

RENDER_MODES = ("ansi", "human")
MAX_ANSWER_TOKENS = 1 << 14
"""The most tokens one answer may take: far beyond any task's reference, small enough to allocate."""
MAX_WINDOW = 1 << 17
"""The most tokens an observation may hold (a 128k-token context)."""


class UnsupportedRenderMode(ValueError, TypeError):
    """A render mode the env does not have. It is a TypeError too because Stable-Baselines3's
    ``make_vec_env`` asks every env for ``render_mode="rgb_array"`` and retries without it only
    on TypeError."""


@dataclass(frozen=True)
class EnvOptions:
    """How an env plays and scores its task's episodes (the same for every task)."""

    split: str = "train"
    """Which episodes to play: ``"train"`` or ``"test"`` (test content never occurs in training)."""
    reward: str | TextReward | Reward | None = None
    """How a finished answer is scored: a name in ``dialog_gym.rewards.REWARDS``, ``"PREFIX:ARG"`` for a
    registered reward plugin (``"model:DIR"``, a learned reward model), a text function
    ``fn(response, reference, keywords) -> float``, or a ``Reward`` object; None: the task's own."""
    shaping: float = 0.0
    """Dense reward per answer token: ``+shaping/(n+1)`` for the reference's token at that position,
    ``-shaping/(n+1)`` otherwise (n: reference length); 0 turns it off."""
    success_reward: float = 1.0
    """An answer is correct when its reward is at least this (by the task's own reward when the
    reward does not judge correctness, as a learned one does not)."""
    max_answer_tokens: int | None = None
    """Most tokens per answer, EOS included; the answer is truncated there. None: the longest
    reference, EOS and room for a verbose answer."""
    max_len: int | None = None
    """Tokens in the observation window; older ones are dropped. None: the longest dialogue."""
    demo_noise: float = 0.0
    """Fraction of demonstrated answers made wrong or verbose, in [0, 1]."""
    render_mode: str | None = None
    """``"ansi"`` (``render()`` returns the transcript), ``"human"`` (prints it) or None."""

    def __post_init__(self) -> None:
        if not isinstance(self.split, str) or self.split not in SPLITS:
            raise ValueError(f"unknown split {self.split!r}; expected one of {list(SPLITS)}")
        if self.reward is not None and not isinstance(self.reward, str) and not callable(self.reward):
            raise TypeError(
                f"reward must be a name (e.g. 'keyword'), 'PREFIX:ARG', a function or a Reward object, "
                f"got {type(self.reward).__name__}"
            )
        _check_real("shaping", self.shaping, 0.0, math.inf)
        _check_real("success_reward", self.success_reward, -math.inf, math.inf)
        _check_real("demo_noise", self.demo_noise, 0.0, 1.0)
        _check_size("max_answer_tokens", self.max_answer_tokens, MAX_ANSWER_TOKENS)
        _check_size("max_len", self.max_len, MAX_WINDOW)
        if self.render_mode is not None and self.render_mode not in RENDER_MODES:
            raise UnsupportedRenderMode(
                f"unknown render_mode {self.render_mode!r}; expected None or one of {list(RENDER_MODES)}"
            )

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in declaration order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def build(cls, options: EnvOptions | None = None, **settings: Any) -> EnvOptions:
        """``options`` (default: all defaults) with ``settings`` replacing some of its fields."""
        unknown = sorted(set(settings) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown env option(s) {unknown}; the options are {list(cls.names())}")
        if options is None:
            return cls(**settings)
        if not isinstance(options, cls):
            raise TypeError(f"options must be an EnvOptions, got {type(options).__name__}")
        return replace(options, **settings) if settings else options


def _check_real(name: str, value: Any, low: float, high: float) -> None:
    """A finite real number in [low, high]; a bool or a string is not one."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__}); pass e.g. {name}=0.5")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: expected a number in [{low:g}, {high:g}]")


def _check_size(name: str, value: Any, most: int) -> None:
    """None or an integer in [1, most]."""
    if value is None:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer or None, got {value!r} ({type(value).__name__})")
    if not 1 <= value <= most:
        raise ValueError(f"{name}={value!r} is out of range: expected an integer in [1, {most}] (or None, the default)")
