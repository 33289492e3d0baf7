"""PPO speed on this machine, every figure next to a baseline measured in the same run.

1. Rollout: answer tokens per second generated after a 64-token context, with the KV cache and
   by re-reading the whole sequence every step (the ratio is what the cache buys).
2. PPO update: tokens per second through forward + backward, and the FLOP rate that implies as
   a fraction of this CPU's float32 matmul peak (a large ``torch.mm``, measured here).
3. Whole training (rollout + update): env steps per second of our PPO on DialogQA-v0 and on
   DialogQA-Toy-v0, and of Stable-Baselines3's PPO (64x64 MLP, 8 envs) on DialogQA-Toy-v0.
4. With ``--main-job``: the wall time of the default ``dialog-gym train`` (about five minutes).

    python benchmarks/ppo_throughput.py [--quick] [--main-job]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import torch

import dialog_gym  # noqa: F401
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import PPOConfig, ppo_update
from agents.train import Run, TrainConfig


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


@torch.no_grad()
def rollout_tokens_per_second(context: int, generated: int, batch: int, repeat: int) -> tuple[float, float]:
    torch.manual_seed(0)
    policy = TransformerPolicy(PolicyConfig(vocab_size=96, context_len=context + generated + 1)).eval()
    prompt = torch.randint(1, 96, (batch, context))
    one = torch.ones(batch, 1, dtype=torch.bool)

    def with_cache():
        logits, _, cache = policy.start(prompt)
        for _ in range(generated):
            token = logits.argmax(-1, keepdim=True)
            logits, _, cache = policy.extend(token, one, cache)

    def without_cache():
        tokens = prompt
        for _ in range(generated):
            logits, _ = policy(tokens)
            tokens = torch.cat([tokens, logits[:, -1].argmax(-1, keepdim=True)], dim=1)

    return batch * generated / timed(with_cache, repeat), batch * generated / timed(without_cache, repeat)


def matmul_peak_flops(size: int = 2048, repeat: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    return 2 * size**3 / timed(lambda: torch.mm(a, b), repeat)


def forward_flops_per_token(config: PolicyConfig, sequence: int) -> float:
    """Matmul FLOPs of one token's forward pass: weights (2 per parameter) plus attention scores and mixing."""
    d, layers = config.d_model, config.n_layer
    weights = layers * (3 * d * d + d * d + 8 * d * d) + d * config.vocab_size + d
    attention = layers * 2 * sequence * d  # q.k over the sequence and the weighted sum of values
    return 2 * weights + 2 * attention


def update_throughput(episodes: int, repeat: int) -> tuple[float, float, int]:
    """(tokens/s, FLOP/s) of PPO updates on a DialogQA-v0 rollout, and the tokens per update."""
    config = TrainConfig(num_envs=episodes, pretrain=False, ppo=PPOConfig(update_epochs=1))
    with tempfile.TemporaryDirectory() as directory:
        run = Run(config, directory, progress=False)
        rollout = run.collect()
        tokens = rollout.tokens.numel()  # every position of every dialogue goes through the model
        seconds = timed(
            lambda: ppo_update(run.policy, run.optimizer, rollout, config.ppo, torch.Generator().manual_seed(0), 0),
            repeat,
        )
        flops = (
            3 * forward_flops_per_token(run.policy_config, rollout.tokens.shape[1]) * tokens
        )  # backward = 2x forward
    return tokens / seconds, flops / seconds, tokens


def sb3_steps_per_second(steps: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env("DialogQA-Toy-v0", n_envs=8, seed=0)
    model = PPO("MlpPolicy", envs, seed=0, device="cpu", verbose=0)
    model.learn(2048)  # warm-up
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def training_steps_per_second(env_id: str, env_args: dict, updates: int) -> float:
    """Env steps per second of our whole PPO loop (rollout + KL + GAE + update), pretraining excluded."""
    config = TrainConfig(env=env_id, env_args=env_args, pretrain=False)
    with tempfile.TemporaryDirectory() as directory:
        run = Run(config, directory, progress=False)
        run.step()  # warm-up
        first, start = run.env_steps, time.perf_counter()
        for _ in range(updates):
            run.step()
        return (run.env_steps - first) / (time.perf_counter() - start)


def run(quick: bool = False, main_job: bool = False) -> str:
    """The table as markdown."""
    repeat = 2 if quick else 5
    cached, uncached = rollout_tokens_per_second(context=64, generated=16, batch=256, repeat=repeat)
    peak = matmul_peak_flops(repeat=repeat)
    tokens_per_second, flop_rate, tokens = update_throughput(episodes=256 if quick else 512, repeat=max(1, repeat // 2))
    lines = [
        "| measurement | value | baseline in the same run | ratio |",
        "|---|---:|---:|---:|",
        f"| rollout tokens/s, context 64, KV cache (vs re-reading the sequence) | {cached:,.0f} | {uncached:,.0f} | {cached / uncached:.1f}x |",
        f"| PPO update tokens/s (fwd + bwd, {tokens:,} tokens per epoch) | {tokens_per_second:,.0f} | | |",
        f"| PPO update GFLOP/s (vs float32 matmul peak of this CPU) | {flop_rate / 1e9:.1f} | {peak / 1e9:.1f} | {flop_rate / peak:.0%} |",
    ]
    sb3 = sb3_steps_per_second(10_000 if quick else 30_000)
    for env_id in ("DialogQA-Toy-v0", "DialogQA-v0"):
        ours = training_steps_per_second(env_id, {}, updates=2 if quick else 5)
        lines.append(
            f"| whole PPO training env steps/s, {env_id} (vs SB3 PPO 64x64 MLP on DialogQA-Toy-v0) | {ours:,.0f} | {sb3:,.0f} | {ours / sb3:.2f}x |"
        )
    if main_job:
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "agents.cli", "train", "--out", f"{directory}/run", "--quiet"],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            lines.append(
                f"| wall time of the default `dialog-gym train` | {time.perf_counter() - start:.0f} s | 600 s budget | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller measurements")
    parser.add_argument("--main-job", action="store_true", help="also time the default `dialog-gym train` (minutes)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(run(args.quick, args.main_job))


if __name__ == "__main__":
    main()
