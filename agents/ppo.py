"""PPO's maths as pure functions, the adaptive KL coefficient, and one PPO update.

``gae`` and ``ppo_loss`` are pure functions of tensors (tested against hand computations and
Stable-Baselines3). ``ppo_update`` runs epochs x minibatches over a rollout; the rollout object
(``agents.rollout``) knows how to re-score its actions with the current policy, so the same update
serves the Transformer (one forward pass per episode) and the MLP (one row per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Callable

import torch
import torch.nn as nn

from agents.distributed import Processes
from agents.protocols import Rollout
from agents.validation import check_types


@dataclass
class PPOConfig:
    """PPO hyperparameters. Defaults are tuned for dialog_gym's envs; see the README."""

    learning_rate: float = 3e-4
    """Adam learning rate at the first update."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over the run."""
    adam_eps: float = 1e-5
    """Adam epsilon (1e-5 as in the PPO implementations of OpenAI baselines and CleanRL)."""
    gamma: float = 1.0
    """Discount; 1 since episodes are short and only the final answer counts."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    update_epochs: int = 4
    """Passes over each rollout."""
    num_minibatches: int = 8
    """Minibatches per pass (of episodes for token envs, of steps otherwise)."""
    clip_coef: float = 0.2
    """Clip range of the probability ratio."""
    clip_vloss: bool = True
    """Clip the value update around the rollout's values as well."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss (the trunk is shared by the policy and the value head)."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping."""
    target_kl: float | None = None
    """Stop the update's remaining epochs once the approximate KL to the rollout policy passes this."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    bootstrap_truncated: bool | None = None
    """Bootstrap from V(final observation) when an env truncates. None: yes for ordinary envs (a time
    limit cuts a task that would go on), no for dialog_gym envs, whose truncation means an answer
    hit its token limit and the dialogue is over: its future reward is 0, not unknown, and
    bootstrapping from an untrained value there taught PPO to stop emitting EOS."""
    kl_coef: float = 0.05
    """Initial beta of the per-token penalty beta * (log pi - log pi_ref) to the reference policy."""
    kl_target: float | None = 0.5
    """KL (summed over an episode's tokens) the adaptive beta steers toward; None keeps beta fixed."""
    kl_horizon: int = 10_000
    """Episodes over which the adaptive beta moves by at most 20% (Ziegler et al. 2019)."""

    def __post_init__(self) -> None:
        check_types(self, "ppo.")
        checks = {
            "learning_rate": self.learning_rate > 0,
            "gamma": 0 <= self.gamma <= 1,
            "gae_lambda": 0 <= self.gae_lambda <= 1,
            "update_epochs": self.update_epochs >= 1,
            "num_minibatches": self.num_minibatches >= 1,
            "clip_coef": self.clip_coef > 0,
            "ent_coef": self.ent_coef >= 0,
            "vf_coef": self.vf_coef >= 0,
            "max_grad_norm": self.max_grad_norm > 0,
            "kl_coef": self.kl_coef >= 0,
            "kl_horizon": self.kl_horizon >= 1,
            "adam_eps": self.adam_eps > 0,
            "target_kl": self.target_kl is None or self.target_kl > 0,
            "kl_target": self.kl_target is None or self.kl_target > 0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"ppo.{name}={getattr(self, name)!r} is out of range; see PPOConfig for what it means")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    next_values: torch.Tensor,
    terminated: torch.Tensor,
    done: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) along the last axis.

    All inputs are (..., T), step t of a row followed by step t + 1 of the same row.
    ``next_values[t]`` is V(s_{t+1}); ``terminated[t]`` cuts the bootstrap (no value after a true
    end), ``done[t]`` (terminated or truncated, or the row's last real step) cuts the trace, so a
    truncated step still bootstraps from V(s_{t+1}). Returns (advantages, returns = A + V).
    """
    not_terminated = 1.0 - terminated.float()
    not_done = 1.0 - done.float()
    deltas = rewards + gamma * next_values * not_terminated - values
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[..., 0])
    for t in reversed(range(rewards.shape[-1])):
        last = deltas[..., t] + gamma * gae_lambda * not_done[..., t] * last
        advantages[..., t] = last
    return advantages, advantages + values


def kl_penalised_rewards(
    env_rewards: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The env's rewards with the per-token KL penalty of the RLHF recipe (Ziegler et al. 2019).

    All inputs (B, T); ``logprobs`` are the acting policy's, ``ref_logprobs`` the reference's, for
    the same actions. Returns (rewards - beta * kl, kl), with kl = (log pi - log pi_ref) on real
    actions and 0 on padding.
    """
    kl = (logprobs - ref_logprobs) * mask
    return env_rewards - beta * kl, kl


def advantages_and_returns(
    rollout: Rollout, rewards: torch.Tensor, config: PPOConfig, bootstrap_truncated: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over a rollout's (possibly KL-penalised) ``rewards``; advantages are 0 on padding.

    ``bootstrap_truncated`` says whether a truncated step's future is unknown (bootstrap from
    V(s_{t+1})) or over (no bootstrap); see ``PPOConfig.bootstrap_truncated``.
    """
    no_bootstrap = rollout.terminated if bootstrap_truncated else rollout.terminated | rollout.truncated
    advantages, returns = gae(
        rewards, rollout.values, rollout.next_values, no_bootstrap, rollout.done, config.gamma, config.gae_lambda
    )
    return advantages * rollout.mask, returns


@dataclass
class LossTerms:
    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_fraction: torch.Tensor


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    mask: torch.Tensor,
    config: PPOConfig,
    total: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LossTerms:
    """The clipped surrogate objective with value and entropy terms (Schulman et al. 2017).

    Every input has the same shape; ``mask`` selects the real actions (padding and steps after
    an episode's end are excluded from every term and statistic). Advantages are normalised
    over the masked entries when ``config.norm_adv``.

    With several processes each holding part of a minibatch, ``total`` sums a tensor over them:
    the token count and the advantage statistics are then those of the whole minibatch, ``loss``
    is this process's share of it (the shares add up to the loss of the whole minibatch) and the
    reported statistics are the whole minibatch's.
    """
    total = total or (lambda x: x.detach())
    m = mask.float()
    count = total(m.sum()).clamp(min=1.0)
    mean = lambda x: (x * m).sum() / count  # noqa: E731  (this process's share of the mean)
    if config.norm_adv:
        adv_mean = total(mean(advantages))
        adv_std = torch.sqrt(total(mean((advantages - adv_mean) ** 2)))
        advantages = (advantages - adv_mean) / (adv_std + 1e-8)
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - config.clip_coef, 1 + config.clip_coef)
    policy_loss = mean(torch.max(pg_loss1, pg_loss2))
    if config.clip_vloss:
        v_loss_unclipped = (new_value - returns) ** 2
        v_clipped = old_value + torch.clamp(new_value - old_value, -config.clip_coef, config.clip_coef)
        v_loss_clipped = (v_clipped - returns) ** 2
        value_loss = 0.5 * mean(torch.max(v_loss_unclipped, v_loss_clipped))
    else:
        value_loss = 0.5 * mean((new_value - returns) ** 2)
    entropy_mean = mean(entropy)
    loss = policy_loss - config.ent_coef * entropy_mean + config.vf_coef * value_loss
    with torch.no_grad():
        approx_kl = total(mean((ratio - 1) - log_ratio))  # the low-variance estimator k3 (Schulman 2020)
        clip_fraction = total(mean(((ratio - 1.0).abs() > config.clip_coef).float()))
    return LossTerms(loss, total(policy_loss), total(value_loss), total(entropy_mean), approx_kl, clip_fraction)


class AdaptiveKLController:
    """Beta of the KL penalty, steered toward a target KL (Ziegler et al. 2019, section 2.2)."""

    def __init__(self, init_beta: float, target: float | None, horizon: int) -> None:
        self.beta, self.target, self.horizon = float(init_beta), target, horizon

    def update(self, measured_kl: float, n_episodes: int) -> None:
        if self.target is None or self.beta == 0.0:
            return
        error = min(max(measured_kl / self.target - 1.0, -0.2), 0.2)
        self.beta *= 1.0 + error * n_episodes / self.horizon


@dataclass
class UpdateStats:
    """What one PPO update measured, averaged over its minibatches."""

    policy_loss: float = 0.0
    value_loss: float = 0.0
    entropy: float = 0.0
    approx_kl: float = 0.0
    clip_fraction: float = 0.0
    grad_norm: float = 0.0
    first_ratio_max_error: float = 0.0  # |ratio - 1| on the first minibatch: 0 up to float error
    first_clip_fraction: float = 0.0  # share of clipped ratios on the first minibatch: exactly 0
    minibatches: int = 0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class NonFiniteError(RuntimeError):
    """Training produced a NaN or infinity; the message names the quantity and the update."""


def check_finite_weights(policy: nn.Module, when: str) -> None:
    """Raise ``NonFiniteError`` if any parameter is NaN or infinite, so no such weights are ever saved."""
    for name, parameter in policy.named_parameters():
        if not torch.isfinite(parameter).all():
            raise NonFiniteError(
                f"the weight {name} became NaN or infinite after {when} (a learning rate too high?); nothing was saved"
            )


def ppo_update(
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollout,
    config: PPOConfig,
    generator: torch.Generator,
    update: int,
    processes: Processes = Processes(),
    loss: Callable[..., LossTerms] | None = None,
) -> UpdateStats:
    """``config.update_epochs`` passes of minibatch gradient steps over ``rollout``.

    ``loss(new_logprob, entropy, new_value, batch, total) -> LossTerms`` is the minibatch loss;
    by default PPO's (``ppo_loss``), and the critic-free trainers (``agents.critic_free``) bring theirs.

    Under ``torchrun`` ``policy`` is the DistributedDataParallel module and each process brings its
    own rollout: minibatch j is every process's chunk j, its loss is normalised over all of them,
    and since DDP averages gradients each share is scaled by the number of processes, so the step
    equals one process's step on the concatenated minibatch. Every process runs the same number
    of minibatches (early stopping reads the all-reduced KL).
    """
    stats = UpdateStats()
    totals = {name: 0.0 for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "grad_norm")}
    policy.train()
    stop = False
    for _ in range(config.update_epochs):
        for rows in rollout.minibatches(config.num_minibatches, generator):
            new_logprob, entropy, new_value = rollout.score(policy, rows)
            batch = rollout.batch(rows)
            total = processes.sum if processes.distributed else None
            if loss is None:
                terms = ppo_loss(
                    new_logprob,
                    batch.logprobs,
                    batch.advantages,
                    new_value,
                    batch.values,
                    batch.returns,
                    entropy,
                    batch.mask,
                    config,
                    total,
                )
            else:
                terms = loss(new_logprob, entropy, new_value, batch, total)
            if stats.minibatches == 0:
                ratio_error = ((new_logprob.detach() - batch.logprobs).exp() - 1).abs()[batch.mask]
                stats.first_ratio_max_error = float(ratio_error.max()) if ratio_error.numel() else 0.0
                stats.first_clip_fraction = float(terms.clip_fraction)
            if not torch.isfinite(terms.policy_loss + terms.value_loss + terms.entropy):
                raise NonFiniteError(
                    f"the PPO loss became {float(terms.loss.detach())} at update {update}; nothing was saved"
                )
            optimizer.zero_grad(set_to_none=True)
            (terms.loss * processes.world_size).backward()
            grad_norm = nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            if not math.isfinite(float(grad_norm)):
                raise NonFiniteError(
                    f"the gradient norm became {float(grad_norm)} at update {update}; nothing was saved"
                )
            optimizer.step()
            check_finite_weights(policy, f"a gradient step of update {update}")
            stats.minibatches += 1
            for name, value in (
                ("policy_loss", terms.policy_loss),
                ("value_loss", terms.value_loss),
                ("entropy", terms.entropy),
                ("approx_kl", terms.approx_kl),
                ("clip_fraction", terms.clip_fraction),
                ("grad_norm", grad_norm),
            ):
                totals[name] += float(value.detach())
            if config.target_kl is not None and float(terms.approx_kl) > config.target_kl:
                stop = True
                break
        if stop:
            break
    for name, total in totals.items():
        setattr(stats, name, total / max(stats.minibatches, 1))
    return stats
