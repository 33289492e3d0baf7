"""The training run: pretrain by maximum likelihood, then PPO with a KL leash, then evaluate.

``train(config, out_dir)`` is the whole recipe and ``dialog-gym train`` calls it. Read in order:
build env and policy -> pretrain (token envs) -> loop {rollout -> KL-penalised rewards -> GAE ->
PPO update -> log -> checkpoint} -> final evaluation table. Every random draw of update ``u`` is
seeded from ``(seed, u)``, so a resumed run continues exactly where the saved one stopped.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import yaml

import dialog_gym
from agents.agent import PolicyAgent
from agents.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    mark_latest,
    save_checkpoint,
    write_atomic,
)
from agents.distributed import Processes, start_processes, stop_processes
from agents.hf_policy import HF_PREFIX, AdaptersDisabled, HFPolicy, HFPolicyConfig, build_hf_policy
from agents.mlp import MLPPolicy
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import AdaptiveKLController, NonFiniteError, PPOConfig, gae, ppo_update
from agents.pretrain import PretrainConfig, pretrain
from agents.rollout import StepCollector, check_window, collect_episodes
from dialog_gym.hf_tokenizer import HFTokenizer


@dataclass
class ModelConfig:
    """Size of the Transformer policy (its vocabulary and context come from the env)."""

    n_layer: int = 2
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads."""
    d_model: int = 64
    """Residual width."""
    dropout: float = 0.0
    """Dropout (keep 0 for PPO)."""
    mlp_hidden: int = 64
    """Hidden units of the MLP policy used for envs that are not token envs."""
    lora_rank: int = 0
    """With an ``hf:`` policy: train LoRA adapters of this rank (needs peft) instead of every weight; 0 = off."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the adapters' update is scaled by alpha / rank)."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory."""

    env: str = "DialogQA-v0"
    """Registered env id."""
    env_args: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments of the env (``--env-arg KEY=VALUE``)."""
    policy: str = "transformer"
    """"transformer" (our own model, shaped by ``model``) or "hf:PATH": a transformers causal LM from a
    local model directory, or built fresh from a config.json (e.g. examples/tiny-gpt2)."""
    seed: int = 0
    """Seed of everything random: episodes, sampling, minibatches, initial weights."""
    total_steps: int = 300_000
    """Env steps (agent tokens) of PPO."""
    num_envs: int = 512
    """Episodes per rollout (token envs) or parallel envs (other envs)."""
    rollout_steps: int = 128
    """Steps per env per rollout, for envs that are not token envs."""
    pretrain: bool = True
    """Pretrain on demonstrations first (token envs); the result is also the KL reference."""
    device: str = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda"."""
    checkpoint_every: int = 10
    """Updates between checkpoints (the last update is always saved)."""
    eval_episodes: int = 1000
    """Test episodes per agent in the final table."""
    model: ModelConfig = field(default_factory=ModelConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    pretraining: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        for name in ("total_steps", "num_envs", "rollout_steps", "checkpoint_every", "eval_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.policy != "transformer" and not (
            isinstance(self.policy, str) and self.policy.startswith(HF_PREFIX) and self.policy[len(HF_PREFIX) :].strip()
        ):
            raise ValueError(
                f"policy must be 'transformer' or 'hf:PATH' (a model directory or config.json), got {self.policy!r}"
            )
        if (
            isinstance(self.model.lora_rank, bool)
            or not isinstance(self.model.lora_rank, int)
            or self.model.lora_rank < 0
        ):
            raise ValueError(f"model.lora_rank must be an integer >= 0, got {self.model.lora_rank!r}")
        if self.model.lora_rank and self.policy == "transformer":
            raise ValueError("model.lora_rank applies to hf: policies; set policy: hf:PATH or lora_rank: 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from nested dicts, naming any unknown key."""
        nested = {"model": ModelConfig, "ppo": PPOConfig, "pretraining": PretrainConfig}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; expected some of {sorted(known)}")
        kwargs = dict(data)
        for key, kind in nested.items():
            if key in kwargs:
                section = kwargs[key] or {}
                bad = sorted(set(section) - {f.name for f in fields(kind)})
                if bad:
                    raise ValueError(
                        f"unknown key(s) {bad} in config section {key!r}; expected some of "
                        f"{sorted(f.name for f in fields(kind))}"
                    )
                kwargs[key] = kind(**section)
        return cls(**kwargs)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The one place that chooses the device: CUDA when asked for or, with "auto", when present
    (under torchrun, the GPU of this process's local rank)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def update_seed(seed: int, update: int, purpose: int, rank: int = 0) -> int:
    """A 31-bit seed for one purpose of one update on one process, independent of every other."""
    key = [seed, update, purpose] + ([rank] if rank else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)


METRIC_COLUMNS = [
    "update",
    "env_steps",
    "episodes",
    "return",
    "answer_accuracy",
    "success_rate",
    "episode_length",
    "kl",
    "beta",
    "entropy",
    "policy_loss",
    "value_loss",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "learning_rate",
    "steps_per_second",
    "wall_seconds",
]
TIMING_COLUMNS = ("steps_per_second", "wall_seconds")


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


def with_model_tokenizer(config: TrainConfig) -> TrainConfig:
    """An ``hf:`` model directory that holds a tokenizer gives the env its vocabulary, unless one is set."""
    if config.policy == "transformer" or "tokenizer" in config.env_args:
        return config
    path = Path(config.policy[len(HF_PREFIX) :])
    if path.is_dir() and any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        return replace(config, env_args={**config.env_args, "tokenizer": str(path)})
    return config


def build_policy(config: TrainConfig, kernel) -> nn.Module:
    """The policy ``config.policy`` names, sized to the env's vocabulary and dialogue length."""
    allowed = torch.tensor(np.array(kernel.action_mask))
    tokenizer = kernel.tokenizer
    if config.policy == "transformer":
        m = config.model
        policy_config = PolicyConfig(
            vocab_size=tokenizer.vocab_size,
            context_len=kernel.max_len,
            n_layer=m.n_layer,
            n_head=m.n_head,
            d_model=m.d_model,
            dropout=m.dropout,
            pad_id=tokenizer.pad_id,
        )
        return TransformerPolicy(policy_config, allowed)
    spec = config.policy[len(HF_PREFIX) :]
    policy = build_hf_policy(
        spec,
        HFPolicyConfig(tokenizer.vocab_size, tokenizer.pad_id, kernel.max_len),
        allowed,
        config.model.lora_rank,
        config.model.lora_alpha,
        tokenizer.eos_id,
    )
    speaks_hf = isinstance(tokenizer, HFTokenizer)
    if policy.loaded_weights and not speaks_hf:
        raise ValueError(
            f"{spec} holds trained weights for its own vocabulary, but {config.env} speaks its built-in one; "
            f"pass the model's tokenizer with --env-arg tokenizer=DIR"
        )
    if speaks_hf and policy.model_vocab < tokenizer.hf_size:
        raise ValueError(
            f"the model's embedding has {policy.model_vocab} rows but the tokenizer has {tokenizer.hf_size} "
            "tokens; use the tokenizer the model was trained with"
        )
    return policy


class Run:
    """The state of a training run and the loop that advances it."""

    def __init__(
        self, config: TrainConfig, out_dir: Path, progress: bool = True, processes: Processes | None = None
    ) -> None:
        self.processes = processes or Processes()
        self.config = config = with_model_tokenizer(config)
        self.out_dir = Path(out_dir)
        self.progress = progress and self.processes.is_main
        self.device = pick_device(config.device, self.processes.local_rank)
        probe = gym.make(config.env, **config.env_args).unwrapped
        self.token_env = isinstance(probe, dialog_gym.DialogEnv)
        if self.token_env:
            check_token_env(config, probe.task)
        elif config.policy != "transformer":
            raise ValueError(f"{config.env} is not a token env; hf: policies need one of dialog_gym's envs")
        torch.manual_seed(config.seed)
        if self.token_env:
            self.envs = gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
            check_window(self.envs)
            self.policy = build_policy(config, self.envs.unwrapped.kernel).to(self.device)
            self.policy_config = self.policy.config
        else:
            self.envs = gym.wrappers.vector.RecordEpisodeStatistics(
                gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
            )
            space = self.envs.single_action_space
            if not isinstance(space, gym.spaces.Discrete):
                raise ValueError(
                    f"{config.env} has a {type(space).__name__} action space; the PPO agent needs Discrete actions"
                )
            obs_dim = int(np.prod(self.envs.single_observation_space.shape))
            self.policy = MLPPolicy(obs_dim, int(space.n), config.model.mlp_hidden).to(self.device)
            self.collector = StepCollector(self.envs, config.seed + self.processes.rank * config.num_envs, self.device)
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
        self.reference = None
        if self.token_env:
            lora = isinstance(self.policy, HFPolicy) and self.policy.has_adapters
            self.reference = AdaptersDisabled(self.policy) if lora else copy.deepcopy(self.policy).eval()
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.ppo.learning_rate, eps=config.ppo.adam_eps)
        beta = config.ppo.kl_coef if self.token_env and config.pretrain else 0.0
        self.kl = AdaptiveKLController(beta, config.ppo.kl_target, config.ppo.kl_horizon)
        self.update, self.env_steps, self.episodes = 0, 0, 0
        self.checkpoints = self.out_dir / "checkpoints"

    @property
    def reference_is_copy(self) -> bool:
        return isinstance(self.reference, nn.Module)

    # -- pretraining ----------------------------------------------------------------------------

    def run_pretraining(self) -> dict[str, Any]:
        cfg = self.config.pretraining
        env = self.envs.unwrapped
        demos = env.demonstrations(cfg.demonstrations, seed=self.config.seed, noise=cfg.demo_noise)
        generator = torch.Generator().manual_seed(update_seed(self.config.seed, 0, 9))
        bar = _bar(cfg.epochs * -(-len(demos) // cfg.batch_size), "pretraining", self.progress)
        losses = pretrain(
            self.trainable,
            demos,
            cfg,
            generator,
            self.device,
            progress=lambda epoch, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")),
            processes=self.processes,
        )
        bar.close()
        if self.reference_is_copy:
            self.reference.load_state_dict(self.policy.state_dict())
        if self.processes.is_main:
            save_checkpoint(
                self.checkpoints / "pretrained", self.policy, None, {"demo_accuracy": demos.accuracy, "losses": losses}
            )
        return {"demo_accuracy": demos.accuracy, "losses": losses}

    # -- one PPO update -------------------------------------------------------------------------

    def collect(self, rank: int | None = None):
        """This process's rollout of the current update (``rank`` picks another process's seeds), with
        KL-penalised rewards and GAE advantages."""
        cfg, update = self.config, self.update
        rank = self.processes.rank if rank is None else rank
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, update, 1, rank))
        if self.token_env:
            rollout = collect_episodes(
                self.envs, self.policy, update_seed(cfg.seed, update, 2, rank), generator, self.device
            )
            with torch.no_grad():
                self.reference.eval()
                ref_logprob, _, _ = rollout.score(self.reference)
            kl = (rollout.logprobs - ref_logprob) * rollout.mask
            rollout.rewards = rollout.env_rewards - self.kl.beta * kl
            rollout.kl_sum = float(kl.sum())
        else:
            rollout = self.collector.collect(self.policy, cfg.rollout_steps, generator)
            rollout.kl_sum = 0.0
        if not torch.isfinite(rollout.rewards[rollout.mask]).all():
            raise NonFiniteError(f"a reward became non-finite at update {update}; nothing was saved")
        bootstrap = cfg.ppo.bootstrap_truncated
        if bootstrap is None:
            bootstrap = not self.token_env
        no_bootstrap = rollout.terminated if bootstrap else rollout.terminated | rollout.truncated
        rollout.advantages, rollout.returns = gae(
            rollout.rewards,
            rollout.values,
            rollout.next_values,
            no_bootstrap,
            rollout.done,
            cfg.ppo.gamma,
            cfg.ppo.gae_lambda,
        )
        rollout.advantages = rollout.advantages * rollout.mask
        return rollout

    def step(self) -> dict[str, Any]:
        """One update: rollout, KL-penalised rewards, GAE, PPO epochs; returns the metrics row.

        With several processes every number in the row covers all of them (sums and means are
        all-reduced), so beta, the learning rate and the step counts stay identical everywhere.
        """
        cfg, start, processes = self.config, time.perf_counter(), self.processes
        torch.manual_seed(
            update_seed(cfg.seed, self.update, 4, processes.rank)
        )  # dropout, if any, replays on resume too
        if cfg.ppo.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.ppo.learning_rate * max(0.0, 1.0 - self.env_steps / cfg.total_steps)
        rollout = self.collect()
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, self.update, 3, processes.rank))
        stats = ppo_update(self.trainable, self.optimizer, rollout, cfg.ppo, generator, self.update, processes)
        mask = rollout.mask
        returns, residuals = rollout.returns[mask].double(), (rollout.returns - rollout.values)[mask].double()
        rows = len(mask) if self.token_env else 1
        steps, kl_sum, n_rows, s1, s2, r1, r2 = processes.sum_floats(
            rollout.num_steps,
            rollout.kl_sum,
            rows,
            returns.sum(),
            (returns**2).sum(),
            residuals.sum(),
            (residuals**2).sum(),
        )
        kl_per_episode = kl_sum / n_rows if self.token_env else 0.0
        self.kl.update(kl_per_episode, int(n_rows))  # beta is 0 (and stays so) for envs that are not token envs
        self.update += 1
        self.env_steps += int(steps)
        episode = processes.gather_arrays(rollout.episode)
        self.episodes += len(episode.get("return", []))
        variance = s2 / steps - (s1 / steps) ** 2 if steps > 1 else 0.0
        residual = r2 / steps - (r1 / steps) ** 2 if steps > 1 else 0.0
        seconds = time.perf_counter() - start
        return {
            "update": self.update,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "return": _mean(episode.get("return")),
            "answer_accuracy": _ratio(episode.get("correct"), episode.get("questions")),
            "success_rate": _mean(episode.get("success")),
            "episode_length": _mean(episode.get("length")),
            "kl": kl_per_episode,
            "beta": self.kl.beta,
            "entropy": stats.entropy,
            "policy_loss": stats.policy_loss,
            "value_loss": stats.value_loss,
            "approx_kl": stats.approx_kl,
            "clip_fraction": stats.clip_fraction,
            "explained_variance": 1.0 - residual / variance if variance > 1e-12 else float("nan"),
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "steps_per_second": steps / seconds,
            "wall_seconds": seconds,
        }

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self) -> None:
        """Rank 0 writes the checkpoint (every process holds the same weights)."""
        if not self.processes.is_main:
            return
        name = f"update-{self.update:06d}"
        save_checkpoint(
            self.checkpoints / name,
            self.policy,
            self.optimizer,
            {
                "update": self.update,
                "env_steps": self.env_steps,
                "episodes": self.episodes,
                "beta": self.kl.beta,
                "seed": self.config.seed,
                "processes": self.processes.world_size,
            },
        )
        mark_latest(self.checkpoints, name)
        for old in sorted(self.checkpoints.glob("update-*"))[:-2]:
            shutil.rmtree(old, ignore_errors=True)

    def restore(self) -> None:
        if not self.token_env:
            raise ValueError("resuming is supported for token envs only; rerun an MLP run from the start")
        checkpoint = latest_checkpoint(self.checkpoints)
        meta = load_checkpoint(checkpoint, self.policy, self.optimizer, self.device)
        for key in ("update", "env_steps", "episodes"):
            if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), int) or meta[key] < 0:
                raise CheckpointError(
                    f"{checkpoint / 'state.json'}: {key!r} must be a non-negative integer, got {meta.get(key)!r}"
                )
        if not isinstance(meta.get("beta"), (int, float)) or not math.isfinite(meta["beta"]) or meta["beta"] < 0:
            raise CheckpointError(
                f"{checkpoint / 'state.json'}: 'beta' must be a non-negative number, got {meta.get('beta')!r}"
            )
        saved_by = meta.get("processes", 1)
        if saved_by != self.processes.world_size:
            raise CheckpointError(
                f"{checkpoint}: saved by a run of {saved_by} process(es); resume it with the same number "
                f"(torchrun --nproc_per_node={saved_by}), since each process plays its own episodes"
            )
        self.update, self.env_steps, self.episodes = meta["update"], meta["env_steps"], meta["episodes"]
        self.kl.beta = float(meta["beta"])
        if self.reference_is_copy:
            reference = self.checkpoints / ("pretrained" if self.config.pretrain else "initial")
            load_checkpoint(reference, self.reference, None, self.device)

    def save_model(self) -> Path | None:
        """An ``hf:`` policy's final weights as a directory ``from_pretrained`` loads (rank 0)."""
        if not isinstance(self.policy, HFPolicy) or not self.processes.is_main:
            return None
        tokenizer = self.envs.unwrapped.tokenizer
        hf_tokenizer = tokenizer.hf if isinstance(tokenizer, HFTokenizer) else None
        return self.policy.save_pretrained(self.out_dir / "model", hf_tokenizer)


def _mean(values) -> float:
    return float(np.mean(values)) if values is not None and len(values) else float("nan")


def _ratio(numerator, denominator) -> float:
    if numerator is None or denominator is None or np.sum(denominator) == 0:
        return float("nan")
    return float(np.sum(numerator) / np.sum(denominator))


def _bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, dynamic_ncols=True, leave=True)


class MetricsLog:
    """metrics.csv plus TensorBoard event files in the run directory."""

    def __init__(self, out_dir: Path, keep_until: int, purge_step: int | None = None) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        rows = []
        if self.path.exists():
            with open(self.path, newline="") as handle:
                rows = [row for row in csv.DictReader(handle) if int(row["update"]) <= keep_until]
        text = (
            ",".join(METRIC_COLUMNS) + "\n" + "".join(",".join(row[c] for c in METRIC_COLUMNS) + "\n" for row in rows)
        )
        write_atomic(self.path, text)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(",".join(_format(row[c]) for c in METRIC_COLUMNS) + "\n")
        for key in METRIC_COLUMNS[1:]:
            if isinstance(row[key], float) and math.isfinite(row[key]):
                self.writer.add_scalar(f"train/{key}", row[key], row["env_steps"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _format(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def train(
    config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True, stop_after: int | None = None
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the recipe in ``out_dir``; returns the final evaluation.

    Under ``torchrun`` every process calls this; rank 0 writes the run directory and returns the
    evaluation, the others return ``{}``. ``stop_after`` ends the run after that many updates
    without the final evaluation, as an interrupted run would (used to test resuming).
    """
    processes = start_processes(config.device)
    try:
        results = _train(config, Path(out_dir), resume, progress, stop_after, processes)
    except BaseException:
        if processes.distributed:
            torch.distributed.destroy_process_group()
        raise
    stop_processes(processes)
    return results


def _train(
    config: TrainConfig, out_dir: Path, resume: bool, progress: bool, stop_after: int | None, processes: Processes
) -> dict[str, Any]:
    if not resume and (out_dir / "config.yaml").exists():
        raise ValueError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    processes.barrier()  # every process has checked before rank 0 writes anything
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(config, out_dir, progress, processes)
    main = processes.is_main
    summary: dict[str, Any] = {}
    if resume:
        run.restore()
    else:
        if main:
            write_atomic(out_dir / "config.yaml", yaml.safe_dump(run.config.to_dict(), sort_keys=False))
        if run.token_env and config.pretrain:
            summary["pretraining"] = run.run_pretraining()
        elif run.token_env and run.reference_is_copy and main:
            save_checkpoint(run.checkpoints / "initial", run.reference, None, {})
    log = MetricsLog(out_dir, keep_until=run.update, purge_step=run.env_steps if resume else None) if main else None
    bar = _bar(config.total_steps, "PPO env steps", run.progress)
    bar.update(min(run.env_steps, config.total_steps))
    try:
        while run.env_steps < config.total_steps and (stop_after is None or run.update < stop_after):
            row = run.step()
            if log is not None:
                log.write(row)
            bar.update(min(row["env_steps"], config.total_steps) - bar.n)
            bar.set_postfix(
                ret=f"{row['return']:.3f}",
                acc=f"{row['answer_accuracy']:.3f}",
                kl=f"{row['kl']:.3f}",
                beta=f"{row['beta']:.3f}",
            )
            if run.update % config.checkpoint_every == 0 or run.env_steps >= config.total_steps:
                run.save()
    finally:
        bar.close()
        if log is not None:
            log.close()
    if not processes.same_everywhere(run.policy.state_dict().values()):
        raise RuntimeError(
            "the processes ended with different weights; their updates diverged (a bug, please report it)"
        )
    if run.env_steps < config.total_steps or not main:
        return {}
    run.save_model()
    return summary | final_evaluation(run)


def final_evaluation(run: Run) -> dict[str, Any]:
    """The test-split table: random agent, pretrained-only policy and PPO policy, saved as eval.json."""
    cfg = run.config
    evaluate = lambda agent: dialog_gym.evaluate(  # noqa: E731
        agent, cfg.env, episodes=cfg.eval_episodes, seed=cfg.seed + 12345, split="test", **cfg.env_args
    )
    if not run.token_env:
        return {"ppo": _evaluate_mlp(run)}
    results: dict[str, Any] = {"random": evaluate(dialog_gym.RandomAgent(cfg.seed))}
    pretrained = run.checkpoints / "pretrained"
    if (pretrained / "state.json").exists():
        model = copy.deepcopy(run.policy)
        meta = load_checkpoint(pretrained, model, None, run.device)
        results["pretrained"] = evaluate(PolicyAgent(model, seed=cfg.seed, device=run.device))
        results["demonstrations"] = {"answer_accuracy": meta["demo_accuracy"]}
    results["ppo"] = evaluate(PolicyAgent(run.policy, seed=cfg.seed, device=run.device))
    results["ppo_greedy"] = evaluate(PolicyAgent(run.policy, greedy=True, device=run.device))
    write_atomic(run.out_dir / "eval.json", json.dumps(results, indent=2))
    return results


def _evaluate_mlp(run: Run) -> dict[str, float]:
    envs = gym.wrappers.vector.RecordEpisodeStatistics(gym.make_vec(run.config.env, num_envs=8, **run.config.env_args))
    obs, _ = envs.reset(seed=run.config.seed + 12345)
    returns: list[float] = []
    with torch.no_grad():
        while len(returns) < 20:
            logits, _ = run.policy(torch.as_tensor(obs, device=run.device))
            obs, _, _, _, info = envs.step(logits.argmax(-1).cpu().numpy())
            if "_episode" in info:
                returns += info["episode"]["r"][info["_episode"]].tolist()
    result = {"mean_return": float(np.mean(returns[:20])), "episodes": 20}
    write_atomic(run.out_dir / "eval.json", json.dumps({"ppo": result}, indent=2))
    return result
