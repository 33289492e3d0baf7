"""A trained policy as a ``dialog_gym.evaluate`` agent: observations in, token ids out."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.policy import TransformerPolicy


class PolicyAgent:
    """Samples (or, with ``greedy``, takes the most likely) next token of every row.

    It re-reads each row's whole observation every step, so it needs no state and works with
    any vector env and any batch of observations.
    """

    def __init__(
        self, policy: TransformerPolicy, greedy: bool = False, seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        self.policy, self.greedy, self.device = policy, greedy, torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    @torch.no_grad()
    def __call__(self, observations: np.ndarray, infos: dict[str, Any]) -> np.ndarray:
        self.policy.eval()
        tokens = torch.as_tensor(observations, device=self.device)
        logits, _ = self.policy(tokens)
        last = logits[:, -1]
        if self.greedy:
            return last.argmax(-1).cpu().numpy()
        return torch.multinomial(torch.softmax(last, -1), 1, generator=self.generator).squeeze(1).cpu().numpy()


def log_prob_function(policy: TransformerPolicy, device: str | torch.device = "cpu"):
    """``observations (N, L) -> log-probabilities of the next token (N, V)`` as numpy, for the
    shaping wrappers of ``dialog_gym.wrappers`` (e.g. a frozen pretrained policy as the KL reference)."""
    device = torch.device(device)

    @torch.no_grad()
    def log_probs(observations: np.ndarray) -> np.ndarray:
        policy.eval()
        logits, _ = policy(torch.as_tensor(np.asarray(observations), device=device))
        return torch.log_softmax(logits[:, -1].float(), -1).cpu().numpy()

    return log_probs
