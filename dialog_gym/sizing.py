"""How big a kernel is: the answer limit and window an env gets, the state it allocates, the episodes
it reads ahead. Every size is checked here before anything is allocated."""

from __future__ import annotations

from dialog_gym.episodes import EpisodeLimits
from dialog_gym.options import EnvOptions
from dialog_gym.tasks.base import Task

__all__ = ["AHEAD_BYTES", "MEMORY_BUDGET", "answer_and_window", "check_memory", "dialogue_len", "prefetch_depth"]

AHEAD_BYTES = 64 << 20  # most memory the episodes read ahead from a data set may take
MEMORY_BUDGET = 4 << 30
"""The most bytes of state a kernel allocates; larger settings are refused before any allocation."""


def prefetch_depth(task: Task, split: str, num_envs: int) -> int:
    """How many upcoming episodes each row keeps ready.

    Making episodes costs a fixed overhead per call (a generated world, a table lookup), so a call
    should make a few hundred: a single env keeps 256 ready, a vector env 16 per row. Episodes
    read from a data set can be large, so they take at most ``AHEAD_BYTES``.
    """
    depth = max(16, -(-256 // num_envs))
    if task.num_examples(split) is not None:
        limits = task.limits
        per_turn = (
            limits.max_segment_len + limits.max_reference_len + limits.max_keywords * (limits.max_keyword_len + 1)
        )
        episode_bytes = 8 * (limits.max_turns * (per_turn + 2) + 3)
        depth = max(1, min(depth, AHEAD_BYTES // (num_envs * episode_bytes)))
    return depth


def dialogue_len(limits: EpisodeLimits, max_answer_tokens: int) -> int:
    """Most tokens a whole dialogue can have: every user segment and every answer at its limit."""
    return limits.max_dialogue_len + limits.max_turns * max_answer_tokens


def state_bytes(num_envs: int, limits: EpisodeLimits, max_len: int, max_answer_tokens: int, depth: int) -> int:
    """Bytes of a kernel's per-row arrays: the window, every answer, and ``depth`` episodes ahead."""
    t = limits.max_turns
    keywords = limits.max_keywords * (limits.max_keyword_len + 1)
    episode = t * (limits.max_segment_len + limits.max_reference_len + keywords + 2) + 3
    row = max_len + t * (max_answer_tokens + 1) + depth * episode + 16
    return 8 * num_envs * row


def answer_and_window(task: Task, options: EnvOptions) -> tuple[int, int]:
    """``max_answer_tokens`` and ``max_len``: the options' values checked against the task's limits,
    or the defaults the limits give."""
    limits, filler = task.limits, len(task.filler_ids)
    needed = limits.max_reference_len + 1
    answer = needed + filler if options.max_answer_tokens is None else int(options.max_answer_tokens)
    if answer < needed:
        raise ValueError(
            f"max_answer_tokens={answer} is too small: reference answers need up to {needed} tokens with "
            f"EOS; use max_answer_tokens >= {needed}"
        )
    full = dialogue_len(limits, answer)
    window = full if options.max_len is None else int(options.max_len)
    shortest = limits.max_question_len + answer
    if window < shortest:
        raise ValueError(
            f"max_len={window} is too short: the longest question with its answer needs {shortest} tokens; "
            f"use max_len >= {shortest} (the whole dialogue fits in {full})"
        )
    return answer, window


def check_memory(num_envs: int, limits: EpisodeLimits, max_len: int, max_answer_tokens: int, depth: int) -> None:
    """Refuse sizes whose state would pass ``MEMORY_BUDGET``, before anything is allocated."""
    needed = state_bytes(num_envs, limits, max_len, max_answer_tokens, depth)
    if needed > MEMORY_BUDGET:
        raise ValueError(
            f"{num_envs} envs with max_len={max_len} and max_answer_tokens={max_answer_tokens} "
            f"over {limits.max_turns} turns need {needed / 2**30:.1f} GiB of state, more than the "
            f"{MEMORY_BUDGET / 2**30:.0f} GiB allowed; use fewer envs, a shorter max_len or max_answer_tokens"
        )
