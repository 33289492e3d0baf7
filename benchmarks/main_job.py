"""The main job's quality and wall time: the default `dialog-gym train`, timed, and its final table.

python benchmarks/main_job.py [--quick]    # quick: 20,000 PPO env steps and a short pretraining
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUICK_CONFIG = "total_steps: 20000\neval_episodes: 200\npretraining: {demonstrations: 4000, epochs: 1}\n"


def run(quick: bool = False, plot_to: Path | None = None) -> str:
    """Train as a user would and return the wall time and the test-split table as markdown."""
    with tempfile.TemporaryDirectory() as directory:
        command = [sys.executable, "-m", "agents.cli", "train", "--out", f"{directory}/run", "--quiet"]
        if quick:
            (Path(directory) / "quick.yaml").write_text(QUICK_CONFIG)
            command += ["--config", f"{directory}/quick.yaml"]
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        results = json.loads((Path(directory) / "run" / "eval.json").read_text())
        if plot_to is not None:
            subprocess.run(
                [sys.executable, "-m", "agents.cli", "plot", f"{directory}/run"], check=True, stdout=subprocess.DEVNULL
            )
            shutil.copy(Path(directory) / "run" / "learning_curve.png", plot_to)
    lines = [
        f"Wall time: {seconds:.0f} s (budget: 600 s on 2 CPU cores).",
        "",
        "| agent | mean return | answer accuracy | success rate | tokens per answer |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in results.items():
        if "mean_return" in values:
            lines.append(
                f"| {name} | {values['mean_return']:.3f} | {values['answer_accuracy']:.3f} | "
                f"{values['success_rate']:.3f} | {values['mean_answer_tokens']:.2f} |"
            )
    if "demonstrations" in results:
        lines.append(f"| demonstrations | | {results['demonstrations']['answer_accuracy']:.3f} | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    print(run(parser.parse_args().quick))
