"""The reference scores of every registered env: `dialog-gym train` as the README quotes it, over seeds.

For each env id (all registered ones by default) and each seed, runs the README's command for that
env (``COMMANDS``) with ``--seed S`` as a subprocess, reads the run's final evaluation (random,
pretrained-only, PPO sampled and greedy: ``dialog_gym.evaluate`` on the test split, the run's
``eval_episodes`` episodes from seed ``S + 12345``) and scores the oracle the same way. Writes
``reference_scores/ENV_ID.json`` into ``--out``: the command, each seed's scores and wall time, the
mean and standard deviation over seeds, the code version (git commit) and the machine.
``REFERENCE_SCORES[ENV_ID]["ppo"]`` and the README's per-env table quote these files, and
``tests/test_results.py`` checks that they do.

    python -m benchmarks.reference_scores                      # every env, 3 seeds (hours on 2 cores)
    python -m benchmarks.reference_scores DialogQA-v0 --seeds 1
    python -m benchmarks.reference_scores DialogQA-Toy-v0 --quick --out /tmp/scores   # the code path, in minutes
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import dialog_gym
from benchmarks import record

# The README's command per env, after `dialog-gym train --env ENV_ID`: extra arguments, and the
# config file's contents where the README's settings have no command-line flag.
COMMANDS: dict[str, tuple[list[str], dict[str, Any]]] = {
    "DialogQA-v0": ([], {}),
    "DialogQA-Toy-v0": ([], {}),
    "Tutor-v0": (["--total-steps", "100000"], {}),
    "Conversation-v0": (["--total-steps", "100000"], {"pretraining": {"demonstrations": 16_000, "epochs": 2}}),
    "TwentyQuestions-v0": (["--total-steps", "100000"], {}),
    "CustomerService-v0": (["--total-steps", "100000"], {}),
}
# --quick: a run short enough to check the code path, nothing more.
QUICK = {"total_steps": 2048, "eval_episodes": 64, "pretraining": {"demonstrations": 512, "epochs": 1}}
AGENTS = ("random", "pretrained", "ppo", "ppo_greedy", "oracle")
METRICS = ("mean_return", "answer_accuracy", "success_rate")
OUT_DIR = "reference_scores"


def train_command(env_id: str, seed: int, out: Path, config: Path | None) -> list[str]:
    """The `dialog-gym train` arguments of ``env_id``'s reference run (after the program name)."""
    if env_id not in COMMANDS:
        raise ValueError(f"no reference command for {env_id!r}; add it to COMMANDS (known: {sorted(COMMANDS)})")
    extra, _ = COMMANDS[env_id]
    command = ["train", "--env", env_id, *extra, "--seed", str(seed), "--out", str(out), "--quiet"]
    return command + (["--config", str(config)] if config is not None else [])


def config_contents(env_id: str, quick: bool) -> dict[str, Any]:
    """The config file's contents of ``env_id``'s run (empty: no file)."""
    contents = json.loads(json.dumps(COMMANDS[env_id][1]))
    if quick:
        pretraining = {**contents.get("pretraining", {}), **QUICK["pretraining"]}
        contents = {**contents, **QUICK, "pretraining": pretraining}
    return contents


def shown_command(env_id: str, quick: bool) -> str:
    """The command as the README quotes it (seed, output directory and config path left as placeholders)."""
    extra, _ = COMMANDS[env_id]
    contents = config_contents(env_id, quick)
    config = f" --config <{yaml.safe_dump(contents, default_flow_style=True).strip()}>" if contents else ""
    return shlex.join(["dialog-gym", "train", "--env", env_id, *extra]) + " --seed S" + config


def score_seed(env_id: str, seed: int, quick: bool) -> dict[str, Any]:
    """Train ``env_id`` with ``seed`` as the README does and return its scores, command and wall time."""
    with tempfile.TemporaryDirectory() as directory:
        contents = config_contents(env_id, quick)
        config = None
        if contents:
            config = Path(directory) / "config.yaml"
            config.write_text(yaml.safe_dump(contents))
        run_dir = Path(directory) / "run"
        arguments = train_command(env_id, seed, run_dir, config)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "agents.cli", *arguments], check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        results = json.loads((run_dir / "eval.json").read_text())
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    scores = {name: results[name] for name in AGENTS if name in results}
    scores["oracle"] = dialog_gym.evaluate(
        dialog_gym.OracleAgent(),
        env_id,
        episodes=saved["eval_episodes"],
        seed=seed + 12345,
        split="test",
        **saved["env_args"],
    )
    return {
        "seed": seed,
        "wall_seconds": round(seconds, 1),
        "total_steps": saved["total_steps"],
        "scores": scores,
        "demonstrations": results.get("demonstrations"),
    }


def summarise(per_seed: list[dict[str, Any]], statistic) -> dict[str, dict[str, float]]:
    """``statistic`` (mean, or standard deviation) over seeds of every agent's metrics."""
    summary: dict[str, dict[str, float]] = {}
    for agent in AGENTS:
        runs = [run["scores"][agent] for run in per_seed if agent in run["scores"]]
        if runs:
            summary[agent] = {metric: statistic([run[metric] for run in runs]) for metric in METRICS}
    return summary


def standard_deviation(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def measure(env_id: str, seeds: int, quick: bool) -> dict[str, Any]:
    """Every seed's run of ``env_id``, and their mean and standard deviation."""
    start = time.perf_counter()
    per_seed = []
    for seed in range(seeds):
        per_seed.append(score_seed(env_id, seed, quick))
        print(f"done: {env_id} seed {seed} ({per_seed[-1]['wall_seconds']:.0f} s)", file=sys.stderr, flush=True)
    return {
        "env": env_id,
        "command": shown_command(env_id, quick),
        "quick": quick,
        "git_commit": record.git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": record.machine(),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "seeds": list(range(seeds)),
        "total_steps": per_seed[0]["total_steps"],
        "mean": summarise(per_seed, statistics.mean),
        "std": summarise(per_seed, standard_deviation),
        "per_seed": per_seed,
    }


def reference_row(scores: dict[str, Any]) -> dict[str, float]:
    """``REFERENCE_SCORES[env]["ppo"]`` as it follows from a results file: the PPO means, to 3 decimals."""
    return {metric: round(scores["mean"]["ppo"][metric], 3) for metric in METRICS}


def cell(means: dict[str, dict[str, float]], agent: str) -> str:
    if agent not in means:
        return ""
    return f"{means[agent]['mean_return']:.3f} / {means[agent]['success_rate']:.3f}"


def table_row(env_id: str, scores: dict[str, Any] | None) -> str:
    """The README's per-env table row of ``env_id`` (a pointer to this script when it has no results file)."""
    if scores is None:
        return f"| `{env_id}` | not measured: `python -m benchmarks.reference_scores {env_id}` | | | | | | | |"
    means, spread = scores["mean"], scores["std"]["ppo"]
    return (
        f"| `{env_id}` | {scores['total_steps'] // 1000}k | {len(scores['seeds'])} | {cell(means, 'random')} | "
        f"{cell(means, 'pretrained')} | {cell(means, 'ppo')} | "
        f"{spread['mean_return']:.3f} / {spread['success_rate']:.3f} | {cell(means, 'ppo_greedy')} | "
        f"{cell(means, 'oracle')} |"
    )


def table(results: Path, env_ids: tuple[str, ...] = dialog_gym.ENV_IDS) -> str:
    """The README's per-env table, from the results files in ``results`` (a directory of ENV_ID.json)."""
    lines = [
        "| env | PPO env steps | seeds | random | pretrained only | PPO | PPO, std over seeds | PPO, greedy | oracle |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for env_id in env_ids:
        path = results / f"{env_id}.json"
        scores = json.loads(path.read_text()) if path.exists() else None
        if scores is not None and scores.get("quick"):
            raise ValueError(f"{path} holds a --quick run; rerun `python -m benchmarks.reference_scores {env_id}`")
        lines.append(table_row(env_id, scores))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = record.arguments(__doc__, quick="2,048 PPO env steps and a short pretraining per run")
    parser.add_argument("env_ids", nargs="*", help="env ids to score (default: every registered id)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per env, 0 to N-1 (default: 3)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.env_ids) - set(COMMANDS))
    if unknown:
        parser.error(f"unknown env id(s) {unknown}; expected some of {sorted(COMMANDS)}")
    if args.seeds < 1:
        parser.error(f"--seeds must be at least 1, got {args.seeds}")
    out = record.out_dir(args) / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    for env_id in args.env_ids or dialog_gym.ENV_IDS:
        scores = measure(env_id, args.seeds, args.quick)
        path = out / f"{env_id}.json"
        path.write_text(json.dumps(scores, indent=2) + "\n")
        print(f"{path}: REFERENCE_SCORES[{env_id!r}]['ppo'] = {reference_row(scores)}")
        print(table_row(env_id, scores))


if __name__ == "__main__":
    main()
