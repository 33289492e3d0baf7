"""RLHF reward shaping as Gymnasium wrappers, so any agent trains on the rewards our PPO sees,
and ``TerminateAtAnswerLimit`` for agents that bootstrap truncated episodes.

Each wrapper changes the reward of a token env and reports its part under
``info["reward_components"]`` (a dict shared by stacked wrappers; ``"env"`` holds the env's own
reward), so a learner or a log can tell the task's reward from the shaping::

    env = KLPenalty(LengthPenalty(MissingEOSPenalty(gym.make("DialogQA-v0"))), reference, beta=0.05)

A reference or policy is any function from a batch of observations ``(N, L)`` to log-probabilities
of the next token ``(N, V)``; ``agents.agent.log_prob_function(policy)`` makes one from our
Transformer.
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np

LogProbFunction = Callable[[np.ndarray], np.ndarray]


def _non_negative(name: str, value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


class _Shaping(gym.Wrapper):
    """Adds ``part(obs_before, action, result)`` to the reward and records it under ``name``."""

    name = ""
    last_obs: np.ndarray | None = None

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        self.last_obs = obs
        return obs, info

    def step(self, action):
        before = self.last_obs
        if before is None:
            raise gym.error.ResetNeeded("step() was called before reset(); call reset() first")
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.last_obs = obs
        part = float(self.part(before, action, terminated, truncated, info))
        components = info.setdefault("reward_components", {"env": float(reward)})
        components[self.name] = components.get(self.name, 0.0) + part
        return obs, float(reward) + part, terminated, truncated, info

    def part(self, before: np.ndarray, action: Any, terminated: bool, truncated: bool, info: dict) -> float:
        raise NotImplementedError


class LengthPenalty(_Shaping):
    """``-cost`` for every answer token other than EOS: shorter answers for the same reward."""

    name = "length"

    def __init__(self, env: gym.Env, cost: float = 0.01) -> None:
        super().__init__(env)
        self.cost, self.eos_id = _non_negative("cost", cost), env.unwrapped.tokenizer.eos_id

    def part(self, before, action, terminated, truncated, info) -> float:
        return 0.0 if int(action) == self.eos_id else -self.cost


class MissingEOSPenalty(_Shaping):
    """``-penalty`` when an answer runs into the token limit without EOS (the episode truncates)."""

    name = "missing_eos"

    def __init__(self, env: gym.Env, penalty: float = 1.0) -> None:
        super().__init__(env)
        self.penalty = _non_negative("penalty", penalty)

    def part(self, before, action, terminated, truncated, info) -> float:
        return -self.penalty if info["truncated_by"] == "max_answer_tokens" else 0.0


class KLPenalty(_Shaping):
    """The per-token KL leash of RLHF: ``-beta * (log pi(a|s) - log pi_ref(a|s))``.

    With ``policy`` (the acting policy's log-probabilities) this is exactly the penalty our PPO
    uses. Without it the wrapper adds ``beta * log pi_ref(a|s)``, the part that depends on the
    reference; an agent whose entropy bonus has the same ``beta`` then optimises the same
    objective, since ``KL(pi || pi_ref) = -H(pi) - E[log pi_ref]``.
    """

    name = "kl"

    def __init__(
        self, env: gym.Env, reference: LogProbFunction, beta: float = 0.05, policy: LogProbFunction | None = None
    ) -> None:
        super().__init__(env)
        if not callable(reference) or (policy is not None and not callable(policy)):
            raise TypeError(
                "reference and policy must be functions from observations (N, L) to log-probabilities (N, V)"
            )
        self.reference, self.policy, self.beta = reference, policy, _non_negative("beta", beta)
        self.vocab_size = env.unwrapped.tokenizer.vocab_size

    def _log_prob(self, function: LogProbFunction, before: np.ndarray, action: Any) -> float:
        log_probs = np.asarray(function(np.asarray(before)[None]))
        if log_probs.shape != (1, self.vocab_size):
            raise ValueError(
                f"a log-probability function returned shape {log_probs.shape}; expected (1, {self.vocab_size})"
            )
        value = float(log_probs[0, int(action)])
        if not np.isfinite(value):
            raise ValueError(f"a log-probability function gave {value} for token {int(action)}; it must be finite")
        return value

    def part(self, before, action, terminated, truncated, info) -> float:
        reference = self._log_prob(self.reference, before, action)
        own = 0.0 if self.policy is None else self._log_prob(self.policy, before, action)
        return -self.beta * (own - reference)


class TerminateAtAnswerLimit(gym.Wrapper):
    """Reports an answer that hit ``max_answer_tokens`` as *terminated* instead of *truncated*.

    Agents such as Stable-Baselines3's bootstrap a truncated episode with the value of its last
    observation, as is right for a time limit. Here the limit is part of the task: the answer is
    over and scored, and nothing follows it, so its value is zero. Bootstrapping it makes running
    into the limit look better than ending with EOS, and such agents learn never to end their
    answers. Our PPO treats the limit this way by itself.
    """

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if truncated and info["truncated_by"] == "max_answer_tokens":
            terminated, truncated = True, False
        return obs, reward, terminated, truncated, info
