"""The cross-check: our PPO against Stable-Baselines3's PPO on DialogQA-Toy-v0, side by side.

For every setting (vocabulary size x answer length, 32 questions or all of them when fewer exist)
and seed, five agents get the same env-step budget:

- "SB3 PPO": SB3's PPO with its defaults (``MlpPolicy`` on one-hot observations, 8 envs through
  ``make_vec_env``, 2048 steps per env per rollout, 10 epochs of minibatches of 64, entropy 0),
  with the answer limit reported as a termination (``TerminateAtAnswerLimit``);
- "SB3 PPO, bootstrapping the answer limit": the same on the env as registered (it then
  bootstraps answers cut at the limit and learns not to end them);
- "SB3 PPO, tuned like ours": SB3's PPO given the same tuning as our PPO from scratch (``SB3_TUNED``
  and the per-vocabulary entropy bonus ``ENTROPY``), with the wrapper;
- "ours, from scratch": our PPO with the Transformer, tuned for the toy task (``SCRATCH_PPO``,
  ``ENTROPY``);
- "ours, pretrained": our PPO after pretraining on noisy demonstrations, with the main job's PPO
  settings.

Along the way each is scored by ``dialog_gym.evaluate`` on the same test episodes with its greedy
policy; the table reports the env steps to reach 90% success, the final success, the training
wall time (evaluations left out) and env steps per second. A last run pits them on the full table
at vocabulary 16 (169 questions).

    python -m benchmarks.sb3_crosscheck --quick      # 2 settings, 1 seed, under 5 minutes
    python -m benchmarks.sb3_crosscheck              # the full grid the README reports (about an hour)
    python -m benchmarks.sb3_crosscheck --cached-only  # the report of the runs in the cache, nothing run
    python -m benchmarks.sb3_crosscheck --agents sb3-tuned --settings "V8 A1,V16 A1" --seeds 1

The full grid keeps every finished run in ``results/sb3_crosscheck_runs.jsonl``, so an interrupted
run picks up where it stopped; delete the file to start over. ``--agents`` computes only the named
agents (the others' runs are shown when cached, never computed). The report goes to
``sb3_crosscheck.json`` and ``.md`` in ``--out`` (see ``benchmarks/record.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dialog_gym
from agents.agent import PolicyAgent
from agents.config import TrainConfig
from agents.token_run import TokenRun
from benchmarks import record

EVAL_EPISODES, EVAL_SEED = 256, 1234
RESULTS = Path(__file__).parent / "results"

# Our PPO from scratch on the toy task, tuned on it (vocabulary 16 and 64, three-token answers):
# - 1024 episodes per rollout (about 4k env steps per update), 10 epochs x 8 minibatches: large
#   on-policy batches made it stable; 128 episodes per update with 4 epochs collapsed (best success
#   0.28 after 2M env steps).
# - learning rate 3e-4, constant: 1e-3 hurt, and so did an approx-KL early stop at 0.02.
# - value-loss weight 2.0 on the trunk the value head shares with the policy, part of the setting
#   that learned stably (a separate critic network did worse).
# - an entropy bonus that shrinks with the vocabulary (``ENTROPY``): with 0.01 the policy locks onto
#   tokens that are right for another question or position and success stalls at 0.4-0.7; 0.1 at
#   vocabulary 16 and 0.05 at 64 worked (32 is in between).
# After pretraining it runs with the main job's defaults (KL leash to the pretrained policy).
SCRATCH_PPO = {"learning_rate": 3e-4, "anneal_lr": False, "update_epochs": 10, "num_minibatches": 8, "vf_coef": 2.0}
ENTROPY = {8: 0.1, 16: 0.1, 32: 0.07, 64: 0.05}
# SB3 given the same tuning effort, set the way rl-zoo sets PPO for discrete tasks (its
# hyperparams/ppo.yml: n_envs, n_steps, batch_size and n_epochs per task, the entropy coefficient
# where exploration matters): rollouts as large as ours (16 envs x 256 steps = 4,096 env steps),
# 10 epochs, 16 minibatches of 256 steps, a constant learning rate 3e-4, gamma 1 and lambda 0.95 as
# ours (episodes are short and rewarded at the end), and our per-vocabulary entropy bonus. SB3's
# MlpPolicy has a separate value network, so its value weight stays at its default.
SB3_TUNED = {
    "n_envs": 16,
    "n_steps": 256,
    "batch_size": 256,
    "n_epochs": 10,
    "learning_rate": 3e-4,
    "gamma": 1.0,
    "gae_lambda": 0.95,
}
PRETRAINING = {"demonstrations": 8192, "epochs": 2, "batch_size": 64}
BOOTSTRAPPING = "SB3 PPO, bootstrapping the answer limit"
TUNED = "SB3 PPO, tuned like ours"
# ``--agents`` names -> the names the cache keys carry (kept as they were when the cache was written).
AGENTS = {
    "sb3": "sb3-terminate-at-limit",
    "sb3-bootstrapping": "sb3",
    "sb3-tuned": "sb3-tuned",
    "scratch": "scratch",
    "pretrained": "pretrained",
}
COLORS = {
    "SB3 PPO": "tab:orange",
    BOOTSTRAPPING: "tab:gray",
    TUNED: "tab:red",
    "ours, from scratch": "tab:blue",
    "ours, pretrained": "tab:green",
}


@dataclass
class Result:
    agent: str
    setting: str
    seed: int
    curve: list[tuple[float, float]] = field(default_factory=list)  # (env steps, greedy success)
    final_success: float = 0.0
    seconds: float = 0.0
    env_steps: int = 0

    @property
    def steps_to_90(self) -> float | None:
        return next((steps for steps, success in self.curve if success >= 0.9), None)


def greedy_success(agent, env_args: dict, episodes: int = EVAL_EPISODES) -> float:
    return dialog_gym.evaluate(agent, "DialogQA-Toy-v0", episodes=episodes, seed=EVAL_SEED, **env_args)["success_rate"]


def run_sb3(
    env_args: dict,
    seed: int,
    budget: int,
    every: int,
    label: str,
    bootstrap_limit: bool = False,
    tuned: bool = False,
) -> Result:
    """SB3's PPO with its defaults, or with ``tuned`` the settings of ``SB3_TUNED`` and ``ENTROPY``;
    ``bootstrap_limit`` leaves out ``TerminateAtAnswerLimit`` (SB3 then bootstraps answers that hit the
    token limit, which stops it from learning to end them)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from agents.sb3 import EvaluationCurve, sb3_agent
    from dialog_gym.wrappers import TerminateAtAnswerLimit

    wrapper = None if bootstrap_limit else TerminateAtAnswerLimit
    settings = {**SB3_TUNED, "ent_coef": ENTROPY[env_args["vocab_size"]]} if tuned else {"n_envs": 8}
    n_envs = settings.pop("n_envs")
    envs = make_vec_env("DialogQA-Toy-v0", n_envs=n_envs, seed=seed, env_kwargs=env_args, wrapper_class=wrapper)
    model = PPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0, **settings)
    curve = EvaluationCurve("DialogQA-Toy-v0", env_args, every=every, episodes=EVAL_EPISODES, seed=EVAL_SEED)
    model.learn(total_timesteps=budget, callback=curve)
    seconds = curve.training_seconds
    curve.record()
    name = TUNED if tuned else BOOTSTRAPPING if bootstrap_limit else "SB3 PPO"
    result = Result(name, label, seed, [(p["env_steps"], p["success_rate"]) for p in curve.points])
    result.final_success = greedy_success(sb3_agent(model), env_args, 1000)
    result.seconds, result.env_steps = seconds, model.num_timesteps
    return result


def run_ours(env_args: dict, seed: int, budget: int, every: int, label: str, pretrain: bool) -> Result:
    vocab = env_args["vocab_size"]
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-Toy-v0",
            "env_args": env_args,
            "seed": seed,
            "total_steps": budget,
            "num_envs": 1024,
            "pretrain": pretrain,
            "ppo": {} if pretrain else {**SCRATCH_PPO, "ent_coef": ENTROPY[vocab]},
            "pretraining": PRETRAINING,
        }
    )
    result = Result("ours, pretrained" if pretrain else "ours, from scratch", label, seed)
    with tempfile.TemporaryDirectory() as directory:
        run = TokenRun(config, Path(directory), progress=False)
        start = time.perf_counter()
        if pretrain:
            run.run_pretraining()
        seconds, next_eval = time.perf_counter() - start, 0
        while run.env_steps < budget:
            if run.env_steps >= next_eval:
                result.curve.append((run.env_steps, greedy_success(PolicyAgent(run.policy, greedy=True), env_args)))
                next_eval += every
            start = time.perf_counter()
            run.step()
            seconds += time.perf_counter() - start
        result.curve.append((run.env_steps, greedy_success(PolicyAgent(run.policy, greedy=True), env_args)))
        result.final_success = greedy_success(PolicyAgent(run.policy, greedy=True), env_args, 1000)
        result.seconds, result.env_steps = seconds, run.env_steps
    return result


class RunCache:
    """Finished runs keyed by agent, setting, seed, budget and the agents' settings, one JSON line each."""

    def __init__(self, path: Path | None, compute: bool | tuple[str, ...] = True) -> None:
        """``compute``: whether runs missing from the cache are computed, or the agents whose runs are."""
        self.path, self.compute = path, compute
        self.runs: dict[str, dict] = {}
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self.runs[entry["key"]] = entry["result"]

    @staticmethod
    def key(agent: str, label: str, seed: int, budget: int, every: int) -> str:
        hashed = [SCRATCH_PPO, ENTROPY, PRETRAINING, EVAL_EPISODES, EVAL_SEED]
        if agent == "sb3-tuned":  # only this agent's runs depend on its settings
            hashed.append(SB3_TUNED)
        settings = json.dumps(hashed, sort_keys=True)
        return f"{agent}|{label}|{seed}|{budget}|{every}|{hashlib.sha256(settings.encode()).hexdigest()[:12]}"

    def get(self, key: str, compute) -> Result | None:
        """The cached run, or ``compute()``'s (then cached); None if absent and computing is off for its agent."""
        if key in self.runs:
            stored = dict(self.runs[key])
            stored["curve"] = [tuple(point) for point in stored["curve"]]
            return Result(**stored)
        agent = key.split("|", 1)[0]
        if not (self.compute is True or (isinstance(self.compute, tuple) and agent in self.compute)):
            return None
        result = compute()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as file:
                file.write(json.dumps({"key": key, "result": dataclasses.asdict(result)}) + "\n")
        return result


def _renamed(result: Result | None, agent: str) -> Result | None:
    if result is not None:
        result.agent = agent
    return result


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:,.0f}" if values[0] > 10 else f"{values[0]:.3f}"
    mean, std = statistics.mean(values), statistics.stdev(values)
    return f"{mean:,.0f} ± {std:,.0f}" if mean > 10 else f"{mean:.3f} ± {std:.3f}"


def table(results: list[Result]) -> str:
    lines = [
        "| setting | agent | env steps to 90% success | final success | training seconds | env steps/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for setting in dict.fromkeys(r.setting for r in results):
        for agent in dict.fromkeys(r.agent for r in results):
            group = [r for r in results if r.setting == setting and r.agent == agent]
            if not group:
                continue
            reached = [r.steps_to_90 for r in group if r.steps_to_90 is not None]
            steps = spread(reached) + (
                "" if len(reached) == len(group) else f" ({len(group) - len(reached)} of {len(group)} never)"
            )
            lines.append(
                f"| {setting} | {agent} | {steps} | {spread([r.final_success for r in group])} | "
                f"{spread([r.seconds for r in group])} | {spread([r.env_steps / r.seconds for r in group])} |"
            )
    return "\n".join(lines)


def ratios(results: list[Result]) -> str:
    """Ours from scratch over SB3 (defaults, and tuned like ours) per setting: env steps to 90% success and
    training wall time (means over seeds)."""
    lines = [
        "| setting | ours (from scratch) / SB3: env steps to 90% | training seconds ratio "
        "| ours / SB3 tuned like ours: env steps to 90% | training seconds ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for setting in dict.fromkeys(r.setting for r in results):

        def mean_of(agent, key):
            values = [key(r) for r in results if r.setting == setting and r.agent == agent]
            values = [v for v in values if v is not None]
            return statistics.mean(values) if values else None

        cells = []
        for sb3_agent in ("SB3 PPO", TUNED):
            ours, sb3 = (
                mean_of("ours, from scratch", lambda r: r.steps_to_90),
                mean_of(sb3_agent, lambda r: r.steps_to_90),
            )
            sb3_budget = mean_of(sb3_agent, lambda r: r.env_steps) or 0
            if ours and sb3:
                steps = f"{ours / sb3:.2f}"
            elif ours and sb3_budget:  # SB3 needs more than its whole budget, so the ratio is below ours / budget
                steps = f"< {ours / sb3_budget:.2f} (SB3 not at 90% after {sb3_budget:,.0f})"
            else:
                steps = "-"
            ours_seconds, sb3_seconds = (
                mean_of("ours, from scratch", lambda r: r.seconds),
                mean_of(sb3_agent, lambda r: r.seconds),
            )
            if ours_seconds is None or sb3_seconds is None:
                steps, seconds = "not run", "-"
            else:
                seconds = f"{ours_seconds / sb3_seconds:.2f}"
            cells += [steps, seconds]
        lines.append(f"| {setting} | {' | '.join(cells)} |")
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    settings = list(dict.fromkeys(r.setting for r in results))
    columns = min(4, len(settings))
    rows = -(-len(settings) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for axis, setting in zip(axes.flat, settings):
        for agent in dict.fromkeys(r.agent for r in results):
            for r in [r for r in results if r.setting == setting and r.agent == agent]:
                steps, success = zip(*r.curve)
                axis.plot(steps, success, label=agent if r.seed == 0 else None, color=COLORS[agent], alpha=0.8)
        axis.set_title(setting)
        axis.set_xlabel("env steps")
        axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:.0f}k"))
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    for axis in axes.flat[len(settings) :]:
        axis.set_visible(False)
    for row in axes:
        row[0].set_ylabel("greedy success")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def grid(quick: bool) -> list[tuple[str, dict, int, int, int]]:
    """(label, env args, env-step budget, evaluation interval, seeds) of every setting.

    Three-token answers get one seed: their runs are three times longer, and the grid has to fit
    in about an hour on two cores. ``--seeds N`` runs N seeds of every setting.
    """
    if quick:
        return [(f"V{v} A1", {"vocab_size": v, "answer_len": 1}, 30_000, 5_000, 1) for v in (8, 16)]
    settings = []
    for answer_len, budget, seeds in ((1, 100_000, 2), (3, 300_000, 1)):
        for vocab in (8, 16, 32, 64):
            args = {"vocab_size": vocab, "answer_len": answer_len}
            settings.append((f"V{vocab} A{answer_len}", args, budget, budget // 30, seeds))
    return settings


def run(
    quick: bool = False,
    seeds: int | None = None,
    full_table: bool | None = None,
    cache: Path | None = None,
    cached_only: bool = False,
    agents: tuple[str, ...] | None = None,
    settings: tuple[str, ...] | None = None,
    out: Path | None = None,
) -> str:
    """Run the grid (``seeds`` per setting, or the grid's own); returns the markdown report and writes the PNGs
    (and with ``out``, ``sb3_crosscheck.json`` and ``.md``) into ``out``, or benchmarks/results/ without it.

    ``cache`` (a JSON-lines file) keeps finished runs so that an interrupted grid resumes; with
    ``cached_only`` the report shows the cached runs and runs nothing. ``agents`` (keys of ``AGENTS``)
    computes only those agents' missing runs; ``settings`` (labels such as "V8 A1") restricts the grid.
    """
    start = time.perf_counter()
    unknown = sorted(set(agents or ()) - set(AGENTS))
    if unknown:
        raise ValueError(f"unknown agent(s) {unknown}; expected some of {sorted(AGENTS)}")
    compute = False if cached_only else tuple(AGENTS[a] for a in agents) if agents else True
    runs = RunCache(cache, compute=compute)
    figures = out if out is not None else RESULTS

    def play(
        env_args: dict, seed: int, budget: int, every: int, label: str, bootstrapping: bool = True
    ) -> list[Result]:
        def cached(agent: str, compute, name: str | None = None) -> Result | None:
            result = runs.get(runs.key(AGENTS[agent], label, seed, budget, every), compute)
            return result if name is None else _renamed(result, name)

        found = [
            cached("sb3", lambda: run_sb3(env_args, seed, budget, every, label), "SB3 PPO"),
            cached(
                "sb3-bootstrapping",
                lambda: run_sb3(env_args, seed, budget, every, label, bootstrap_limit=True),
                BOOTSTRAPPING,
            )
            if bootstrapping
            else None,
            cached("sb3-tuned", lambda: run_sb3(env_args, seed, budget, every, label, tuned=True)),
            cached("scratch", lambda: run_ours(env_args, seed, budget, every, label, pretrain=False)),
            cached("pretrained", lambda: run_ours(env_args, seed, budget, every, label, pretrain=True)),
        ]
        return [result for result in found if result is not None]

    results: list[Result] = []
    for label, env_args, budget, every, setting_seeds in grid(quick):
        if settings and label not in settings:
            continue
        for seed in range(seeds or setting_seeds):
            results += play(env_args, seed, budget, every, label)
            print(f"done: {label} seed {seed}", flush=True)
    figures.mkdir(parents=True, exist_ok=True)
    plot(results, figures / "sb3_crosscheck.png")
    sections = {"grid": table(results), "ratios": ratios(results)}
    if (full_table if full_table is not None else not quick) and not settings:
        args = {"vocab_size": 16, "answer_len": 3, "n_questions": 0}
        full = play(args, 0, 1_000_000, 50_000, "V16 A3, all 169 questions", bootstrapping=False)
        if full:
            plot(full, figures / "sb3_full_table.png")
            sections["full"] = table(full)
            results += full
    report = "\n\n".join(sections.values())
    if out is not None:
        data = {"runs": [dataclasses.asdict(r) for r in results]}
        record.write(
            "sb3_crosscheck",
            data,
            report,
            out,
            quick=quick or bool(settings) or seeds is not None,
            wall_seconds=time.perf_counter() - start,
            sections=sections,
        )
    return report


def main() -> None:
    parser = record.arguments(__doc__, quick="2 settings, 1 seed, 30k env steps each")
    parser.add_argument(
        "--seeds", type=int, help="seeds per setting (default: 1 quick; full: 2, and 1 for 3-token answers)"
    )
    parser.add_argument("--no-cache", action="store_true", help="rerun every setting of the full grid")
    parser.add_argument("--cached-only", action="store_true", help="report the runs in the cache; run nothing")
    parser.add_argument(
        "--agents", help=f"comma-separated agents whose missing runs are computed (some of {', '.join(AGENTS)})"
    )
    parser.add_argument("--settings", help='comma-separated settings of the grid to run, e.g. "V8 A1,V16 A1"')
    args = parser.parse_args()
    cache = None if args.quick or args.no_cache else RESULTS / "sb3_crosscheck_runs.jsonl"
    split = lambda text: tuple(part.strip() for part in text.split(",")) if text else None  # noqa: E731
    out = record.out_dir(args)
    print(
        run(
            args.quick,
            args.seeds,
            cache=cache,
            cached_only=args.cached_only,
            agents=split(args.agents),
            settings=split(args.settings),
            out=out,
        )
    )


if __name__ == "__main__":
    main()
