"""PPO against a learned reward model on DialogQA-v0: the learned reward and the true accuracy, side by side.

A reward model is trained on the task's preference pairs, then the main job runs with it as the
env's reward (``--env-arg reward=model:DIR``). The env keeps judging answers by the task's own
keyword metric, so the table shows whether optimising the learned reward raised the true answer
accuracy above the pretrained policy's, or whether the reward was hacked.

    python benchmarks/learned_reward.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK = {
    "pairs": "2000",
    "epochs": "2",
    "config": "total_steps: 20000\neval_episodes: 200\npretraining: {demonstrations: 4000, epochs: 1}\n",
}


def run(quick: bool = False) -> str:
    """Train the reward model and the policy as a user would; returns a markdown report."""
    cli = [sys.executable, "-m", "agents.cli"]
    with tempfile.TemporaryDirectory() as directory:
        model_dir, run_dir = f"{directory}/rm", f"{directory}/run"
        start = time.perf_counter()
        reward = [*cli, "reward-model", "--env", "DialogQA-v0", "--out", model_dir]
        if quick:
            reward += ["--pairs", QUICK["pairs"], "--epochs", QUICK["epochs"]]
        printed = subprocess.run(reward, check=True, capture_output=True, text=True).stdout
        accuracy = float(re.search(r"held-out preference accuracy: ([0-9.]+)", printed).group(1))
        reward_seconds = time.perf_counter() - start
        train = [*cli, "train", "--out", run_dir, "--quiet", "--env-arg", f"reward=model:{model_dir}"]
        if quick:
            (Path(directory) / "quick.yaml").write_text(QUICK["config"])
            train += ["--config", f"{directory}/quick.yaml"]
        start = time.perf_counter()
        subprocess.run(train, check=True, stdout=subprocess.DEVNULL)
        train_seconds = time.perf_counter() - start
        results = json.loads((Path(run_dir) / "eval.json").read_text())
        with open(Path(run_dir) / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    lines = [
        f"Reward model: held-out preference accuracy {accuracy:.3f} ({reward_seconds:.0f} s). "
        f"PPO against it: {train_seconds:.0f} s.",
        "",
        "| agent (test split) | mean learned reward | true answer accuracy | true success rate |",
        "|---|---:|---:|---:|",
    ]
    for name in ("random", "pretrained", "ppo", "ppo_greedy"):
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {r['mean_return']:.3f} | {r['answer_accuracy']:.3f} | {r['success_rate']:.3f} |")
    if "demonstrations" in results:
        lines.append(f"| demonstrations | | {results['demonstrations']['answer_accuracy']:.3f} | |")
    picks = [rows[0], rows[len(rows) // 4], rows[len(rows) // 2], rows[3 * len(rows) // 4], rows[-1]]
    lines += [
        "",
        "During PPO (training episodes, sampled):",
        "",
        "| env steps | learned reward (return) | true answer accuracy |",
        "|---:|---:|---:|",
    ]
    lines += [
        f"| {int(float(r['env_steps'])):,} | {float(r['return']):.3f} | {float(r['answer_accuracy']):.3f} |"
        for r in picks
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2,000 pairs and 20,000 PPO env steps")
    print(run(parser.parse_args().quick))
