"""Building the policy a config names, for an env, and loading a trained one from a run directory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

import dialog_gym
from agents.checkpoint import latest_checkpoint, load_checkpoint
from agents.config import TrainConfig
from agents.hf_policy import HFPolicyConfig, build_hf_policy
from agents.policy import TransformerPolicy
from agents.pretrained import hf_model_path, is_pretrained_spec
from dialog_gym.hf_tokenizer import HFTokenizer


def with_model_tokenizer(config: TrainConfig) -> TrainConfig:
    """A model directory that holds a tokenizer gives the env its vocabulary, unless one is set; a
    pretrained chat model (``smollm2``, a GGUF file) also has the env write its chat template, unless
    ``chat_template`` is set."""
    if config.policy == "transformer" or "tokenizer" in config.env_args:
        return config
    path = Path(hf_model_path(config.policy))
    if path.is_dir() and any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        args = {**config.env_args, "tokenizer": str(path)}
        if is_pretrained_spec(config.policy):
            args.setdefault("chat_template", True)
        return replace(config, env_args=args)
    return config


def env_shape(env: gym.Env | gym.vector.VectorEnv) -> tuple[int, int, torch.Tensor]:
    """(vocabulary size, observation window, allowed tokens (V,) bool) of a dialog_gym env or vector env."""
    single = env.single_observation_space if isinstance(env, gym.vector.VectorEnv) else env.observation_space
    mask = np.asarray(env.unwrapped.action_masks(), bool)
    return int(single.nvec[0]), int(single.shape[0]), torch.as_tensor(mask.reshape(-1, mask.shape[-1])[0])


def build_policy(config: TrainConfig, env: gym.Env | gym.vector.VectorEnv) -> nn.Module:
    """The policy ``config.policy`` names, sized to the env's vocabulary and dialogue window."""
    vocab, window, allowed = env_shape(env)
    tokenizer = env.unwrapped.tokenizer
    if config.policy == "transformer":
        if config.lora.rank:
            raise ValueError("lora.rank applies to hf: policies; set --policy hf:PATH or lora.rank: 0")
        return TransformerPolicy(config.model.sized(vocab, window, tokenizer.pad_id), allowed)
    spec = hf_model_path(config.policy)
    policy = build_hf_policy(
        spec,
        HFPolicyConfig(vocab, tokenizer.pad_id, window),
        allowed,
        config.lora.rank,
        config.lora.alpha,
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


def read_run_config(run_dir: Path) -> TrainConfig:
    """The config a run directory was trained with."""
    config_file = Path(run_dir) / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} does not exist; pass the directory of a training run")
    return TrainConfig.from_yaml(config_file)


def load_trained_policy(run_dir: Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """The policy of a run directory (its latest checkpoint) and the run's config.

    Only the policy is built: one env tells its vocabulary and window, then the weights are loaded.
    """
    config = with_model_tokenizer(read_run_config(run_dir))
    env = gym.make(config.env, **config.env_args)
    if not isinstance(env.unwrapped, dialog_gym.DialogEnv):
        raise ValueError(f"{run_dir} trained on {config.env}, which is not a dialog_gym env; nothing to load here")
    policy = build_policy(config, env).to(device)
    load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"), policy, None, device)
    return policy.eval(), config


def load_untrained_policy(
    spec: str, env_id: str, env_args: dict | None = None, device: str | torch.device = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """The policy ``spec`` names (a pretrained model, ``hf:DIR``) as it is, for ``env_id``, and the config
    that says how the env is to be made for it (the model's tokenizer and chat template)."""
    config = with_model_tokenizer(TrainConfig(env=env_id, env_args=dict(env_args or {}), policy=spec))
    env = gym.make(config.env, **config.env_args)
    if not isinstance(env.unwrapped, dialog_gym.DialogEnv):
        raise ValueError(f"{env_id} is not a dialog_gym env; a language-model policy needs one")
    return build_policy(config, env).to(device).eval(), config


def is_token_env(env_id: str, env_args: dict) -> bool:
    """Whether the env is one of dialog_gym's token envs (otherwise the generic MLP trainer runs)."""
    return isinstance(gym.make(env_id, **env_args).unwrapped, dialog_gym.DialogEnv)
