"""The benchmark suite: every benchmark in this directory, in one report.

    python -m benchmarks            # the full suite (about 1.5 hours on 2 CPU cores)
    python -m benchmarks --quick    # reduced runs of every benchmark (a few minutes)

Writes RESULTS.md (the machine, then each benchmark's table under the command that produced it),
its PNGs and the results files of the benchmarks the README quotes (``NAME.json`` and ``NAME.md``,
see ``benchmarks/record.py``) into ``--out`` (default: benchmarks/results/, or benchmarks/results/quick/
with ``--quick``). Every timing is a ratio to a baseline measured in the same run, because these
machines are noisy. The reference scores (``python -m benchmarks.reference_scores``) take hours and
are not part of the suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import (
    algorithms,
    distributed_throughput,
    env_throughput,
    hf_policy_throughput,
    learned_reward,
    main_job,
    ppo_throughput,
    pretraining_difficulty,
    record,
    sb3_crosscheck,
    serve_load,
    trl_crosscheck,
)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced runs of every benchmark")
    parser.add_argument(
        "--out", help="directory for RESULTS.md, PNGs and results files (default: benchmarks/results, or its quick/)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else record.default_out(args.quick)
    out.mkdir(parents=True, exist_ok=True)
    flag = " --quick" if args.quick else ""
    sections = [
        ("Env throughput", f"python -m benchmarks.env_throughput{flag}", lambda: env_throughput.run(args.quick)),
        (
            "PPO throughput",
            f"python -m benchmarks.ppo_throughput{flag}",
            lambda: ppo_throughput.run(args.quick, out=out),
        ),
        (
            "The main job",
            f"python -m benchmarks.main_job{flag}",
            lambda: main_job.run(args.quick, plot_to=out / "main_job_learning_curve.png", out=out),
        ),
        (
            "Our PPO against Stable-Baselines3's",
            f"python -m benchmarks.sb3_crosscheck{flag}",
            lambda: (
                sb3_crosscheck.run(args.quick, cache=None if args.quick else out / "sb3_crosscheck_runs.jsonl", out=out)
                + "\n\nLearning curves: sb3_crosscheck.png"
                + ("" if args.quick else ", sb3_full_table.png")
            ),
        ),
        (
            "Our GRPO against TRL's",
            f"python -m benchmarks.trl_crosscheck{flag}",
            lambda: trl_crosscheck.run(args.quick, out=out) + "\n\nLearning curves: trl_crosscheck.png",
        ),
        (
            "PPO against the critic-free trainers",
            f"python -m benchmarks.algorithms{flag}",
            lambda: algorithms.run(args.quick, out=out) + "\n\nLearning curves: algorithms_learning_curve.png",
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
            f"python -m benchmarks.hf_policy_throughput{flag}",
            lambda: hf_policy_throughput.run(args.quick, out=out),
        ),
        (
            "The OpenEnv server under load",
            f"python -m benchmarks.serve_load{flag}",
            lambda: serve_load.run(args.quick, out=out),
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
        f"Machine: {record.machine()}.",
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
