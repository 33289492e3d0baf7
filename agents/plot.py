"""Learning curves of a training run, from its metrics.csv, as a PNG."""

from __future__ import annotations

from pathlib import Path

from agents.metrics import read_metrics

PANELS = [
    ("return", "episode return"),
    ("answer_accuracy", "answer accuracy"),
    ("kl", "KL to reference (per episode)"),
    ("entropy", "entropy"),
]
STEP_TICKS = 5  # at most this many env-step ticks per panel, so their labels never run together


def learning_curves(run_dir: Path):
    """A matplotlib Figure of return, answer accuracy, KL and entropy against env steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter, MaxNLocator

    metrics = Path(run_dir) / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(f"{metrics} does not exist; pass the directory of a training run")
    rows = read_metrics(metrics)  # complete rows only: a kill may have cut the last one short
    if not rows:
        raise ValueError(f"{metrics} holds no updates yet; train first")
    steps = [float(r["env_steps"]) for r in rows]
    figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2))
    for axis, (key, title) in zip(axes, PANELS):
        axis.plot(steps, [float(r[key]) for r in rows])
        axis.set_title(title)
        axis.set_xlabel("env steps")
        # 50k, 100k, 1.5M rather than 50000, 100000, 1500000: six-digit labels overlap at this width.
        axis.xaxis.set_major_locator(MaxNLocator(nbins=STEP_TICKS, steps=[1, 2, 2.5, 5, 10]))
        axis.xaxis.set_major_formatter(EngFormatter(sep=""))
        axis.grid(alpha=0.3)
    figure.suptitle(Path(run_dir).name)
    figure.tight_layout()
    return figure


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    """Write the learning curves of ``run_dir`` as a PNG (default RUN_DIR/learning_curve.png); returns its path."""
    import matplotlib.pyplot as plt

    figure = learning_curves(run_dir)
    output = output or Path(run_dir) / "learning_curve.png"
    figure.savefig(output, dpi=100)
    plt.close(figure)
    return output
