"""A small MLP actor-critic for generic Gymnasium envs with ``Discrete`` actions (e.g. CartPole).

The same PPO trains it; separate actor and critic networks with orthogonal initialisation, as
in CleanRL's ppo.py (and OpenAI baselines before it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


def _layer(n_in: int, n_out: int, std: float = float(np.sqrt(2))) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


class MLPPolicy(nn.Module):
    """Actor and critic, each two tanh layers of ``hidden`` units over the flattened observation."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64) -> None:
        super().__init__()
        self.actor = nn.Sequential(
            _layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, n_actions, 0.01)
        )
        self.critic = nn.Sequential(
            _layer(obs_dim, hidden), nn.Tanh(), _layer(hidden, hidden), nn.Tanh(), _layer(hidden, 1, 1.0)
        )

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, n_actions) and values (B,) of a batch of observations (B, obs_dim)."""
        obs = obs.flatten(1).float()
        return self.actor(obs), self.critic(obs).squeeze(-1)
