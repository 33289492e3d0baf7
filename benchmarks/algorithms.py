"""PPO against the critic-free trainers (GRPO, Dr. GRPO, RLOO, REINFORCE++) at equal env-step budgets.

Every algorithm runs the same recipe (``dialog-gym train --algo ALGO``): the same policy, rollouts,
KL leash, optimiser settings and evaluator; only the advantage and the loss differ. A setting that
pretrains does it once per seed and every algorithm of that seed starts from that policy (pretraining
does not depend on the algorithm, so this is what each run would compute itself).

For each setting, algorithm and seed the table reports the final test success rate and mean return
(``dialog_gym.evaluate``, ``EVAL_EPISODES`` test episodes, sampled actions as the policy was trained),
and the env steps until the mean return of the training episodes of an update first reaches 90% of
the oracle's return (``dialog_gym.REFERENCE_SCORES``; train-split episodes, which the task draws as
it draws the test ones), mean ± std over seeds. ``algorithms_learning_curve.png`` plots those
training returns.

    python -m benchmarks.algorithms --quick    # the toy setting, 1 seed
    python -m benchmarks.algorithms            # every setting, 3 seeds: the README's table
    python -m benchmarks.algorithms --env Tutor-v0   # one setting again, the others' runs kept
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dialog_gym
from agents.config import TrainConfig
from agents.critic_free import ALGORITHMS
from agents.token_run import TokenRun
from benchmarks import record

EVAL_EPISODES = 500
COLORS = {
    "ppo": "tab:blue",
    "grpo": "tab:orange",
    "dr_grpo": "tab:red",
    "rloo": "tab:green",
    "reinforce_pp": "tab:purple",
}


@dataclass(frozen=True)
class Setting:
    label: str
    env: str
    budget: int  # env steps per run
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields beyond the defaults

    def train_config(self, algo: str, seed: int) -> TrainConfig:
        data = {"env": self.env, "algo": algo, "seed": seed, "total_steps": self.budget}
        return TrainConfig.from_dict(data | {"eval_episodes": EVAL_EPISODES} | self.config)


SETTINGS = (
    # The learning tests' toy setting: vocabulary 8, one-token answers, all 25 questions, from scratch.
    Setting(
        "DialogQA-Toy-v0 V8 A1, from scratch",
        "DialogQA-Toy-v0",
        40_000,
        {
            "env_args": {"vocab_size": 8, "answer_len": 1, "n_questions": 0},
            "num_envs": 256,
            "pretrain": False,
            "ppo": {"ent_coef": 0.05, "kl_coef": 0.0, "learning_rate": 1e-3},
        },
    ),
    # The main job's recipe (pretraining on noisy demonstrations, then RL with the KL leash), a third
    # of its RL budget.
    Setting("DialogQA-v0, pretrained", "DialogQA-v0", 100_000),
    # The hard half of the suite, each with its reference run's recipe (benchmarks/reference_scores.py)
    # at half its RL budget; Conversation-v0 at a quarter: its long dialogues make a 50k-step run take
    # about 4.5 minutes here, so its 15 runs would take over an hour at half.
    Setting("Tutor-v0, pretrained", "Tutor-v0", 50_000),
    Setting(
        "Conversation-v0, pretrained",
        "Conversation-v0",
        25_000,
        {"pretraining": {"demonstrations": 16_000, "epochs": 2}},
    ),
    Setting("TwentyQuestions-v0, pretrained", "TwentyQuestions-v0", 50_000),
    Setting("CustomerService-v0, pretrained", "CustomerService-v0", 50_000),
)


@dataclass
class Result:
    setting: str
    algo: str
    seed: int
    curve: list[tuple[int, float]]  # (env steps, mean return of the update's training episodes)
    success: float
    mean_return: float
    seconds: float  # RL wall time, pretraining and the final evaluation left out
    commit: str = ""  # the code that ran it (git rev-parse HEAD)

    def steps_to(self, target: float) -> int | None:
        return next((steps for steps, value in self.curve if value >= target), None)


def run_setting(setting: Setting, algos: tuple[str, ...], seed: int) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory() as directory:
        pretrained = None
        if setting.train_config("ppo", seed).pretrain:
            first = TokenRun(setting.train_config("ppo", seed), Path(directory) / "pretraining", progress=False)
            first.start(resume=False)
            pretrained = first.start_checkpoint
        for algo in algos:
            run = TokenRun(setting.train_config(algo, seed), Path(directory) / algo, progress=False)
            if pretrained is not None:
                # as a run resumed before its first update: the saved pretrained policy, and it as the reference
                shutil.copytree(pretrained, run.start_checkpoint)
            run.start(resume=pretrained is not None)
            start, curve = time.perf_counter(), []
            while run.env_steps < setting.budget:
                row = run.step()
                curve.append((row["env_steps"], row["return"]))
            seconds = time.perf_counter() - start
            scores = run.final_evaluation()[algo]
            results.append(
                Result(
                    setting.label,
                    algo,
                    seed,
                    curve,
                    scores["success_rate"],
                    scores["mean_return"],
                    seconds,
                    record.git_commit(),
                )
            )
            print(f"{setting.label} {algo} seed {seed}: success {scores['success_rate']:.3f}", flush=True)
    return results


def spread(values: list[float], digits: int = 3) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.{digits}f}"
    return f"{statistics.mean(values):,.{digits}f} ± {statistics.stdev(values):,.{digits}f}"


def table(results: list[Result], settings: tuple[Setting, ...] = SETTINGS) -> str:
    lines = [
        "| setting | algorithm | test success | test return | env steps to 90% of the oracle's return | RL seconds |",
        "|---|---|---:|---:|---:|---:|",
    ]
    by_label = {s.label: s for s in settings}
    for label in dict.fromkeys(r.setting for r in results):
        target = 0.9 * dialog_gym.REFERENCE_SCORES[by_label[label].env]["oracle"]["mean_return"]
        for algo in ALGORITHMS:
            group = [r for r in results if r.setting == label and r.algo == algo]
            if not group:
                continue
            reached = [r.steps_to(target) for r in group if r.steps_to(target) is not None]
            never = "" if len(reached) == len(group) else f" ({len(group) - len(reached)} of {len(group)} never)"
            lines.append(
                f"| {label} | {algo} | {spread([r.success for r in group])} | {spread([r.mean_return for r in group])} "
                f"| {spread(reached, 0)}{never} | {spread([r.seconds for r in group], 0)} |"
            )
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r.setting for r in results))
    columns = min(3, len(labels))
    rows = -(-len(labels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat[len(labels) :]:
        axis.set_visible(False)
    for axis, label in zip(axes.flat, labels):
        for r in [r for r in results if r.setting == label]:
            steps, returns = zip(*r.curve)
            axis.plot(steps, returns, color=COLORS[r.algo], alpha=0.7, label=r.algo if r.seed == 0 else None)
        axis.set_title(label)
        axis.set_xlabel("env steps")
        axis.grid(alpha=0.3)
    for row in axes:
        row[0].set_ylabel("mean training return")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def kept_runs(out: Path, rerun: tuple[str, ...]) -> list[Result]:
    """The runs of ``out/algorithms.json`` (a full run's) of the settings not in ``rerun``, in ``SETTINGS`` order."""
    path = out / "algorithms.json"
    if not path.is_file():
        return []
    stored = record.read(path)
    if stored["quick"]:
        return []
    known = [s.label for s in SETTINGS]
    runs = [
        Result(**{"commit": stored["git_commit"], **r, "curve": [tuple(p) for p in r["curve"]]})
        for r in stored["data"]["runs"]
    ]
    return [r for r in runs if r.setting in known and r.setting not in rerun]


def run(quick: bool = False, seeds: int | None = None, out: Path | None = None, only: tuple[str, ...] = ()) -> str:
    """Every setting (``only``: just these envs, keeping the other settings' runs from ``out``'s results file)."""
    start = time.perf_counter()
    unknown = sorted(set(only) - {s.env for s in SETTINGS})
    if unknown:
        raise ValueError(f"no setting for {unknown}; the settings' envs are {[s.env for s in SETTINGS]}")
    settings = SETTINGS[:1] if quick else tuple(s for s in SETTINGS if not only or s.env in only)
    results: list[Result] = []
    if only and out is not None and not quick and seeds is None:
        results = kept_runs(out, tuple(s.label for s in settings))
    for setting in settings:
        for seed in range(seeds or (1 if quick else 3)):
            results += run_setting(setting, ALGORITHMS, seed)
    order = [s.label for s in SETTINGS]
    results.sort(key=lambda r: order.index(r.setting))
    report = table(results)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot(results, out / "algorithms_learning_curve.png")
        data = {"runs": [r.__dict__ for r in results], "eval_episodes": EVAL_EPISODES}
        # the README quotes the default run only
        reduced = quick or seeds is not None
        record.write("algorithms", data, report, out, quick=reduced, wall_seconds=time.perf_counter() - start)
    return report


def main() -> None:
    parser = record.arguments(__doc__, quick="the toy setting, 1 seed")
    parser.add_argument("--seeds", type=int, help="seeds per setting (default: 3, or 1 with --quick)")
    parser.add_argument(
        "--env", action="append", default=[], help="run only this env's setting (repeatable); the others' runs are kept"
    )
    args = parser.parse_args()
    out = record.out_dir(args)
    print(run(args.quick, args.seeds, out, tuple(args.env)))


if __name__ == "__main__":
    main()
