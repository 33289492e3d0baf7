"""Learning curves of a training run, from its metrics.csv, as a PNG."""

from __future__ import annotations

import csv
from pathlib import Path


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    """Plot return, answer accuracy, KL and entropy against env steps; returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = Path(run_dir) / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist; pass the directory of a training run")
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        raise ValueError(f"{metrics} holds no updates yet; train first")
    steps = [float(r["env_steps"]) for r in rows]
    panels = [
        ("return", "episode return"),
        ("answer_accuracy", "answer accuracy"),
        ("kl", "KL to reference (per episode)"),
        ("entropy", "entropy"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for axis, (key, title) in zip(axes, panels):
        axis.plot(steps, [float(r[key]) for r in rows])
        axis.set_title(title)
        axis.set_xlabel("env steps")
        axis.grid(alpha=0.3)
    figure.suptitle(Path(run_dir).name)
    figure.tight_layout()
    output = output or Path(run_dir) / "learning_curve.png"
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
