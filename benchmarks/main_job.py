"""The main job's quality and wall time: the default `dialog-gym train`, timed, and its final table.

    python -m benchmarks.main_job [--quick] [--out DIR]   # quick: 20,000 PPO env steps, short pretraining

Writes ``main_job.json`` and ``.md`` into ``--out`` (see ``benchmarks/record.py``): the run's
``eval.json`` as it is, its wall time, and the table the README quotes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import record

# The table's rows, in the order the recipe produces them, as the README names them.
ROWS = {
    "random": "random",
    "demonstrations": "demonstrations (30% noisy)",
    "pretrained": "pretrained only",
    "ppo": "PPO",
    "ppo_greedy": "PPO, greedy decoding",
}
QUICK_CONFIG = "total_steps: 20000\neval_episodes: 200\npretraining: {demonstrations: 4000, epochs: 1}\n"


def measure(quick: bool = False, plot_to: Path | None = None) -> dict[str, Any]:
    """Train as a user would: the command, its wall time and the run's eval.json."""
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
    shown = "dialog-gym train" + (" --config quick.yaml" if quick else "")
    return {"train_command": shown, "wall_seconds": seconds, "eval": results}


def table(data: dict[str, Any]) -> str:
    """The wall time and the test-split table as markdown."""
    results = data["eval"]
    lines = [
        f"Wall time: {data['wall_seconds']:.0f} s (budget: 600 s on 2 CPU cores).",
        "",
        "| agent | mean return | answer accuracy | success rate | tokens per answer |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, name in ROWS.items():
        values = results.get(key)
        if values is None:
            continue
        if "mean_return" not in values:  # the demonstrations have an accuracy only
            lines.append(f"| {name} | | {values['answer_accuracy']:.3f} | | |")
            continue
        lines.append(
            f"| {name} | {values['mean_return']:.3f} | {values['answer_accuracy']:.3f} | "
            f"{values['success_rate']:.3f} | {values['mean_answer_tokens']:.2f} |"
        )
    return "\n".join(lines)


def run(quick: bool = False, plot_to: Path | None = None, out: Path | None = None) -> str:
    """Train, write ``out/main_job.json`` and ``.md`` when ``out`` is given, and return the table."""
    start = time.perf_counter()
    data = measure(quick, plot_to)
    markdown = table(data)
    if out is not None:
        record.write("main_job", data, markdown, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return markdown


def main() -> None:
    parser = record.arguments(__doc__, quick="20,000 PPO env steps and a short pretraining")
    args = parser.parse_args()
    out = record.out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    print(run(args.quick, plot_to=out / "main_job_learning_curve.png", out=out))


if __name__ == "__main__":
    main()
