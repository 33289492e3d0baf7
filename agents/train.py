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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
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
from agents.mlp import MLPPolicy
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import AdaptiveKLController, NonFiniteError, PPOConfig, gae, ppo_update
from agents.pretrain import PretrainConfig, pretrain
from agents.rollout import StepCollector, check_window, collect_episodes


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


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory."""

    env: str = "DialogQA-v0"
    """Registered env id."""
    env_args: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments of the env (``--env-arg KEY=VALUE``)."""
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
                    raise ValueError(f"unknown key(s) {bad} in config section {key!r}; expected some of "
                                     f"{sorted(f.name for f in fields(kind))}")  # fmt: skip
                kwargs[key] = kind(**section)
        return cls(**kwargs)


def pick_device(name: str) -> torch.device:
    """The one place that chooses the device: CUDA when asked for or, with "auto", when present."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def update_seed(seed: int, update: int, purpose: int) -> int:
    """A 31-bit seed for one purpose of one update, independent of every other (seed, update, purpose)."""
    return int(np.random.SeedSequence([seed, update, purpose]).generate_state(1)[0] >> 1)


METRIC_COLUMNS = [
    "update", "env_steps", "episodes", "return", "answer_accuracy", "success_rate", "episode_length", "kl", "beta",
    "entropy", "policy_loss", "value_loss", "approx_kl", "clip_fraction", "explained_variance", "learning_rate",
    "steps_per_second", "wall_seconds",
]  # fmt: skip
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


class Run:
    """The state of a training run and the loop that advances it."""

    def __init__(self, config: TrainConfig, out_dir: Path, progress: bool = True) -> None:
        self.config, self.out_dir, self.progress = config, Path(out_dir), progress
        self.device = pick_device(config.device)
        probe = gym.make(config.env, **config.env_args).unwrapped
        self.token_env = isinstance(probe, dialog_gym.DialogEnv)
        if self.token_env:
            check_token_env(config, probe.task)
        torch.manual_seed(config.seed)
        if self.token_env:
            self.envs = gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
            check_window(self.envs)
            kernel = self.envs.unwrapped.kernel
            self.policy_config = PolicyConfig(
                vocab_size=kernel.tokenizer.vocab_size, context_len=kernel.max_len, n_layer=config.model.n_layer,
                n_head=config.model.n_head, d_model=config.model.d_model, dropout=config.model.dropout,
                pad_id=kernel.tokenizer.pad_id,
            )  # fmt: skip
            self.policy = TransformerPolicy(self.policy_config, torch.tensor(np.array(kernel.action_mask))).to(self.device)
        else:
            self.envs = gym.wrappers.vector.RecordEpisodeStatistics(
                gym.make_vec(config.env, num_envs=config.num_envs, **config.env_args)
            )
            space = self.envs.single_action_space
            if not isinstance(space, gym.spaces.Discrete):
                raise ValueError(f"{config.env} has a {type(space).__name__} action space; the PPO agent needs Discrete actions")
            obs_dim = int(np.prod(self.envs.single_observation_space.shape))
            self.policy = MLPPolicy(obs_dim, int(space.n), config.model.mlp_hidden).to(self.device)
            self.collector = StepCollector(self.envs, config.seed, self.device)
        # The KL penalty keeps PPO near the pretrained policy; without pretraining there is no
        # policy worth staying near, so beta is 0 (and the KL to the initial policy is still logged).
        self.reference = copy.deepcopy(self.policy).eval() if self.token_env else None
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.ppo.learning_rate, eps=config.ppo.adam_eps)
        beta = config.ppo.kl_coef if self.token_env and config.pretrain else 0.0
        self.kl = AdaptiveKLController(beta, config.ppo.kl_target, config.ppo.kl_horizon)
        self.update, self.env_steps, self.episodes = 0, 0, 0
        self.checkpoints = self.out_dir / "checkpoints"

    # -- pretraining ----------------------------------------------------------------------------

    def run_pretraining(self) -> dict[str, Any]:
        cfg = self.config.pretraining
        env = self.envs.unwrapped
        demos = env.demonstrations(cfg.demonstrations, seed=self.config.seed, noise=cfg.demo_noise)
        generator = torch.Generator().manual_seed(update_seed(self.config.seed, 0, 9))
        bar = _bar(cfg.epochs * -(-len(demos) // cfg.batch_size), "pretraining", self.progress)
        losses = pretrain(self.policy, demos, cfg, generator, self.device,
                          progress=lambda epoch, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}")))  # fmt: skip
        bar.close()
        self.reference.load_state_dict(self.policy.state_dict())
        save_checkpoint(self.checkpoints / "pretrained", self.policy, None, {"demo_accuracy": demos.accuracy, "losses": losses})
        return {"demo_accuracy": demos.accuracy, "losses": losses}

    # -- one PPO update -------------------------------------------------------------------------

    def collect(self):
        cfg, update = self.config, self.update
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, update, 1))
        if self.token_env:
            rollout = collect_episodes(self.envs, self.policy, update_seed(cfg.seed, update, 2), generator, self.device)
            with torch.no_grad():
                self.reference.eval()
                ref_logprob, _, _ = rollout.score(self.reference)
            kl = (rollout.logprobs - ref_logprob) * rollout.mask
            rollout.rewards = rollout.env_rewards - self.kl.beta * kl
            rollout.kl_per_episode = float(kl.sum(1).mean())
        else:
            rollout = self.collector.collect(self.policy, cfg.rollout_steps, generator)
            rollout.kl_per_episode = 0.0
        if not torch.isfinite(rollout.rewards[rollout.mask]).all():
            raise NonFiniteError(f"a reward became non-finite at update {update}; nothing was saved")
        bootstrap = cfg.ppo.bootstrap_truncated
        if bootstrap is None:
            bootstrap = not self.token_env
        no_bootstrap = rollout.terminated if bootstrap else rollout.terminated | rollout.truncated
        rollout.advantages, rollout.returns = gae(
            rollout.rewards, rollout.values, rollout.next_values, no_bootstrap, rollout.done,
            cfg.ppo.gamma, cfg.ppo.gae_lambda,
        )  # fmt: skip
        rollout.advantages = rollout.advantages * rollout.mask
        return rollout

    def step(self) -> dict[str, Any]:
        """One update: rollout, KL-penalised rewards, GAE, PPO epochs; returns the metrics row."""
        cfg, start = self.config, time.perf_counter()
        torch.manual_seed(update_seed(cfg.seed, self.update, 4))  # dropout, if any, replays on resume too
        if cfg.ppo.anneal_lr:
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.ppo.learning_rate * max(0.0, 1.0 - self.env_steps / cfg.total_steps)
        rollout = self.collect()
        generator = torch.Generator().manual_seed(update_seed(cfg.seed, self.update, 3))
        stats = ppo_update(self.policy, self.optimizer, rollout, cfg.ppo, generator, self.update)
        self.kl.update(rollout.kl_per_episode, len(rollout.mask) if self.token_env else 1)
        self.update += 1
        self.env_steps += rollout.num_steps
        episode = rollout.episode
        self.episodes += len(episode.get("return", []))
        mask = rollout.mask
        variance = float(rollout.returns[mask].var()) if mask.sum() > 1 else 0.0
        residual = float((rollout.returns - rollout.values)[mask].var()) if mask.sum() > 1 else 0.0
        seconds = time.perf_counter() - start
        return {
            "update": self.update,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "return": _mean(episode.get("return")),
            "answer_accuracy": _ratio(episode.get("correct"), episode.get("questions")),
            "success_rate": _mean(episode.get("success")),
            "episode_length": _mean(episode.get("length")),
            "kl": rollout.kl_per_episode,
            "beta": self.kl.beta,
            "entropy": stats.entropy,
            "policy_loss": stats.policy_loss,
            "value_loss": stats.value_loss,
            "approx_kl": stats.approx_kl,
            "clip_fraction": stats.clip_fraction,
            "explained_variance": 1.0 - residual / variance if variance > 0 else float("nan"),
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            "steps_per_second": rollout.num_steps / seconds,
            "wall_seconds": seconds,
        }

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self) -> None:
        name = f"update-{self.update:06d}"
        save_checkpoint(self.checkpoints / name, self.policy, self.optimizer, {
            "update": self.update, "env_steps": self.env_steps, "episodes": self.episodes, "beta": self.kl.beta,
            "seed": self.config.seed,
        })  # fmt: skip
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
                raise CheckpointError(f"{checkpoint / 'state.json'}: {key!r} must be a non-negative integer, got {meta.get(key)!r}")
        if not isinstance(meta.get("beta"), (int, float)) or not math.isfinite(meta["beta"]) or meta["beta"] < 0:
            raise CheckpointError(f"{checkpoint / 'state.json'}: 'beta' must be a non-negative number, got {meta.get('beta')!r}")
        self.update, self.env_steps, self.episodes = meta["update"], meta["env_steps"], meta["episodes"]
        self.kl.beta = float(meta["beta"])
        reference = self.checkpoints / ("pretrained" if self.config.pretrain else "initial")
        load_checkpoint(reference, self.reference, None, self.device)


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
        text = ",".join(METRIC_COLUMNS) + "\n" + "".join(",".join(row[c] for c in METRIC_COLUMNS) + "\n" for row in rows)
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


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True,
          stop_after: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Run (or, with ``resume``, continue) the recipe in ``out_dir``; returns the final evaluation.

    ``stop_after`` ends the run after that many updates without the final evaluation, as an
    interrupted run would (used to test resuming).
    """
    out_dir = Path(out_dir)
    if not resume and (out_dir / "config.yaml").exists():
        raise ValueError(f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    run = Run(config, out_dir, progress)
    summary: dict[str, Any] = {}
    if resume:
        run.restore()
    else:
        write_atomic(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        if run.token_env and config.pretrain:
            summary["pretraining"] = run.run_pretraining()
        elif run.token_env:
            save_checkpoint(run.checkpoints / "initial", run.reference, None, {})
    log = MetricsLog(out_dir, keep_until=run.update, purge_step=run.env_steps if resume else None)
    bar = _bar(config.total_steps, "PPO env steps", progress)
    bar.update(min(run.env_steps, config.total_steps))
    try:
        while run.env_steps < config.total_steps and (stop_after is None or run.update < stop_after):
            row = run.step()
            log.write(row)
            bar.update(min(row["env_steps"], config.total_steps) - bar.n)
            bar.set_postfix(ret=f"{row['return']:.3f}", acc=f"{row['answer_accuracy']:.3f}", kl=f"{row['kl']:.3f}",
                            beta=f"{row['beta']:.3f}")  # fmt: skip
            if run.update % config.checkpoint_every == 0 or run.env_steps >= config.total_steps:
                run.save()
    finally:
        bar.close()
        log.close()
    if run.env_steps < config.total_steps:
        return {}
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
        model = TransformerPolicy(run.policy_config, run.policy.allowed_tokens.cpu()).to(run.device)
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
