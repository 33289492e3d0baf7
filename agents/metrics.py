"""What a run records of each update: ``metrics.csv``, TensorBoard event files and the progress bar."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from agents.checkpoint import write_atomic

METRIC_COLUMNS = [
    "update",
    "env_steps",
    "episodes",
    "return",
    "answer_accuracy",
    "success_rate",
    "episode_length",
    "kl",
    "beta",
    "entropy",
    "policy_loss",
    "value_loss",
    "approx_kl",
    "clip_fraction",
    "explained_variance",
    "learning_rate",
    "steps_per_second",
    "wall_seconds",
]
TIMING_COLUMNS = ("steps_per_second", "wall_seconds")
"""Columns that depend on the machine's speed; every other column is the same in every run of a seed."""


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The complete rows of a ``metrics.csv``; a row cut short (a run killed while writing it) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    complete = []
    for row in rows:
        values = list(row.values())
        if None in values or "" in values or None in row:  # fields missing, or more than the header has
            continue
        try:
            [float(value) for value in values]
        except ValueError:
            continue
        complete.append(row)
    return complete


class MetricsLog:
    """metrics.csv plus TensorBoard event files in the run directory.

    On resume, rows of updates after the checkpoint (written before the run was stopped) are
    dropped, since the resumed run writes them again.
    """

    def __init__(self, out_dir: Path, keep_until: int, purge_step: int | None = None) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        rows = [row for row in read_metrics(self.path) if int(row["update"]) <= keep_until]
        text = ",".join(METRIC_COLUMNS) + "\n"
        text += "".join(",".join(row[c] for c in METRIC_COLUMNS) + "\n" for row in rows)
        write_atomic(self.path, text)
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(out_dir) / "tensorboard"), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(",".join(_format(row[c]) for c in METRIC_COLUMNS) + "\n")
        for key in METRIC_COLUMNS[1:]:
            if isinstance(row[key], float) and math.isfinite(row[key]):
                self.writer.add_scalar(f"train/{key}", row[key], row["env_steps"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _format(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


def mean(values: np.ndarray | None) -> float:
    """The mean, or NaN when there is nothing to average (no episode ended in this update)."""
    return float(np.mean(values)) if values is not None and len(values) else float("nan")


def ratio(numerator: np.ndarray | None, denominator: np.ndarray | None) -> float:
    """sum(numerator) / sum(denominator), or NaN when the denominator is empty or 0."""
    if numerator is None or denominator is None or np.sum(denominator) == 0:
        return float("nan")
    return float(np.sum(numerator) / np.sum(denominator))


def metrics_row(
    *,
    update: int,
    env_steps: int,
    episodes: int,
    finished: dict[str, np.ndarray],
    kl: float,
    beta: float,
    stats: Any,
    explained_variance: float,
    learning_rate: float,
    steps: float,
    seconds: float,
) -> dict[str, Any]:
    """One row of ``metrics.csv`` (``METRIC_COLUMNS``): counters, the episodes that ended in this
    update (``finished``: arrays of return, length and, for dialog envs, correct/questions/success),
    the KL to the reference, and the update's ``UpdateStats``."""
    return {
        "update": update,
        "env_steps": env_steps,
        "episodes": episodes,
        "return": mean(finished.get("return")),
        "answer_accuracy": ratio(finished.get("correct"), finished.get("questions")),
        "success_rate": mean(finished.get("success")),
        "episode_length": mean(finished.get("length")),
        "kl": kl,
        "beta": beta,
        "entropy": stats.entropy,
        "policy_loss": stats.policy_loss,
        "value_loss": stats.value_loss,
        "approx_kl": stats.approx_kl,
        "clip_fraction": stats.clip_fraction,
        "explained_variance": explained_variance,
        "learning_rate": learning_rate,
        "steps_per_second": steps / seconds,
        "wall_seconds": seconds,
    }


def explained_variance(
    returns_sum: float, returns_sq: float, residual_sum: float, residual_sq: float, n: float
) -> float:
    """1 - Var(returns - values) / Var(returns), from sums over ``n`` steps (sums add up over processes)."""
    if n <= 1:
        return float("nan")
    variance = returns_sq / n - (returns_sum / n) ** 2
    residual = residual_sq / n - (residual_sum / n) ** 2
    return 1.0 - residual / variance if variance > 1e-12 else float("nan")


def progress_bar(total: int, description: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, disable=not enabled, dynamic_ncols=True, leave=True)
