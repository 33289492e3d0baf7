"""PPO for envs that are not dialog_gym token envs (e.g. CartPole-v1): an MLP on flat observations.

The same PPO maths and update as the token-env recipe (``agents.ppo``), without pretraining, a
reference policy or a KL penalty: the rollout is a fixed window of ``rollout_steps`` steps of
``num_envs`` parallel envs, and truncated episodes bootstrap from the value of their last state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.checkpoint import write_atomic
from agents.config import Seed, TrainConfig, pick_device, update_seed
from agents.distributed import Processes
from agents.metrics import explained_variance, metrics_row
from agents.mlp import MLPPolicy
from agents.ppo import NonFiniteError, advantages_and_returns, ppo_update
from agents.rollout import StepCollector

EVAL_EPISODES = 20


class GenericRun:
    """The state of a PPO run on a Gymnasium env with Discrete actions, and its update step."""

    def __init__(self, config: TrainConfig, out_dir: Path, progress: bool = True, processes: Processes | None = None):
        self.processes = processes or Processes()
        if self.processes.distributed:
            raise ValueError(f"{config.env} is not a dialog_gym env; run it in one process (without torchrun)")
        if config.policy != "transformer":
            raise ValueError(f"{config.env} is not a token env; hf: policies need one of dialog_gym's envs")
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.device = pick_device(config.device)
        torch.manual_seed(config.seed)
        self.envs = gym.wrappers.vector.RecordEpisodeStatistics(
            gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
        )
        space = self.envs.single_action_space
        if not isinstance(space, gym.spaces.Discrete):
            raise ValueError(
                f"{config.env} has a {type(space).__name__} action space; the PPO agent needs Discrete actions"
            )
        obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.policy = MLPPolicy(obs_dim, int(space.n), config.mlp_hidden).to(self.device)
        self.collector = StepCollector(self.envs, config.seed, self.device)
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.ppo.learning_rate, eps=config.ppo.adam_eps)
        self.update, self.env_steps, self.episodes = 0, 0, 0
        bootstrap = config.ppo.bootstrap_truncated
        self.bootstrap_truncated = True if bootstrap is None else bootstrap

    def step(self) -> dict[str, Any]:
        """One update: a window of steps, GAE, PPO epochs; returns the metrics row."""
        cfg, start = self.config, time.perf_counter()
        torch.manual_seed(update_seed(cfg.seed, self.update, Seed.TORCH_GLOBAL))
        if cfg.ppo.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.ppo.learning_rate * max(0.0, 1.0 - self.env_steps / cfg.total_steps)
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, self.update, Seed.SAMPLING))
        rollout = self.collector.collect(self.policy, cfg.rollout_steps, generator)
        if not torch.isfinite(rollout.env_rewards[rollout.mask]).all():
            raise NonFiniteError(f"a reward became non-finite at update {self.update}; nothing was saved")
        rollout.advantages, rollout.returns = advantages_and_returns(
            rollout, rollout.env_rewards, cfg.ppo, self.bootstrap_truncated
        )
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, self.update, Seed.MINIBATCHES))
        stats = ppo_update(self.policy, self.optimizer, rollout, cfg.ppo, generator, self.update)
        mask = rollout.mask
        returns, residuals = rollout.returns[mask].double(), (rollout.returns - rollout.values)[mask].double()
        self.update += 1
        self.env_steps += rollout.num_steps
        self.episodes += len(rollout.episode.get("return", []))
        return metrics_row(
            update=self.update,
            env_steps=self.env_steps,
            episodes=self.episodes,
            finished=rollout.episode,
            kl=0.0,
            beta=0.0,
            stats=stats,
            explained_variance=explained_variance(
                float(returns.sum()),
                float((returns**2).sum()),
                float(residuals.sum()),
                float((residuals**2).sum()),
                rollout.num_steps,
            ),
            learning_rate=self.optimizer.param_groups[0]["lr"],
            steps=rollout.num_steps,
            seconds=time.perf_counter() - start,
        )

    def save(self) -> None:
        """Nothing to save between updates: such runs are short and start again rather than resume."""

    def start(self, resume: bool) -> dict[str, Any]:
        if resume:
            raise ValueError(
                f"resuming is supported for dialog_gym's envs only; {self.config.env} runs are short: "
                "start again with a new --out"
            )
        return {}

    def final_evaluation(self) -> dict[str, Any]:
        """Mean return of the greedy policy over 20 episodes, saved as eval.json."""
        envs = gym.wrappers.vector.RecordEpisodeStatistics(
            gym.make_vec(self.config.env, num_envs=8, **self.config.env_args)
        )
        obs, _ = envs.reset(seed=self.config.seed + 12345)
        returns: list[float] = []
        with torch.no_grad():
            while len(returns) < EVAL_EPISODES:
                logits, _ = self.policy(torch.as_tensor(obs, device=self.device))
                obs, _, _, _, info = envs.step(logits.argmax(-1).cpu().numpy())
                if "_episode" in info:
                    returns += info["episode"]["r"][info["_episode"]].tolist()
        result = {"ppo": {"mean_return": float(np.mean(returns[:EVAL_EPISODES])), "episodes": EVAL_EPISODES}}
        write_atomic(self.out_dir / "eval.json", json.dumps(result, indent=2))
        return result
