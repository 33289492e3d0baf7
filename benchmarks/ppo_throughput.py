"""PPO speed on this machine, every figure next to a baseline measured in the same run.

1. Rollout: answer tokens per second generated after a 64-token context, with the KV cache and
   by re-reading the whole sequence every step (the ratio is what the cache buys).
2. PPO update: tokens per second through forward + backward, and the FLOP rate that implies as
   a fraction of this CPU's float32 matmul peak (a large ``torch.mm``, measured here).
3. Whole training (rollout + update): env steps per second of our PPO (its defaults: 512
   episodes per rollout, 4 epochs x 8 minibatches) and of Stable-Baselines3's PPO (its defaults:
   64x64 MLP on one-hot observations, 8 envs, 2048 steps per env per rollout, 10 epochs of
   minibatches of 64), each on DialogQA-Toy-v0 and on DialogQA-v0. Both sides are warmed up by one
   update, then timed over whole updates, and count the env steps those updates actually ran
   (our ``TokenRun.env_steps``, SB3's ``model.num_timesteps``).
4. With ``--main-job``: the wall time of the default ``dialog-gym train`` (about five minutes).

    python -m benchmarks.ppo_throughput [--quick] [--main-job] [--out DIR]

Writes ``ppo_throughput.json`` and ``.md`` into ``--out`` (see ``benchmarks/record.py``).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import dialog_gym  # noqa: F401
from agents.config import TrainConfig
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import PPOConfig, ppo_update
from agents.token_run import TokenRun
from benchmarks import record


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
        run = TokenRun(config, directory, progress=False)
        rollout = run.collect()
        tokens = rollout.tokens.numel()  # every position of every dialogue goes through the model
        seconds = timed(
            lambda: ppo_update(run.policy, run.optimizer, rollout, config.ppo, torch.Generator().manual_seed(0), 0),
            repeat,
        )
        flops = (
            3 * forward_flops_per_token(run.policy.config, rollout.tokens.shape[1]) * tokens
        )  # backward = 2x forward
    return tokens / seconds, flops / seconds, tokens


def sb3_steps_per_second(env_id: str, updates: int, n_steps: int = 2048) -> tuple[float, int]:
    """(env steps/s, env steps timed) of SB3's PPO with its defaults over ``updates`` whole rollouts + updates
    (``n_steps`` per env per rollout: SB3's default, or fewer for a quick check of the code path)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(env_id, n_envs=8, seed=0)
    model = PPO("MlpPolicy", envs, n_steps=n_steps, seed=0, device="cpu", verbose=0)
    per_update = model.n_steps * model.n_envs
    model.learn(per_update)  # warm-up: one rollout and one update
    first, start = model.num_timesteps, time.perf_counter()
    # SB3 stops at the first whole rollout past the target, so the count is read back, not assumed.
    model.learn(updates * per_update, reset_num_timesteps=False)
    steps = model.num_timesteps - first
    return steps / (time.perf_counter() - start), steps


def training_steps_per_second(env_id: str, env_args: dict, updates: int) -> tuple[float, int]:
    """(env steps/s, env steps timed) of our whole PPO loop (rollout + KL + GAE + update), pretraining excluded."""
    config = TrainConfig(env=env_id, env_args=env_args, pretrain=False)
    with tempfile.TemporaryDirectory() as directory:
        run = TokenRun(config, directory, progress=False)
        run.step()  # warm-up
        first, start = run.env_steps, time.perf_counter()
        for _ in range(updates):
            run.step()
        steps = run.env_steps - first
        return steps / (time.perf_counter() - start), steps


def main_job_seconds() -> float:
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "agents.cli", "train", "--out", f"{directory}/run", "--quiet"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start


def measure(quick: bool = False, main_job: bool = False) -> dict[str, Any]:
    """Every raw number of the table."""
    repeat = 2 if quick else 5
    cached, uncached = rollout_tokens_per_second(context=64, generated=16, batch=256, repeat=repeat)
    peak = matmul_peak_flops(repeat=repeat)
    tokens_per_second, flop_rate, tokens = update_throughput(episodes=256 if quick else 512, repeat=max(1, repeat // 2))
    data: dict[str, Any] = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rollout_tokens_per_second": {"kv_cache": cached, "rereading": uncached},
        "update": {"tokens_per_second": tokens_per_second, "flops": flop_rate, "tokens": tokens, "peak_flops": peak},
        "training": [],
    }
    for env_id in ("DialogQA-Toy-v0", "DialogQA-v0"):
        ours, ours_steps = training_steps_per_second(env_id, {}, updates=2 if quick else 5)
        sb3, sb3_steps = sb3_steps_per_second(env_id, updates=1 if quick else 2, n_steps=256 if quick else 2048)
        data["training"].append(
            {"env": env_id, "ours": ours, "ours_steps": ours_steps, "sb3": sb3, "sb3_steps": sb3_steps}
        )
    if main_job:
        data["main_job_seconds"] = main_job_seconds()
    return data


def table(data: dict[str, Any]) -> str:
    """The measurements as markdown."""
    rollout, update = data["rollout_tokens_per_second"], data["update"]
    lines = [
        "| measurement | value | baseline in the same run | ratio |",
        "|---|---:|---:|---:|",
        f"| rollout tokens/s, context 64, KV cache (vs re-reading the sequence) | {rollout['kv_cache']:,.0f} | "
        f"{rollout['rereading']:,.0f} | {rollout['kv_cache'] / rollout['rereading']:.1f}x |",
        f"| PPO update tokens/s (fwd + bwd, {update['tokens']:,} tokens per epoch) | {update['tokens_per_second']:,.0f} | | |",
        f"| PPO update GFLOP/s (vs float32 matmul peak of this CPU) | {update['flops'] / 1e9:.1f} | "
        f"{update['peak_flops'] / 1e9:.1f} | {update['flops'] / update['peak_flops']:.0%} |",
    ]
    for row in data["training"]:
        lines.append(
            f"| whole PPO training env steps/s on {row['env']}, ours ({row['ours_steps']:,} steps timed) vs SB3 PPO "
            f"64x64 MLP ({row['sb3_steps']:,} steps timed) | {row['ours']:,.0f} | {row['sb3']:,.0f} | "
            f"{row['ours'] / row['sb3']:.2f}x |"
        )
    if "main_job_seconds" in data:
        lines.append(
            f"| wall time of the default `dialog-gym train` | {data['main_job_seconds']:.0f} s | 600 s budget | |"
        )
    return "\n".join(lines)


def run(quick: bool = False, main_job: bool = False, out: Path | None = None) -> str:
    """Measure, write ``out/ppo_throughput.json`` and ``.md`` when ``out`` is given, and return the table."""
    start = time.perf_counter()
    data = measure(quick, main_job)
    markdown = table(data)
    if out is not None:
        record.write("ppo_throughput", data, markdown, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return markdown


def main() -> None:
    parser = record.arguments(__doc__, quick="fewer repetitions and smaller measurements")
    parser.add_argument("--main-job", action="store_true", help="also time the default `dialog-gym train` (minutes)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(run(args.quick, args.main_job, record.out_dir(args)))


if __name__ == "__main__":
    main()
