"""The benchmark suite: every benchmark in this directory, in one report.

    python -m benchmarks            # the full suite (about 1.5 hours on 2 CPU cores)
    python -m benchmarks --quick    # reduced runs of every benchmark (a few minutes)

Writes RESULTS.md (the machine, then each benchmark's table under the command that produced it)
and its PNGs into ``--out`` (default: benchmarks/results/). Every timing is a ratio to a baseline
measured in the same run, because these machines are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import gymnasium
import numpy
import stable_baselines3
import torch

from benchmarks import (
    distributed_throughput,
    env_throughput,
    hf_policy_throughput,
    learned_reward,
    main_job,
    ppo_throughput,
    pretraining_difficulty,
    sb3_crosscheck,
)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, gymnasium {gymnasium.__version__}, "
        f"stable-baselines3 {stable_baselines3.__version__}, CUDA {'available' if torch.cuda.is_available() else 'not used'}"
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced runs of every benchmark")
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results"), help="directory for RESULTS.md and PNGs"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flag = " --quick" if args.quick else ""
    sb3_crosscheck.RESULTS = out
    sections = [
        ("Env throughput", f"python benchmarks/env_throughput.py{flag}", lambda: env_throughput.run(args.quick)),
        ("PPO throughput", f"python benchmarks/ppo_throughput.py{flag}", lambda: ppo_throughput.run(args.quick)),
        (
            "The main job",
            f"python benchmarks/main_job.py{flag}",
            lambda: main_job.run(args.quick, plot_to=out / "main_job_learning_curve.png"),
        ),
        (
            "Our PPO against Stable-Baselines3's",
            f"python benchmarks/sb3_crosscheck.py{flag}",
            lambda: (
                sb3_crosscheck.run(args.quick, cache=None if args.quick else out / "sb3_crosscheck_runs.jsonl")
                + "\n\nLearning curves: sb3_crosscheck.png"
                + ("" if args.quick else ", sb3_full_table.png")
            ),
        ),
        (
            "PPO against a learned reward model",
            f"python benchmarks/learned_reward.py{flag}",
            lambda: learned_reward.run(args.quick),
        ),
        (
            "How hard is DialogQA-v0",
            f"python benchmarks/pretraining_difficulty.py{' --steps 1000 --every 500' if args.quick else ''}",
            lambda: pretraining_difficulty.run(args.quick),
        ),
        (
            "transformers policies",
            f"python benchmarks/hf_policy_throughput.py{flag}",
            lambda: hf_policy_throughput.run(args.quick),
        ),
        (
            "Training on several processes (torchrun)",
            f"python benchmarks/distributed_throughput.py{flag}",
            lambda: distributed_throughput.run(args.quick),
        ),
    ]
    report = [
        f"# Benchmark results{' (quick mode)' if args.quick else ''}",
        "",
        f"Machine: {machine()}.",
        "",
        f"Date: {time.strftime('%Y-%m-%d')}. Command: `python -m benchmarks{flag}`.",
        "",
    ]
    for title, command, run in sections:
        start = time.perf_counter()
        print(f"running: {title}", file=sys.stderr, flush=True)
        body = run()
        report += [f"## {title}", "", f"`{command}` ({time.perf_counter() - start:.0f} s)", "", body, ""]
        (out / "RESULTS.md").write_text("\n".join(report))
    return out / "RESULTS.md"


if __name__ == "__main__":
    print(main())
