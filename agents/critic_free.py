"""Critic-free policy gradients: GRPO, Dr. GRPO, RLOO and REINFORCE++, beside PPO.

They share PPO's rollouts, clipped ratio, KL leash, checkpoints and evaluator and differ only in
where an action's advantage comes from and how the per-token losses are averaged:

- GRPO (Shao et al. 2024): each episode is played by a group of G rows (``group_size``); an
  episode's advantage is its return minus the group's mean, over the group's standard deviation,
  given to every one of its tokens; the loss is averaged per sequence, then over sequences.
- Dr. GRPO (Liu et al. 2025): no division by the standard deviation, and one constant normaliser
  (the most agent tokens an episode can have) instead of each sequence's own length.
- RLOO (Ahmadian et al. 2024): the baseline of an episode is the mean return of the other G - 1.
- REINFORCE++ (Hu 2025): no groups; per-token rewards with the KL penalty in them, the return to
  go as each token's advantage, normalised over the whole batch.

The DAPO settings (Yu et al. 2025) are options of every one of them: a higher upper clip
(``clip_coef_high``), token-level averaging (``loss_aggregation="token"``) and dropping groups
whose episodes all earned the same return (``drop_equal_groups``). Each advantage and loss is a
pure function of tensors, tested against independent computations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch

from agents.ppo import LossTerms
from agents.rollout import Batch
from agents.validation import check_types

ALGORITHMS = ("ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp")
Algorithm = Literal["ppo", "grpo", "dr_grpo", "rloo", "reinforce_pp"]
GROUPED = ("grpo", "dr_grpo", "rloo")  # the algorithms whose baseline is the episode's group
Aggregation = Literal["token", "sequence", "constant"]

# What "auto" means for each algorithm: where the KL leash acts and how the token losses are averaged,
# as each method was published.
KL_PENALTY = {"grpo": "loss", "dr_grpo": "loss", "rloo": "reward", "reinforce_pp": "reward"}
LOSS_AGGREGATION = {"grpo": "sequence", "dr_grpo": "constant", "rloo": "token", "reinforce_pp": "token"}
STD_EPS = 1e-4  # added to a group's standard deviation (as TRL's GRPOTrainer does)


@dataclass
class CriticFreeConfig:
    """Settings of the critic-free trainers (``algo`` other than ppo); PPO ignores them. The
    optimiser, clipping, epochs, minibatches, entropy bonus and KL coefficient are ``ppo``'s."""

    group_size: int = 8
    """Rows that play each episode (GRPO, Dr. GRPO, RLOO): the baseline is the group's returns.
    Must be at least 2 and divide num_envs. REINFORCE++ plays no groups."""
    kl_penalty: Literal["auto", "reward", "loss"] = "auto"
    """Where the KL leash to the reference acts: "reward" subtracts beta * (log pi - log pi_ref) from
    each token's reward (PPO's way); "loss" adds beta times the k3 estimate of each token's KL to the
    loss (GRPO's way). "auto": loss for grpo and dr_grpo, reward for rloo and reinforce_pp."""
    loss_aggregation: Literal["auto", "token", "sequence", "constant"] = "auto"
    """How per-token losses become one number: "token" (mean over every token of the minibatch,
    DAPO), "sequence" (mean over each episode's tokens, then over episodes, GRPO), "constant" (sum
    over tokens / (episodes x the most agent tokens an episode can have), Dr. GRPO). "auto": the
    algorithm's own (sequence for grpo, constant for dr_grpo, token for rloo and reinforce_pp)."""
    clip_coef_high: float | None = None
    """Upper clip of the ratio at 1 + clip_coef_high (DAPO's clip-higher); None: ppo.clip_coef."""
    drop_equal_groups: bool = False
    """Leave out of the loss the groups whose episodes all earned the same return (DAPO's dynamic
    sampling filter; such groups have zero advantage and only dilute the average)."""

    def __post_init__(self) -> None:
        check_types(self, "critic_free.")
        if self.group_size < 1:
            raise ValueError(f"critic_free.group_size must be a positive integer, got {self.group_size!r}")
        if self.clip_coef_high is not None and not self.clip_coef_high > 0:
            raise ValueError(
                f"critic_free.clip_coef_high must be a positive number or null, got {self.clip_coef_high!r}"
            )

    def kl_in_loss(self, algo: str) -> bool:
        return (KL_PENALTY[algo] if self.kl_penalty == "auto" else self.kl_penalty) == "loss"

    def aggregation(self, algo: str) -> Aggregation:
        return LOSS_AGGREGATION[algo] if self.loss_aggregation == "auto" else self.loss_aggregation


def check_groups(algo: str, group_size: int, num_envs: int) -> None:
    """One-line errors for a group the batch cannot hold (``algo`` is a grouped algorithm)."""
    if group_size < 2:
        raise ValueError(
            f"{algo} compares the episodes of a group, so critic_free.group_size must be at least 2, got {group_size}"
        )
    if group_size > num_envs:
        raise ValueError(
            f"critic_free.group_size={group_size} is larger than the batch (num_envs={num_envs}); "
            f"use num_envs >= {group_size}"
        )
    if num_envs % group_size:
        raise ValueError(
            f"num_envs={num_envs} is not a multiple of critic_free.group_size={group_size}; "
            f"use num_envs={num_envs - num_envs % group_size or group_size} or a group size that divides it"
        )


# -- advantages: pure functions ------------------------------------------------------------------


def group_relative_advantages(returns: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """GRPO's advantages (B,) of episode returns (B,), rows in consecutive groups of ``group_size``:
    (R - group mean) / (group std + STD_EPS), the std with Bessel's correction; Dr. GRPO
    (``scale=False``): R - group mean."""
    grouped = returns.reshape(-1, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(dim=1, keepdim=True) + STD_EPS)
    return centred.reshape(-1)


def leave_one_out_advantages(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO's advantages (B,): each return minus the mean of the other G - 1 returns of its group."""
    grouped = returns.reshape(-1, group_size)
    others = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others).reshape(-1)


def equal_groups(returns: torch.Tensor, group_size: int) -> torch.Tensor:
    """(B,) bool: the rows of groups whose returns are all equal."""
    grouped = returns.reshape(-1, group_size)
    same = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)
    return same.expand_as(grouped).reshape(-1)


def returns_to_go(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T): sum over s >= t of gamma^(s - t) r_s along each row's real steps; 0 on padding."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def batch_normalised(
    values: torch.Tensor, mask: torch.Tensor, total: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """``values`` minus their mean over the masked entries, over their standard deviation (+1e-8);
    0 on padding. With several processes ``total`` sums over them, so the statistics are the whole batch's."""
    total = total or (lambda x: x)
    m = mask.float()
    count = total(m.sum()).clamp(min=1.0)
    mean = total((values * m).sum()) / count
    std = torch.sqrt(total((((values - mean) * m) ** 2).sum()) / count)
    return (values - mean) / (std + 1e-8) * m


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """REINFORCE++'s advantages (B, T): the return to go of the (KL-penalised) per-token rewards,
    normalised over every real token of the batch."""
    return batch_normalised(returns_to_go(rewards, mask, gamma), mask, total)


def sequence_advantages(algo: str, returns: torch.Tensor, group_size: int, mask: torch.Tensor) -> torch.Tensor:
    """(B, T): the advantage of each episode (GRPO, Dr. GRPO, RLOO) given to each of its real tokens."""
    if algo == "grpo":
        per_episode = group_relative_advantages(returns, group_size, scale=True)
    elif algo == "dr_grpo":
        per_episode = group_relative_advantages(returns, group_size, scale=False)
    elif algo == "rloo":
        per_episode = leave_one_out_advantages(returns, group_size)
    else:
        raise ValueError(f"{algo!r} has no per-episode advantage; expected one of {list(GROUPED)}")
    return per_episode[:, None] * mask


# -- the loss: a pure function -------------------------------------------------------------------


def k3_kl(logprob: torch.Tensor, ref_logprob: torch.Tensor) -> torch.Tensor:
    """The k3 estimator of KL(pi || pi_ref) per sampled token: exp(d) - d - 1 with d = log pi_ref - log pi
    (Schulman 2020): unbiased, never negative."""
    d = ref_logprob - logprob
    return d.exp() - d - 1.0


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    how: Aggregation,
    normaliser: int,
    total: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """One number from (B, T) per-token losses over the real tokens ``mask`` (see ``CriticFreeConfig``).
    ``total`` sums counts over processes, so the shares of the processes add up to the whole minibatch's."""
    m = mask.float()
    if how == "token":
        return (per_token * m).sum() / total(m.sum()).clamp(min=1.0)
    if how == "sequence":
        tokens = m.sum(dim=1)
        per_sequence = (per_token * m).sum(dim=1) / tokens.clamp(min=1.0)
        return per_sequence.sum() / total((tokens > 0).float().sum()).clamp(min=1.0)
    if how == "constant":
        sequences = (m.sum(dim=1) > 0).float().sum()
        return (per_token * m).sum() / (total(sequences).clamp(min=1.0) * normaliser)
    raise ValueError(f"unknown loss aggregation {how!r}; expected token, sequence or constant")


def critic_free_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    ref_logprob: torch.Tensor,
    advantages: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_low: float,
    clip_high: float,
    kl_coef: float,
    ent_coef: float,
    aggregation: Aggregation,
    normaliser: int = 1,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LossTerms:
    """The clipped surrogate with fixed advantages, an optional k3 KL term and an entropy bonus.

    Inputs (B, T); ``mask`` selects the tokens that count. Per token: max(-A r, -A clip(r, 1 -
    clip_low, 1 + clip_high)) + kl_coef * k3(pi, pi_ref), aggregated as ``aggregation`` says; the
    entropy bonus is averaged the same way. No value term: these methods have no critic.
    """
    total = total or (lambda x: x.detach())
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    surrogate = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high))
    kl = k3_kl(new_logprob, ref_logprob)
    per_token = surrogate + kl_coef * kl
    policy_loss = aggregate(per_token, mask, aggregation, normaliser, total)
    entropy_mean = aggregate(entropy, mask, aggregation, normaliser, total)
    loss = policy_loss - ent_coef * entropy_mean
    with torch.no_grad():
        m = mask.float()
        count = total(m.sum()).clamp(min=1.0)
        approx_kl = total((((ratio - 1) - log_ratio) * m).sum()) / count
        clipped = ((ratio < 1 - clip_low) | (ratio > 1 + clip_high)).float()
        clip_fraction = total((clipped * m).sum()) / count
    zero = torch.zeros((), device=new_logprob.device)
    return LossTerms(loss, total(policy_loss), zero, total(entropy_mean), approx_kl, clip_fraction)


# -- the trainer's use of them -------------------------------------------------------------------


def assign_advantages(
    rollout,
    algo: str,
    config: CriticFreeConfig,
    beta: float,
    gamma: float,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Fill ``rollout.rewards`` (the env's, with the KL penalty when it acts in the reward),
    ``rollout.advantages`` and ``rollout.loss_mask`` (``rollout.kl`` and ``rollout.ref_logprobs``
    are set). Returns stay at zero: there is no critic to regress."""
    kl_in_reward = not config.kl_in_loss(algo)
    rollout.rewards = rollout.env_rewards - beta * rollout.kl if kl_in_reward else rollout.env_rewards.clone()
    mask = rollout.mask
    if algo == "reinforce_pp":
        rollout.advantages = reinforce_pp_advantages(rollout.rewards, mask, gamma, total)
        rollout.loss_mask = mask
        return
    returns = (rollout.rewards * mask).sum(dim=1)  # (B,) each episode's return
    rollout.advantages = sequence_advantages(algo, returns, config.group_size, mask)
    rollout.loss_mask = mask
    if config.drop_equal_groups:
        rollout.loss_mask = mask & ~equal_groups((rollout.env_rewards * mask).sum(dim=1), config.group_size)[:, None]


def loss_function(
    algo: str, config: CriticFreeConfig, clip_coef: float, ent_coef: float, beta: float, normaliser: int
) -> Callable[..., LossTerms]:
    """The minibatch loss of ``algo`` for ``agents.ppo.ppo_update``: (new_logprob, entropy, new_value,
    batch, total) -> LossTerms."""
    kl_coef = beta if config.kl_in_loss(algo) else 0.0
    clip_high = clip_coef if config.clip_coef_high is None else config.clip_coef_high

    def loss(new_logprob, entropy, new_value, batch: Batch, total) -> LossTerms:
        terms = critic_free_loss(
            new_logprob,
            batch.logprobs,
            batch.ref_logprobs,
            batch.advantages,
            entropy,
            batch.loss_mask,
            clip_low=clip_coef,
            clip_high=clip_high,
            kl_coef=kl_coef,
            ent_coef=ent_coef,
            aggregation=config.aggregation(algo),
            normaliser=normaliser,
            total=total,
        )
        # No critic: the value head joins with weight 0, so its gradient is zero rather than missing
        # (DistributedDataParallel expects a gradient for every parameter, as in pretraining).
        terms.loss = terms.loss + 0.0 * new_value[batch.loss_mask].sum()
        return terms

    return loss
