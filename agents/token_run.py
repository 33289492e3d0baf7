"""``TokenRun``: a training run on a dialog_gym token env, one update at a time.

It builds env, policy and reference -> ``pretrain`` -> each ``step``: ``collect`` (rollout,
KL-penalised rewards, advantages: ``agents.ppo``) -> ``ppo_update`` -> metrics row; ``save`` and
``restore`` checkpoint it, ``final_evaluation`` scores it. A critic-free ``algo`` (GRPO, RLOO, ...:
``agents.critic_free``) changes two steps only: the advantages in ``collect`` and the minibatch loss
of the update. Every random draw of update ``u`` is seeded from ``(seed, u, purpose)``, so a resumed
run continues exactly where the saved one stopped. ``agents.train`` drives it.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import torch.nn as nn

import dialog_gym
from agents.agent import PolicyAgent
from agents.build import build_policy, with_model_tokenizer
from agents.checkpoint import (
    CheckpointError,
    find_latest,
    is_complete,
    load_checkpoint,
    mark_latest,
    save_checkpoint,
    write_atomic,
)
from agents.config import Seed, TrainConfig, pick_device, update_seed
from agents.critic_free import GROUPED, assign_advantages, loss_function
from agents.distributed import Processes
from agents.evaluate import evaluate_policy
from agents.hf_policy import AdaptersDisabled, HFPolicy
from agents.metrics import explained_variance, metrics_row, progress_bar
from agents.ppo import AdaptiveKLController, NonFiniteError, advantages_and_returns, kl_penalised_rewards, ppo_update
from agents.pretrain import pretrain
from agents.pretrained import is_pretrained_spec
from agents.rollout import TokenRollout, check_window, collect_episodes
from dialog_gym.hf_tokenizer import HFTokenizer

PRETRAINED, INITIAL = "pretrained", "initial"


def check_token_env(config: TrainConfig, task) -> None:
    """Refuse settings that would fail late: no episodes to train or test on, or noise set twice."""
    if "demo_noise" in config.env_args:
        raise ValueError(
            "set the noise of the pretraining data with pretraining.demo_noise in the config; the env argument "
            "demo_noise only sets the default of env.demonstrations()"
        )
    for split in ("train", "test"):
        if task.num_examples(split) == 0:
            raise ValueError(
                f"the env's {split!r} split holds no episode; training needs both splits (for a dataset= file, "
                f'mark some lines "split": "{split}")'
            )


class TokenRun:
    """The state of a training run on a dialog_gym token env and the update that advances it."""

    def __init__(
        self, config: TrainConfig, out_dir: Path, progress: bool = True, processes: Processes | None = None
    ) -> None:
        self.processes = processes or Processes()
        self.config = config = with_model_tokenizer(config)
        self.out_dir = Path(out_dir)
        self.progress = progress and self.processes.is_main
        self.device = pick_device(config.device, self.processes.local_rank)
        torch.manual_seed(config.seed)
        self.envs = gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
        check_token_env(config, self.envs.unwrapped.task)
        check_window(self.envs)
        self.policy = build_policy(config, self.envs).to(self.device)
        # Gradients flow through the DistributedDataParallel wrapper when there are several processes;
        # rollouts and evaluation use the plain module (same parameters).
        self.trainable = self.policy
        if self.processes.distributed:
            from torch.nn.parallel import DistributedDataParallel

            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.trainable = DistributedDataParallel(self.policy, device_ids=device_ids)
        # The KL penalty keeps PPO near the pretrained policy; without pretraining there is no
        # policy worth staying near, so beta is 0 (and the KL to the initial policy is still logged).
        # A LoRA policy's reference is its base model with the adapters switched off: no second copy.
        lora = isinstance(self.policy, HFPolicy) and self.policy.has_adapters
        self.reference = AdaptersDisabled(self.policy) if lora else copy.deepcopy(self.policy).eval()
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.ppo.learning_rate, eps=config.ppo.adam_eps)
        beta = config.ppo.kl_coef if config.pretrain else 0.0
        self.kl = AdaptiveKLController(beta, config.ppo.kl_target, config.ppo.kl_horizon)
        bootstrap = config.ppo.bootstrap_truncated
        self.bootstrap_truncated = False if bootstrap is None else bootstrap
        self.update, self.env_steps, self.episodes = 0, 0, 0
        self.checkpoints = self.out_dir / "checkpoints"

    @property
    def reference_is_copy(self) -> bool:
        return isinstance(self.reference, nn.Module)

    @property
    def start_checkpoint(self) -> Path:
        """Where the policy PPO starts from is saved: after pretraining, or as initialised."""
        return self.checkpoints / (PRETRAINED if self.config.pretrain else INITIAL)

    # -- before the first update ----------------------------------------------------------------

    def start(self, resume: bool) -> dict[str, Any]:
        """Pretrain (or record the initial policy) unless a resumed run has done so already.

        A resumed run continues from its newest complete checkpoint; one stopped before its first
        update continues from the saved pretrained policy; one stopped during pretraining starts it
        again (it is seeded, so the result is the same).
        """
        if resume and self.restore():
            return {}
        if resume and is_complete(self.start_checkpoint):
            load_checkpoint(self.start_checkpoint, self.policy, None, self.device)
            self._set_reference()
            return {}
        summary: dict[str, Any] = {}
        if self.config.pretrain:
            summary["pretraining"] = self.run_pretraining()
        elif self.processes.is_main:
            save_checkpoint(self.start_checkpoint, self.policy, None, {})
        return summary

    def _set_reference(self) -> None:
        """Make the pretrained policy the KL reference: copy it, or (LoRA) fold the adapters into the base
        weights that the reference, the same model with its adapters off, reads."""
        if self.reference_is_copy:
            self.reference.load_state_dict(self.policy.state_dict())
        elif isinstance(self.policy, HFPolicy) and self.policy.has_adapters:
            self.policy.fold_adapters()

    def run_pretraining(self) -> dict[str, Any]:
        cfg = self.config.pretraining
        env = self.envs.unwrapped
        demos = env.demonstrations(cfg.demonstrations, seed=self.config.seed, noise=cfg.demo_noise)
        generator = torch.Generator().manual_seed(update_seed(self.config.seed, 0, Seed.PRETRAINING))
        bar = progress_bar(cfg.epochs * -(-len(demos) // cfg.batch_size), "pretraining", self.progress)

        def report(epoch: int, loss: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}")

        losses = pretrain(self.trainable, demos, cfg, generator, self.device, report, self.processes)
        bar.close()
        self._set_reference()
        summary = {"demo_accuracy": demos.accuracy, "losses": losses}
        if self.processes.is_main:
            save_checkpoint(self.start_checkpoint, self.policy, None, summary)
        return summary

    # -- one PPO update -------------------------------------------------------------------------

    def collect(self, rank: int | None = None) -> TokenRollout:
        """This process's rollout of the current update (``rank`` picks another process's seeds), with
        KL-penalised rewards and GAE advantages."""
        cfg, update = self.config, self.update
        rank = self.processes.rank if rank is None else rank
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, update, Seed.SAMPLING, rank))
        episodes_seed = update_seed(cfg.seed, update, Seed.EPISODES, rank)
        group = cfg.critic_free.group_size if cfg.algo in GROUPED else 1
        rollout = collect_episodes(self.envs, self.policy, episodes_seed, generator, self.device, group)
        with torch.no_grad():
            self.reference.eval()
            rollout.ref_logprobs, _, _ = rollout.score(self.reference)
        rollout.rewards, rollout.kl = kl_penalised_rewards(
            rollout.env_rewards, rollout.logprobs, rollout.ref_logprobs, rollout.mask, self.kl.beta
        )
        if cfg.algo == "ppo":
            rollout.advantages, rollout.returns = advantages_and_returns(
                rollout, rollout.rewards, cfg.ppo, self.bootstrap_truncated
            )
        else:
            total = self.processes.sum if self.processes.distributed else None
            assign_advantages(rollout, cfg.algo, cfg.critic_free, self.kl.beta, cfg.ppo.gamma, total)
        if not torch.isfinite(rollout.rewards[rollout.mask]).all():
            raise NonFiniteError(f"a reward became non-finite at update {update}; nothing was saved")
        return rollout

    def loss(self):
        """The minibatch loss of ``config.algo``: None for PPO's own (``agents.ppo.ppo_loss``)."""
        cfg = self.config
        if cfg.algo == "ppo":
            return None
        env = self.envs.unwrapped
        most_agent_tokens = env.task.limits.max_turns * env.max_answer_tokens  # Dr. GRPO's constant normaliser
        return loss_function(
            cfg.algo, cfg.critic_free, cfg.ppo.clip_coef, cfg.ppo.ent_coef, self.kl.beta, most_agent_tokens
        )

    def step(self) -> dict[str, Any]:
        """One update: rollout, KL-penalised rewards, GAE, PPO epochs; returns the metrics row.

        With several processes every number in the row covers all of them (sums and means are
        all-reduced), so beta, the learning rate and the step counts stay identical everywhere.
        """
        cfg, start, processes = self.config, time.perf_counter(), self.processes
        # dropout, if any, replays on resume too
        torch.manual_seed(update_seed(cfg.seed, self.update, Seed.TORCH_GLOBAL, processes.rank))
        if cfg.ppo.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.ppo.learning_rate * max(0.0, 1.0 - self.env_steps / cfg.total_steps)
        rollout = self.collect()
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, self.update, Seed.MINIBATCHES, processes.rank))
        stats = ppo_update(
            self.trainable, self.optimizer, rollout, cfg.ppo, generator, self.update, processes, self.loss()
        )
        mask = rollout.mask
        returns, residuals = rollout.returns[mask].double(), (rollout.returns - rollout.values)[mask].double()
        steps, kl_sum, n_rows, s1, s2, r1, r2 = processes.sum_floats(
            rollout.num_steps,
            float(rollout.kl.sum()),
            len(mask),
            returns.sum(),
            (returns**2).sum(),
            residuals.sum(),
            (residuals**2).sum(),
        )
        kl_per_episode = kl_sum / n_rows
        self.kl.update(kl_per_episode, int(n_rows))
        self.update += 1
        self.env_steps += int(steps)
        finished = processes.gather_arrays(rollout.episode)
        self.episodes += len(finished.get("return", []))
        return metrics_row(
            update=self.update,
            env_steps=self.env_steps,
            episodes=self.episodes,
            finished=finished,
            kl=kl_per_episode,
            beta=self.kl.beta,
            stats=stats,
            explained_variance=explained_variance(s1, s2, r1, r2, steps) if cfg.algo == "ppo" else float("nan"),
            learning_rate=self.optimizer.param_groups[0]["lr"],
            steps=steps,
            seconds=time.perf_counter() - start,
        )

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self) -> None:
        """Rank 0 writes the checkpoint (every process holds the same weights)."""
        if not self.processes.is_main:
            return
        name = f"update-{self.update:06d}"
        state = {
            "update": self.update,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "beta": self.kl.beta,
            "seed": self.config.seed,
            "processes": self.processes.world_size,
        }
        save_checkpoint(self.checkpoints / name, self.policy, self.optimizer, state)
        mark_latest(self.checkpoints, name)
        for old in sorted(self.checkpoints.glob("update-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self) -> bool:
        """Load the newest complete update checkpoint; False when the run has saved none yet."""
        checkpoint = find_latest(self.checkpoints)
        if checkpoint is None:
            return False
        meta = load_checkpoint(checkpoint, self.policy, self.optimizer, self.device)
        state_file = checkpoint / "state.json"
        for key in ("update", "env_steps", "episodes"):
            if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), int) or meta[key] < 0:
                raise CheckpointError(f"{state_file}: {key!r} must be a non-negative integer, got {meta.get(key)!r}")
        beta = meta.get("beta")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
            raise CheckpointError(f"{state_file}: 'beta' must be a non-negative number, got {beta!r}")
        saved_by = meta.get("processes", 1)
        if saved_by != self.processes.world_size:
            raise CheckpointError(
                f"{checkpoint}: saved by a run of {saved_by} process(es); resume it with the same number "
                f"(torchrun --nproc_per_node={saved_by}), since each process plays its own episodes"
            )
        self.update, self.env_steps, self.episodes = meta["update"], meta["env_steps"], meta["episodes"]
        self.kl.beta = float(beta)
        if self.reference_is_copy:
            load_checkpoint(self.start_checkpoint, self.reference, None, self.device)
        return True

    def save_model(self) -> Path | None:
        """An ``hf:`` policy's final weights as a directory ``from_pretrained`` loads (rank 0)."""
        if not isinstance(self.policy, HFPolicy) or not self.processes.is_main:
            return None
        tokenizer = self.envs.unwrapped.tokenizer
        hf_tokenizer = tokenizer.hf if isinstance(tokenizer, HFTokenizer) else None
        return self.policy.save_pretrained(self.out_dir / "model", hf_tokenizer)

    # -- after the last update ------------------------------------------------------------------

    def final_evaluation(self) -> dict[str, Any]:
        """The test-split table: random agent, pretrained-only policy and PPO policy, saved as eval.json."""
        cfg = self.config
        self.save_model()

        def evaluate(agent) -> dict[str, float]:
            return dialog_gym.evaluate(
                agent, cfg.env, episodes=cfg.eval_episodes, seed=cfg.seed + 12345, split="test", **cfg.env_args
            )

        def score(policy: nn.Module, greedy: bool) -> dict[str, float]:
            # A pretrained language model is too slow to re-read every observation at every step: it
            # plays with its KV cache (agents.evaluate), which also scores its answers by exact match and
            # by the task's own reward (e.g. keyword), whatever reward the run trains on.
            if is_pretrained_spec(cfg.policy):
                own = self.envs.unwrapped.task.default_reward
                return evaluate_policy(
                    policy,
                    cfg.env,
                    cfg.eval_episodes,
                    cfg.seed + 12345,
                    "test",
                    greedy,
                    device=self.device,
                    rewards=tuple(dict.fromkeys(("exact", own))),
                    **cfg.env_args,
                )
            return evaluate(PolicyAgent(policy, greedy=greedy, seed=cfg.seed, device=self.device))

        results: dict[str, Any] = {"random": evaluate(dialog_gym.RandomAgent(cfg.seed))}
        pretrained = self.checkpoints / PRETRAINED
        if (pretrained / "state.json").exists():
            model = copy.deepcopy(self.policy)
            meta = load_checkpoint(pretrained, model, None, self.device)
            results["pretrained"] = score(model, greedy=False)
            results["demonstrations"] = {"answer_accuracy": meta["demo_accuracy"]}
        results[cfg.algo] = score(self.policy, greedy=False)
        results[f"{cfg.algo}_greedy"] = score(self.policy, greedy=True)
        write_atomic(self.out_dir / "eval.json", json.dumps(results, indent=2))
        return results
