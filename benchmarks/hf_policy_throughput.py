"""What a transformers policy costs here: rollout and PPO-update speed against our own Transformer.

    python benchmarks/hf_policy_throughput.py [--quick]

On DialogQA-v0 spoken in a byte-level BPE trained on its text, times one rollout of 64 episodes
(KV-cached decoding) and one PPO epoch over it (forward + backward of every episode) for our
Transformer (the baseline), the tiny GPT-2 of examples/tiny-gpt2, and a model shaped like GPT-2
small (124M parameters, random weights built from its config: nothing is downloaded, and the
cost of a forward pass does not depend on the weights' values). A second table gives what the env
itself costs in that vocabulary against its built-in one.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import dialog_gym  # noqa: F401  (registers the envs)
from agents.hf_policy import HFPolicy, HFPolicyConfig, build_hf_policy
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import PPOConfig, ppo_update
from agents.rollout import collect_episodes
from dialog_gym.bpe import train_bpe

ROOT = Path(__file__).resolve().parents[1]


def gpt2_small(config: HFPolicyConfig, allowed: torch.Tensor) -> HFPolicy:
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return HFPolicy(GPT2LMHeadModel(shape), config, allowed)


def time_policy(policy: torch.nn.Module, envs, episodes: int) -> dict[str, float]:
    device = torch.device("cpu")
    start = time.perf_counter()
    rollout = collect_episodes(envs, policy, seed=0, generator=torch.Generator().manual_seed(0), device=device)
    rollout_seconds = time.perf_counter() - start
    rollout.advantages = torch.randn_like(rollout.rewards) * rollout.mask
    rollout.returns = rollout.values + rollout.advantages
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    config = PPOConfig(update_epochs=1, num_minibatches=max(1, episodes // 16))
    start = time.perf_counter()
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0), 0)
    update_seconds = time.perf_counter() - start
    tokens = int((rollout.tokens != policy.config.pad_id).sum())
    return {
        "parameters": sum(p.numel() for p in policy.parameters()),
        "rollout_steps_per_second": rollout.num_steps / rollout_seconds,
        "update_tokens_per_second": tokens / update_seconds,
    }


def env_steps_per_second(seconds: float, **env_args) -> float:
    """Oracle steps per second of 512 DialogQA-v0 envs (what the env costs, without a policy)."""
    envs = gym.make_vec("DialogQA-v0", num_envs=512, **env_args)
    _, info = envs.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, _, _, info = envs.step(info["expert_action"])
        steps += 512
    return steps / (time.perf_counter() - start)


def run(quick: bool = False) -> str:
    episodes = 16 if quick else 64
    with tempfile.TemporaryDirectory() as directory:
        train_bpe("DialogQA-v0", directory, vocab_size=1024, episodes=2000 if quick else 20_000)
        envs = gym.make_vec("DialogQA-v0", num_envs=episodes, tokenizer=directory)
        kernel = envs.unwrapped.kernel
        allowed = torch.tensor(np.array(kernel.action_mask))
        config = HFPolicyConfig(kernel.tokenizer.vocab_size, kernel.tokenizer.pad_id, kernel.max_len)
        torch.manual_seed(0)
        candidates = [
            (
                "our Transformer (baseline)",
                lambda: TransformerPolicy(
                    PolicyConfig(vocab_size=config.vocab_size, context_len=config.context_len, pad_id=config.pad_id),
                    allowed,
                ),
            ),
            (
                "tiny GPT-2 (examples/tiny-gpt2)",
                lambda: build_hf_policy(str(ROOT / "examples" / "tiny-gpt2"), config, allowed),
            ),
            ("GPT-2 small shape, 124M", lambda: gpt2_small(config, allowed)),
        ]
        rows = [(name, time_policy(make(), envs, episodes)) for name, make in candidates]
        seconds = 0.5 if quick else 3.0
        native_env, bpe_env = env_steps_per_second(seconds), env_steps_per_second(seconds, tokenizer=directory)
    base = rows[0][1]
    lines = [
        f"DialogQA-v0 with a 1024-token byte-level BPE, {episodes} episodes, {torch.get_num_threads()} CPU threads.",
        "",
        "| policy | parameters | rollout env steps/s | vs baseline | PPO update tokens/s | vs baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['parameters']:,} | {r['rollout_steps_per_second']:,.0f} | "
            f"{r['rollout_steps_per_second'] / base['rollout_steps_per_second']:.3f}x | "
            f"{r['update_tokens_per_second']:,.0f} | {r['update_tokens_per_second'] / base['update_tokens_per_second']:.3f}x |"
        )
    lines += [
        "",
        "| env (512 envs, oracle actions) | env steps/s | vs built-in |",
        "|---|---:|---:|",
        f"| DialogQA-v0, built-in vocabulary | {native_env:,.0f} | 1.000x |",
        f"| DialogQA-v0, the BPE (answers decoded and re-read to be scored) | {bpe_env:,.0f} | "
        f"{bpe_env / native_env:.3f}x |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="16 episodes and a smaller tokenizer corpus")
    print(run(parser.parse_args().quick))


if __name__ == "__main__":
    main()
