"""The two interfaces the trainer is written against: a policy and a rollout.

``TransformerPolicy`` and ``HFPolicy`` are ``Policy``s; ``TokenRollout`` (whole episodes of a token
env) and ``StepRollout`` (fixed windows of steps of any env) are ``Rollout``s. The PPO update, the
KL step and the evaluator only use what is declared here, so a new policy or a new way of
collecting experience is one class that has these members.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

import torch

from agents.rollout import Batch


class PolicyShape(Protocol):
    """What a token policy reads: its vocabulary, its longest sequence and its padding token."""

    vocab_size: int
    context_len: int
    pad_id: int


class KVCacheLike(Protocol):
    def select(self, rows: torch.Tensor) -> KVCacheLike:
        """The cache of the given rows only."""
        ...


@runtime_checkable
class Policy(Protocol):
    """A causal LM over the env's vocabulary with a value head.

    ``forward(tokens, valid=None)`` scores whole left-padded sequences (B, L) -> logits (B, L, V)
    and values (B, L); ``start`` and ``extend`` decode incrementally with a cache, giving the
    logits and values of each row's newest token.
    """

    config: PolicyShape

    def __call__(
        self, tokens: torch.Tensor, valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def start(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(B, L) left-padded prompts -> logits (B, V), values (B,), cache."""
        ...

    def extend(self, tokens: torch.Tensor, valid: torch.Tensor, cache: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(B, W) new tokens (``valid`` marks the real ones) -> logits (B, V), values (B,), cache."""
        ...


class Rollout(Protocol):
    """Experience laid out as (rows, steps): what was done, with the acting policy's log-probs and values.

    ``logprobs`` and ``values`` are those of the policy that collected the data (PPO's ratio is the
    current policy's log-probability over these). ``mask`` marks real actions (not padding, not
    steps after an episode's end); ``done`` marks each trace's last step; ``advantages`` and
    ``returns`` are filled in by the trainer before the update.
    """

    logprobs: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    env_rewards: torch.Tensor
    rewards: torch.Tensor
    """What GAE reads: the env's rewards, with the KL penalty added by a trainer that uses one."""
    terminated: torch.Tensor
    truncated: torch.Tensor
    done: torch.Tensor
    mask: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    episode: dict[str, Any]
    """Per finished episode: numpy arrays of return, length, correct, questions, success, ..."""

    @property
    def num_steps(self) -> int:
        """Real actions in the rollout (env steps that advanced an episode)."""
        ...

    def score(self, policy: Any, rows: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log-probabilities of the taken actions, entropies and values under ``policy`` for ``rows``."""
        ...

    def minibatches(self, count: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """``count`` disjoint sets of rows covering the rollout, in an order drawn from ``generator``."""
        ...

    def batch(self, rows: torch.Tensor) -> Batch:
        """The stored tensors of ``rows``."""
        ...
