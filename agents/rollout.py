"""Collecting experience: whole episodes from token envs, fixed-length step windows from other envs.

Every action keeps the log-probability and value of the policy that chose it; PPO's ratio is the
current policy's log-probability over that one, never two evaluations of the same model.

Token envs are played one batch of episodes at a time: each row of the native vector env plays
exactly one episode, with the Transformer's KV cache extended by whatever the env appended (the
agent's token, and the next question after an answer). The update then scores all of an episode's
actions with one causal forward pass over its final dialogue (``TokenRollout.evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.distributions import Categorical

from agents.policy import TransformerPolicy, real_tokens


@dataclass
class Batch:
    """The per-action tensors of a minibatch, all of one shape; ``mask`` marks real actions."""

    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    ref_logprobs: torch.Tensor | None = None  # the reference's log-probs of the actions (critic-free KL loss)
    loss_mask: torch.Tensor | None = None  # the actions the critic-free loss counts (mask, less dropped groups)


class TokenRollout:
    """B whole episodes: their final dialogues and, per agent step (B, T), what happened."""

    def __init__(
        self,
        tokens,
        action_index,
        actions,
        logprobs,
        values,
        next_values,
        rewards,
        terminated,
        truncated,
        mask,
        episode,
    ) -> None:
        self.tokens = tokens  # (B, L) the final dialogue, left-padded
        self.action_index = action_index  # (B, T) position in tokens whose logits chose action t
        self.actions, self.logprobs, self.values, self.next_values = actions, logprobs, values, next_values
        self.env_rewards, self.rewards = rewards, rewards.clone()  # rewards gets the KL penalty added
        self.kl = torch.zeros_like(rewards)  # per-action log pi - log pi_ref, filled in by the trainer
        self.ref_logprobs = torch.zeros_like(rewards)  # the reference's log pi_ref, filled in by the trainer
        self.loss_mask = mask  # the actions a critic-free loss counts (drop_equal_groups removes some)
        self.terminated, self.truncated, self.mask = terminated, truncated, mask
        self.episode = episode  # dict of numpy arrays (B,): return, length, correct, questions, success, ...
        last = mask.long().cumsum(1).argmax(1)  # each row's last real step
        self.done = torch.zeros_like(mask)
        self.done[torch.arange(len(mask)), last] = True
        self.advantages = torch.zeros_like(rewards)
        self.returns = torch.zeros_like(rewards)

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum())

    def __len__(self) -> int:
        return len(self.tokens)

    def score(self, policy: TransformerPolicy, rows: torch.Tensor | slice = slice(None)):
        """Log-probabilities of the taken actions, entropies and values, each (b, T), in one pass per episode."""
        logits, values = policy(self.tokens[rows])  # (b, L, V), (b, L)
        index = self.action_index[rows]
        picked = logits.gather(1, index[:, :, None].expand(-1, -1, logits.shape[-1]))  # (b, T, V)
        distribution = Categorical(logits=picked, validate_args=False)  # non-finite values are caught by the loss check
        return distribution.log_prob(self.actions[rows]), distribution.entropy(), values.gather(1, index)

    def minibatches(self, count: int, generator: torch.Generator):
        order = torch.randperm(len(self), generator=generator)
        yield from order.chunk(min(count, len(self)))

    def batch(self, rows) -> Batch:
        return Batch(
            self.actions[rows],
            self.logprobs[rows],
            self.values[rows],
            self.advantages[rows],
            self.returns[rows],
            self.mask[rows],
            self.ref_logprobs[rows],
            self.loss_mask[rows],
        )


@torch.no_grad()
def collect_episodes(
    envs,
    policy: TransformerPolicy,
    seed: int,
    generator: torch.Generator,
    device: torch.device,
    group_size: int = 1,
) -> TokenRollout:
    """Play one episode in every row of ``envs`` (a dialog_gym vector env), sampling from ``policy``.

    ``envs.reset(seed=seed)`` fixes the episodes and ``generator`` the sampled tokens, so a
    rollout is a pure function of the policy, ``seed`` and the generator's state. With
    ``group_size`` G > 1 rows in consecutive groups of G play the same episode (GRPO's groups).
    The env's window must hold whole dialogues (its default ``max_len`` does; ``check_window`` says).
    """
    policy.eval()
    n, window = envs.num_envs, envs.single_observation_space.shape[0]
    pad = policy.config.pad_id
    obs, info = envs.reset(seed=seed, options={"group_size": group_size} if group_size > 1 else None)
    tokens = torch.as_tensor(obs, device=device)
    length = real_tokens(tokens, pad).sum(1)  # real tokens seen by the model so far, per row
    logits, value, cache = policy.start(tokens)
    live = torch.arange(n, device=device)  # rows still playing, in the order of the cache
    final_tokens = torch.full((n, window), pad, dtype=torch.long, device=device)
    steps: list[dict[str, torch.Tensor]] = []
    episode = {}
    while len(live):
        distribution = Categorical(logits=logits)
        # Sampled on the CPU with a CPU generator, so CPU and CUDA runs draw the same tokens.
        action = torch.multinomial(distribution.probs.cpu(), 1, generator=generator).squeeze(1).to(device)
        record = {
            "rows": live,
            "action_index": length[live] - 1,
            "action": action,
            "logprob": distribution.log_prob(action),
            "value": value,
        }
        actions = np.zeros(n, np.int64)
        actions[live.cpu().numpy()] = action.cpu().numpy()
        obs, reward, terminated, truncated, info = envs.step(actions)
        rows_np = live.cpu().numpy()
        record["reward"] = torch.as_tensor(reward[rows_np], dtype=torch.float32, device=device)
        record["terminated"] = torch.as_tensor(terminated[rows_np], device=device)
        record["truncated"] = torch.as_tensor(truncated[rows_np], device=device)
        # What the env appended: the action, and after an answer the next question.
        new_obs = torch.as_tensor(obs[rows_np], device=device)
        new_length = real_tokens(new_obs, pad).sum(1)
        chunk, chunk_valid = appended_tokens(new_obs, new_length - length[live])
        logits, value, cache = policy.extend(chunk, chunk_valid, cache)
        length[live] = new_length
        record["next_value"] = value
        steps.append(record)
        ended = record["terminated"] | record["truncated"]
        if bool(ended.any()):
            final_tokens[live[ended]] = new_obs[ended]
            ended_rows = rows_np[ended.cpu().numpy()]
            for key, values in info["dialogue"].items():
                episode.setdefault(key, np.zeros(n, values.dtype))[ended_rows] = values[ended_rows]
            keep = ~ended
            live, logits, value, cache = live[keep], logits[keep], value[keep], cache.select(keep.nonzero().squeeze(1))
    return _stack(steps, n, final_tokens, length, episode, device)


def appended_tokens(obs: torch.Tensor, added: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``added[i]`` tokens of each left-padded row of ``obs`` (B, W): what the env appended since
    the policy last read the row, as (B, max added) ids and the mask of the real ones."""
    window = obs.shape[1]
    offsets = torch.arange(int(added.max()), device=obs.device)[None, :]
    chunk = obs.gather(1, (window - added[:, None] + offsets).clamp(max=window - 1))
    return chunk, offsets < added[:, None]


def _stack(steps, n, final_tokens, length, episode, device) -> TokenRollout:
    """Lay the per-step records out as (B, T) tensors; positions become indices into the padded dialogue."""
    horizon = len(steps)
    out = {
        key: torch.zeros(n, horizon, dtype=dtype, device=device)
        for key, dtype in (
            ("action_index", torch.long),
            ("action", torch.long),
            ("logprob", torch.float32),
            ("value", torch.float32),
            ("next_value", torch.float32),
            ("reward", torch.float32),
            ("terminated", torch.bool),
            ("truncated", torch.bool),
        )
    }
    mask = torch.zeros(n, horizon, dtype=torch.bool, device=device)
    for t, record in enumerate(steps):
        rows = record["rows"]
        mask[rows, t] = True
        for key in out:
            out[key][rows, t] = record[key].to(out[key].dtype)
    # The dialogue is left-padded to the window, so real position p sits at (window - length) + p.
    window = final_tokens.shape[1]
    out["action_index"] = torch.where(mask, out["action_index"] + (window - length)[:, None], 0)
    return TokenRollout(
        final_tokens,
        out["action_index"],
        out["action"],
        out["logprob"],
        out["value"],
        out["next_value"],
        out["reward"],
        out["terminated"],
        out["truncated"],
        mask,
        episode,
    )


def check_window(envs) -> None:
    """Refuse an env whose observation window can drop the start of a dialogue."""
    env = envs.unwrapped
    longest = env.full_dialogue_len
    if env.max_len < longest:
        raise ValueError(
            f"the env's max_len={env.max_len} can cut dialogues of up to {longest} tokens; the Transformer "
            f"policy reads whole dialogues, so leave max_len at its default or set it >= {longest}"
        )


class StepRollout:
    """T steps of N envs, laid out (N, T), for policies that act on one observation at a time."""

    def __init__(
        self, obs, actions, logprobs, values, next_values, rewards, terminated, truncated, mask, episode
    ) -> None:
        self.obs = obs  # (N, T, *obs_shape)
        self.actions, self.logprobs, self.values, self.next_values = actions, logprobs, values, next_values
        self.env_rewards, self.rewards = rewards, rewards.clone()
        self.terminated, self.truncated, self.mask = terminated, truncated, mask
        # The trace is cut at every episode end and at the fake autoreset steps (masked out).
        self.done = terminated | truncated | ~mask
        self.episode = episode
        self.advantages = torch.zeros_like(rewards)
        self.returns = torch.zeros_like(rewards)

    @property
    def num_steps(self) -> int:
        return int(self.mask.sum())

    def score(self, policy, rows):
        n, t = self.actions.shape
        flat_obs = self.obs.reshape(n * t, *self.obs.shape[2:])
        logits, values = policy(flat_obs[rows])
        distribution = Categorical(logits=logits, validate_args=False)  # non-finite values: the loss check
        return distribution.log_prob(self.actions.reshape(-1)[rows]), distribution.entropy(), values

    def minibatches(self, count: int, generator: torch.Generator):
        order = torch.randperm(self.actions.numel(), generator=generator)
        yield from order.chunk(min(count, len(order)))

    def batch(self, rows) -> Batch:
        flat = lambda x: x.reshape(-1)[rows]  # noqa: E731
        return Batch(
            flat(self.actions),
            flat(self.logprobs),
            flat(self.values),
            flat(self.advantages),
            flat(self.returns),
            flat(self.mask),
        )


class StepCollector:
    """Steps a Gymnasium vector env (next-step autoreset) and keeps the observation between rollouts."""

    def __init__(self, envs, seed: int, device: torch.device) -> None:
        self.envs, self.device = envs, device
        self.obs, _ = envs.reset(seed=seed)
        self.resetting = np.zeros(envs.num_envs, bool)  # the next step of this row is the autoreset
        self.returns = np.zeros(envs.num_envs)
        self.lengths = np.zeros(envs.num_envs, np.int64)

    @torch.no_grad()
    def collect(self, policy, steps: int, generator: torch.Generator) -> StepRollout:
        policy.eval()
        obs_buf, records, finished = [], [], {"return": [], "length": []}
        for _ in range(steps):
            obs = torch.as_tensor(self.obs, device=self.device)
            logits, value = policy(obs)
            distribution = Categorical(logits=logits)
            action = torch.multinomial(distribution.probs.cpu(), 1, generator=generator).squeeze(1).to(self.device)
            self.obs, reward, terminated, truncated, _ = self.envs.step(action.cpu().numpy())
            real = ~self.resetting
            self.returns = np.where(real, self.returns + reward, 0.0)
            self.lengths = np.where(real, self.lengths + 1, 0)
            ended = (terminated | truncated) & real
            finished["return"] += self.returns[ended].tolist()
            finished["length"] += self.lengths[ended].tolist()
            obs_buf.append(obs)
            records.append(
                (
                    action,
                    distribution.log_prob(action),
                    value,
                    torch.as_tensor(reward, dtype=torch.float32),
                    torch.as_tensor(terminated & real),
                    torch.as_tensor(truncated & real),
                    torch.as_tensor(real),
                )
            )
            self.resetting = terminated | truncated
        _, last_value = policy(torch.as_tensor(self.obs, device=self.device))
        stack = lambda i: torch.stack([r[i] for r in records], dim=1).to(self.device)  # noqa: E731  (N, T)
        values = stack(2)
        next_values = torch.cat([values[:, 1:], last_value[:, None]], dim=1)
        return StepRollout(
            torch.stack(obs_buf, dim=1),
            stack(0),
            stack(1),
            values,
            next_values,
            stack(3),
            stack(4),
            stack(5),
            stack(6),
            {key: np.array(v) for key, v in finished.items()},
        )
