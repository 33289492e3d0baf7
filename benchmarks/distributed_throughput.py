"""PPO training throughput with 1 and 2 torchrun processes (gloo on CPU, nccl on GPU) on this machine.

    python benchmarks/distributed_throughput.py [--quick] [--processes 1 2]

Each configuration is a real ``torchrun ... -m agents.cli train`` run of DialogQA-v0 without
pretraining; the figure is PPO env steps per second over its updates (from metrics.csv: the steps
of all processes over the wall time of the updates, so process start-up and the final evaluation
do not count). The machine's cores are shared out: K processes get cores // K threads each, so
every row uses the whole machine; one row shows a single process held to that share, the speed
each process would have on its own machine. Two ways to grow: the same episodes per update split
over the processes (strong scaling), or every process bringing a full batch (weak scaling).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def measure(
    processes: int, episodes_per_process: int, total_steps: int, threads: int | None = None
) -> dict[str, float]:
    """Env steps per second (all processes together) of one torchrun training run."""
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // processes) if not torch.cuda.is_available() else 1
    with tempfile.TemporaryDirectory() as directory:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            "-m",
            "agents.cli",
            "train",
            "--out",
            f"{directory}/run",
            "--no-pretrain",
            "--quiet",
            "--num-envs",
            str(episodes_per_process),
            "--total-steps",
            str(total_steps),
            "--config",
            str(_config(Path(directory))),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
        subprocess.run(command, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(Path(directory) / "run" / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    # The first update pays for warming up; every configuration drops it alike.
    steps = int(rows[-1]["env_steps"]) - int(rows[0]["env_steps"])
    seconds = sum(float(row["wall_seconds"]) for row in rows[1:])
    return {
        "processes": processes,
        "threads": threads,
        "episodes": episodes_per_process * processes,
        "updates": len(rows) - 1,
        "steps_per_second": steps / seconds,
    }


def _config(directory: Path) -> Path:
    path = directory / "bench.yaml"
    path.write_text("eval_episodes: 50\n")
    return path


def run(quick: bool = False, process_counts: tuple[int, ...] = (1, 2)) -> str:
    """The markdown table: steps/s per configuration and its ratio to one process with the same episodes."""
    batch, total = (64, 4_000) if quick else (512, 60_000)
    rows = []
    baseline = measure(1, batch, total)
    rows.append(("1 process", baseline))
    if not torch.cuda.is_available() and (os.cpu_count() or 1) > 1:
        # What one process does with the share of the machine each process gets below.
        share = max(1, (os.cpu_count() or 1) // max(process_counts))
        rows.append((f"1 process limited to {share} thread(s)", measure(1, batch, total, threads=share)))
    for k in process_counts:
        if k == 1:
            continue
        rows.append(
            (f"{k} processes, same episodes per update split ({batch // k} each)", measure(k, batch // k, total))
        )
        rows.append((f"{k} processes, {batch} episodes each", measure(k, batch, total * k)))
    device = "GPU (nccl)" if torch.cuda.is_available() else f"CPU (gloo), {os.cpu_count()} cores"
    lines = [
        f"DialogQA-v0, PPO without pretraining, {device}; the first update of each run is not counted.",
        "",
        "| configuration | threads per process | episodes per update | updates | env steps/s | vs 1 process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['threads']} | {r['episodes']} | {r['updates']} | {r['steps_per_second']:,.0f} | "
            f"{r['steps_per_second'] / baseline['steps_per_second']:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches and few steps")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="process counts to run (default: 1 2)")
    args = parser.parse_args()
    print(run(args.quick, tuple(args.processes)))


if __name__ == "__main__":
    main()
