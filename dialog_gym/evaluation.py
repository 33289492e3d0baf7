"""One scorer for every agent: ``evaluate(agent, env_id, ...)``.

An *agent* is any callable ``agent(observations, infos) -> actions`` over a batch: observations
(N, L) token ids, the vector env's info dict (``action_mask``, ``expert_action``, ...), and (N,)
integer token ids back. A stateful agent (say, one keeping a KV cache per row) can tell a new
episode by ``infos["turn"] == 0`` with an observation that holds no answer token yet, or simply
recompute from the observation each step. SB3 models fit as
``lambda obs, info: model.predict(obs, deterministic=True)[0]``.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

Agent = Callable[[np.ndarray, dict[str, Any]], Any]
DIALOGUE_KEYS = ("return", "length", "answers", "correct", "questions", "success", "answer_tokens")


def evaluate(
    agent: Agent,
    env_id: str | gym.vector.VectorEnv,
    episodes: int = 100,
    seed: int = 0,
    split: str = "test",
    num_envs: int | None = None,
    **env_kwargs: Any,
) -> dict[str, float]:
    """Run ``agent`` for ``episodes`` episodes of ``env_id`` and summarise them.

    Episode ``k`` is the same for every agent given the same ``seed`` and ``num_envs``: row ``i``
    of the vector env plays its first ``episodes // num_envs`` (or one more) episodes.
    Returns ``mean_return``, ``std_return``, ``success_rate`` (every answer right),
    ``answer_accuracy`` (right answers / questions asked), ``mean_answer_tokens`` (per answer,
    EOS not counted), ``mean_length`` (agent steps per episode) and ``episodes``.
    """
    if isinstance(episodes, bool) or not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    if isinstance(env_id, str):
        n = num_envs or min(int(episodes), 64)
        envs = gym.make_vec(env_id, num_envs=n, split=split, **env_kwargs)
    else:
        envs, n = env_id, env_id.num_envs
    quota = episodes // n + (np.arange(n) < episodes % n)
    finished = np.zeros(n, np.int64)
    records: dict[str, list[np.ndarray]] = {}
    obs, info = envs.reset(seed=seed)
    while (finished < quota).any():
        actions = np.asarray(agent(obs, info))
        obs, _, terminated, truncated, info = envs.step(actions)
        counted = (terminated | truncated) & (finished < quota)
        if counted.any():
            for key in DIALOGUE_KEYS:  # a SyncVectorEnv's dialogue also holds ``_key`` masks
                records.setdefault(key, []).append(np.asarray(info["dialogue"][key])[counted])
            finished += counted
    if isinstance(env_id, str):
        envs.close()
    stats = {key: np.concatenate(values) for key, values in records.items()}
    answers = max(int(stats["answers"].sum()), 1)
    return {
        "episodes": int(len(stats["return"])),
        "mean_return": float(stats["return"].mean()),
        "std_return": float(stats["return"].std()),
        "success_rate": float(stats["success"].mean()),
        "answer_accuracy": float(stats["correct"].sum() / stats["questions"].sum()),
        "mean_answer_tokens": float(stats["answer_tokens"].sum() / answers),
        "mean_length": float(stats["length"].mean()),
    }


class RandomAgent:
    """Emits a uniformly random allowed token (per ``infos["action_mask"]``) in every row."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        mask = np.asarray(infos["action_mask"], bool)
        scores = np.where(mask, self.rng.random(mask.shape), -1.0)
        return scores.argmax(axis=1)


class OracleAgent:
    """Emits the reference answer token by token (``infos["expert_action"]``), then EOS."""

    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        return np.asarray(infos["expert_action"])
