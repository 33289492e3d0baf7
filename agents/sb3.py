"""Stable-Baselines3 on dialog_gym envs: the independent cross-check of our PPO.

SB3 sees the env as any Gymnasium user does: ``make_vec_env`` over the registered single env,
its ``MlpPolicy`` on the one-hot encoded ``MultiDiscrete`` observation, with
``dialog_gym.wrappers.TerminateAtAnswerLimit`` so that it does not bootstrap answers cut at the
token limit as it would a time limit. Its models are scored by the same ``dialog_gym.evaluate``
as ours, through ``sb3_agent``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

import dialog_gym

CurvePoint = dict[str, float]


def sb3_agent(model, deterministic: bool = True, masked: bool = False) -> Callable[[np.ndarray, dict], np.ndarray]:
    """An SB3 model as a ``dialog_gym.evaluate`` agent (``masked`` for sb3-contrib's MaskablePPO)."""

    def act(observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        if masked:
            return model.predict(
                observations, deterministic=deterministic, action_masks=np.asarray(infos["action_mask"], bool)
            )[0]
        return model.predict(observations, deterministic=deterministic)[0]

    return act


class EvaluationCurve(BaseCallback):
    """Every ``every`` env steps, scores the greedy policy with ``dialog_gym.evaluate`` and keeps the result."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], every: int, episodes: int = 256, seed: int = 0) -> None:
        super().__init__()
        self.env_id, self.env_kwargs, self.every, self.episodes, self.seed = env_id, env_kwargs, every, episodes, seed
        self.points: list[CurvePoint] = []
        self._next = 0
        self._start = time.perf_counter()
        self._paused = 0.0

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.every
            self.record()
        return True

    def record(self) -> None:
        paused = time.perf_counter()
        result = dialog_gym.evaluate(
            sb3_agent(self.model), self.env_id, episodes=self.episodes, seed=self.seed, **self.env_kwargs
        )
        self._paused += time.perf_counter() - paused
        self.points.append({"env_steps": float(self.num_timesteps), "seconds": self.training_seconds, **result})

    @property
    def training_seconds(self) -> float:
        """Wall time spent training, evaluations left out."""
        return time.perf_counter() - self._start - self._paused
