"""``DialogVectorEnv``: N dialogue episodes stepped at once with numpy (a native Gymnasium ``VectorEnv``).

It runs the same kernel as ``DialogEnv``, so row ``i`` of ``reset(seed=s)`` plays exactly the
episodes of a single env reset with seed ``s + i`` (Gymnasium's convention for vector seeds).
Finished rows are reset on the following step (``AutoresetMode.NEXT_STEP``): that step ignores
the row's action and returns its first observation with reward 0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from dialog_gym.env import RENDER_MODES, DialogAPI, reset_index
from dialog_gym.kernel import DialogueKernel, StepOutcome
from dialog_gym.options import EnvOptions
from dialog_gym.tasks.base import Task

# ``truncated_by`` by how many of (truncated, out of turns) hold; out of turns implies truncated.
TRUNCATION_LABELS = np.array(["", "max_answer_tokens", "max_turns"])
RESET_OPTIONS = ("index", "group_size")  # what ``reset(options=...)`` of the vector env understands


class DialogVectorEnv(VectorEnv, DialogAPI):
    """``num_envs`` copies of ``DialogEnv`` in one set of arrays; see ``DialogEnv`` for the task.

    ## Info
    The keys of ``DialogEnv`` but for the text ones (``reference``, ``answer``), every step and
    reset, as arrays over rows: ``action_mask`` (N, V) int8, ``expert_action`` and ``turn``
    (N,) int64, ``answer_done``, ``answer_correct`` and ``episode_done`` (N,) bool,
    ``answer_reward`` (N,) float64, ``truncated_by`` (N,) str (``""`` where not truncated) and
    ``dialogue``, a dict of (N,) arrays. Each key has Gymnasium's boolean ``_key`` array, all
    True since every row has every key; ``answer_done`` and ``episode_done`` say which rows
    ended an answer or an episode.
    """

    metadata = {"render_modes": list(RENDER_MODES), "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, task: Task, num_envs: int = 1, options: EnvOptions | None = None, **settings: Any) -> None:
        """``options`` (default ``EnvOptions()``) with ``settings`` (``split=``, ``reward=``, ...) replacing its fields."""
        self.kernel = DialogueKernel(task, num_envs, EnvOptions.build(options, **settings))
        self.task = task
        self.tokenizer = task.tokenizer
        self.num_envs = int(num_envs)
        self.render_mode = self.options.render_mode
        vocab = self.tokenizer.vocab_size
        self.single_observation_space = spaces.MultiDiscrete(np.full(self.kernel.max_len, vocab), dtype=np.int64)
        self.single_action_space = spaces.Discrete(vocab)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._all_rows = np.ones(self.num_envs, bool)
        self._all_rows.flags.writeable = False
        self._action_mask = np.broadcast_to(self.kernel.action_mask.astype(np.int8), (self.num_envs, vocab))
        self._started = False

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None):
        """Start a new episode in every row.

        ``options["index"]``: the episode number(s) to play (one for all rows, or one per row).
        ``options["group_size"] = G``: rows in consecutive groups of G play the same episodes (same
        context, questions and simulated user), as group-baseline trainers (GRPO, RLOO) need: with
        ``seed=s`` row ``i`` plays the episodes of a single env reset with seed ``s + i // G``;
        without a seed each group continues the episode stream of its first row.
        """
        index = self._reset_indices(options)
        group = self._group_size(options)
        super().reset(seed=seed if seed is None or isinstance(seed, (int, np.integer)) else None)
        rows = np.arange(self.num_envs)
        if seed is not None and group > 1:
            if not isinstance(seed, (int, np.integer)):
                raise ValueError("options['group_size'] needs one int seed (or none), not a list of seeds per row")
            seed = group_seeds(int(seed), self.num_envs, group)
        if seed is not None or not self._started:
            seeds = _row_seeds(seed, self.num_envs)
            self.kernel.seed_rows(rows, np.array([seeding.np_random(s)[0].integers(2**63) for s in seeds], np.uint64))
        if group > 1 and seed is None:
            self.kernel.streams.copy(rows, rows - rows % group)
        self.kernel.reset_rows(rows, index)
        self._started = True
        return self.kernel.obs.copy(), self._info(None)

    def _reset_indices(self, options: dict[str, Any] | None) -> np.ndarray | None:
        """Per-row episode indices from ``options["index"]`` (one for all rows, or one per row)."""
        if not isinstance(options, dict) or "index" not in options:
            return reset_index(options, self.task, self.split, RESET_OPTIONS)  # None, or the error for options
        index = options["index"]
        per_row = isinstance(index, (list, tuple)) or (isinstance(index, np.ndarray) and index.ndim == 1)
        values = list(index) if per_row else [index]
        if per_row and len(values) != self.num_envs:
            raise ValueError(f"options['index'] must be one index or {self.num_envs} (one per row), got {len(values)}")
        checked = [reset_index({**options, "index": value}, self.task, self.split, RESET_OPTIONS) for value in values]
        return np.array(checked if per_row else checked * self.num_envs, np.uint64)

    def _group_size(self, options: dict[str, Any] | None) -> int:
        """``options["group_size"]`` checked against the number of rows; 1 when not given."""
        if not isinstance(options, dict) or "group_size" not in options:
            return 1
        return check_group_size(options["group_size"], self.num_envs)

    def step(self, actions):
        if not self._started:
            raise gym.error.ResetNeeded("step() was called before reset(); call reset() first")
        tokens = check_actions(actions, self.num_envs, self.tokenizer.vocab_size)
        outcome = self.kernel.step(tokens)
        return (
            self.kernel.obs.copy(),
            outcome.reward,
            outcome.terminated,
            outcome.truncated,
            self._info(outcome),
        )

    def _info(self, outcome: StepOutcome | None) -> dict[str, Any]:
        kernel, n = self.kernel, self.num_envs
        if outcome is None:  # after reset: no answer or episode has ended
            no = np.zeros(n, bool)
            outcome = StepOutcome(np.zeros(n), no, no, no, no, np.zeros(n), no, no)
        episode_done = outcome.terminated | outcome.truncated
        truncated_by = TRUNCATION_LABELS[outcome.truncated + outcome.out_of_turns.astype(np.int8)]
        info: dict[str, Any] = {
            "action_mask": self._action_mask,
            "expert_action": kernel.expert_action(),
            "turn": kernel.turn.copy(),
            "answer_done": outcome.answer_done,
            "answer_reward": outcome.answer_reward,
            "answer_correct": outcome.answer_correct,
            "episode_done": episode_done,
            "truncated_by": truncated_by,
            "dialogue": {key: value.copy() for key, value in kernel.episode_stats(slice(None)).items()},
        }
        # Every key holds a value for every row, so each ``_key`` mask is all True (as Gymnasium's
        # SyncVectorEnv makes them over single envs); ``answer_done`` and ``episode_done`` say
        # where the answer and dialogue entries describe a finished answer or episode.
        for key in list(info):
            info[f"_{key}"] = self._all_rows
        return info

    def action_masks(self) -> np.ndarray:
        """(N, V) tokens worth emitting per row, for sb3-contrib's ``MaskablePPO``."""
        return np.broadcast_to(self.kernel.action_mask, (self.num_envs, self.tokenizer.vocab_size)).copy()

    def agent_tokens(self) -> np.ndarray:
        """(N, max_len) bool: the observations' positions that hold the agent's own tokens."""
        return self.kernel.agent_tokens()

    def render(self) -> tuple[str, ...] | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'human'")
            return None
        texts = tuple(self.tokenizer.decode(self.kernel.history(i)) for i in range(self.num_envs))
        if self.render_mode == "human":
            for i, text in enumerate(texts):
                print(f"[{i}] {text}")
            return None
        return texts


def check_actions(actions: Any, num_envs: int, vocab_size: int) -> np.ndarray:
    """(N,) int64 token ids, or a one-line error naming what is wrong with ``actions``."""
    array = np.asarray(actions)
    if array.shape != (num_envs,):
        raise gym.error.InvalidAction(
            f"actions must have shape ({num_envs},), one token id per row; got shape {array.shape}"
        )
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise gym.error.InvalidAction(f"actions must be integer token ids, got dtype {array.dtype}")
    bad = (array < 0) | (array >= vocab_size)
    if bad.any():
        row = int(np.argmax(bad))
        raise gym.error.InvalidAction(
            f"action {int(array[row])} of row {row} is out of range: expected token ids in [0, {vocab_size})"
        )
    return array.astype(np.int64, copy=False)


def check_group_size(group_size: Any, num_envs: int) -> int:
    """``group_size`` as a number of rows that divides ``num_envs``, or a one-line error saying what to use."""
    if isinstance(group_size, (bool, np.bool_)) or not isinstance(group_size, (int, np.integer)) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer (rows per group), got {group_size!r}")
    if group_size > num_envs or num_envs % group_size:
        raise ValueError(
            f"group_size={group_size} does not divide the {num_envs} rows into whole groups; use a divisor of "
            f"{num_envs} (or num_envs a multiple of {group_size})"
        )
    return int(group_size)


def group_seeds(seed: int, num_envs: int, group_size: int) -> list[int]:
    """Per-row seeds that give rows in consecutive groups of ``group_size`` the same episodes: row ``i``
    gets ``seed + i // group_size``. Pass them to any vector env, e.g. Gymnasium's ``SyncVectorEnv``
    of single envs: ``envs.reset(seed=group_seeds(s, N, G))``."""
    check_group_size(group_size, num_envs)
    return [int(seed) + i // group_size for i in range(num_envs)]


def _row_seeds(seed: int | list[int | None] | None, num_envs: int) -> list[int | None]:
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(num_envs)]
    if len(seed) != num_envs:
        raise ValueError(f"seed must be an int or a list of {num_envs} seeds, got a list of {len(seed)}")
    return list(seed)
