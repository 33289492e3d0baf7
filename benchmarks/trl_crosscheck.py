"""The cross-check: our GRPO against TRL's ``GRPOTrainer`` on DialogQA-Toy-v0, side by side.

Both train the same model (``examples/tiny-gpt2``: GPT-2, 2 layers, width 64, built fresh with the
same seed, so both start from the same weights) from scratch on the same env (vocabulary 16,
one-token answers closed by EOS, 32 questions) with the same settings (``SETTINGS``): generation
batches of 256 episodes in groups of 8 completions of one question, the advantage
(R - group mean) / (group std + 1e-4), the ratio clipped at 0.2, the loss averaged per sequence and
then over the sequences (TRL's ``loss_type="grpo"``), no KL term, no entropy bonus (TRL has none),
Adam at a constant learning rate, 2 epochs of 4 minibatches per batch:

- "TRL GRPO": ``trl.GRPOTrainer`` through ``agents.trl_grpo`` (the env's questions as prompts,
  the env's return as the reward function, the env's vocabulary as a word-level tokenizer). Its
  sampler deals the 32 questions without replacement, so every batch asks each question once;
- "TRL GRPO, questions drawn at random": the same, on a dataset of questions drawn at random, so
  that a batch draws its questions with replacement as our vector env does (the one difference of
  sampling left between the two);
- "ours, GRPO": ``dialog-gym train --algo grpo --policy hf:examples/tiny-gpt2 --no-pretrain``
  with these settings.

Each is scored by ``dialog_gym.evaluate`` on the same test episodes with its greedy policy after
every generation batch of about ``budget / 30`` env steps; the table reports env steps (sampled
tokens) to 90% success, final success (1000 episodes), training wall time (evaluations left out)
and env steps per second, mean ± std over seeds, and ours / TRL seed by seed.

    python -m benchmarks.trl_crosscheck --quick   # 1 seed, 30k env steps
    python -m benchmarks.trl_crosscheck           # 3 seeds, 100k env steps: the README's table
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents.agent import PolicyAgent
from agents.config import TrainConfig
from agents.token_run import TokenRun
from benchmarks import record
from benchmarks.sb3_crosscheck import Result, greedy_success, spread

ENV_ID = "DialogQA-Toy-v0"
ENV_ARGS = {"vocab_size": 16, "answer_len": 1}
MODEL = "examples/tiny-gpt2"
GROUP = 8
EVAL_EPISODES = 256
SETTINGS = {
    "episodes_per_batch": 256,  # 32 questions x 8 completions per generation batch
    "update_epochs": 2,
    "num_minibatches": 4,
    "learning_rate": 3e-4,
    "clip_coef": 0.2,
    "max_grad_norm": 0.5,
    "adam_eps": 1e-5,
}
TRL_IID = "TRL GRPO, questions drawn at random"
COLORS = {"TRL GRPO": "tab:orange", TRL_IID: "tab:red", "ours, GRPO": "tab:blue"}


def run_trl(seed: int, budget: int, every: int, iid: bool = False) -> Result:
    """TRL's GRPOTrainer on the toy task until ``budget`` env steps. Its sampler deals the dataset's
    prompts without replacement, so a batch of 32 groups asks each of the 32 questions once; with
    ``iid`` the dataset is a long list of questions drawn at random, so a batch draws them with
    replacement, as our vector env does."""
    from trl import GRPOConfig, GRPOTrainer

    from agents.trl_grpo import EnvReward, SuccessCurve, blocked_tokens, prompt_dataset, word_tokenizer

    s = SETTINGS
    torch.manual_seed(seed)
    model = _fresh_model(seed)
    reward = EnvReward(ENV_ID, ENV_ARGS)
    env = reward.env.unwrapped
    updates_per_batch = s["update_epochs"] * s["num_minibatches"]
    curve = SuccessCurve(reward, ENV_ID, ENV_ARGS, budget, updates_per_batch, every, EVAL_EPISODES, seed=1234)
    dataset = prompt_dataset(ENV_ID, ENV_ARGS)
    if iid:
        draws = np.random.default_rng(seed).integers(0, len(dataset), size=budget // GROUP + len(dataset))
        dataset = dataset.select(draws.tolist())
    with tempfile.TemporaryDirectory() as directory:
        args = GRPOConfig(
            output_dir=directory,
            use_cpu=True,
            bf16=False,
            report_to=[],
            logging_strategy="no",
            save_strategy="no",
            disable_tqdm=True,
            seed=seed,
            data_seed=seed,
            num_generations=GROUP,
            per_device_train_batch_size=s["episodes_per_batch"] // s["num_minibatches"],
            steps_per_generation=s["num_minibatches"],
            num_iterations=s["update_epochs"],
            max_steps=10**9,  # SuccessCurve stops at the env-step budget
            learning_rate=s["learning_rate"],
            lr_scheduler_type="constant",
            adam_epsilon=s["adam_eps"],
            weight_decay=0.0,
            max_grad_norm=s["max_grad_norm"],
            epsilon=s["clip_coef"],
            beta=0.0,
            loss_type="grpo",
            scale_rewards="group",
            max_completion_length=env.max_answer_tokens,
            temperature=1.0,
            gradient_checkpointing=False,
            disable_dropout=True,
            generation_kwargs={"bad_words_ids": blocked_tokens(ENV_ID, ENV_ARGS)},
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=args,
            train_dataset=dataset,
            processing_class=word_tokenizer(env.tokenizer),
            callbacks=[curve],
        )
        trainer.train()
    result = Result(TRL_IID if iid else "TRL GRPO", "V16 A1", seed, curve.points)
    result.seconds, result.env_steps = curve.training_seconds, reward.env_steps
    result.final_success = curve.success(trainer.model, 1000)
    return result


def _config(seed: int, budget: int) -> TrainConfig:
    s = SETTINGS
    return TrainConfig.from_dict(
        {
            "env": ENV_ID,
            "env_args": ENV_ARGS,
            "policy": f"hf:{MODEL}",
            "algo": "grpo",
            "seed": seed,
            "total_steps": budget,
            "num_envs": s["episodes_per_batch"],
            "pretrain": False,
            "device": "cpu",
            "ppo": {
                "learning_rate": s["learning_rate"],
                "anneal_lr": False,
                "adam_eps": s["adam_eps"],
                "update_epochs": s["update_epochs"],
                "num_minibatches": s["num_minibatches"],
                "clip_coef": s["clip_coef"],
                "max_grad_norm": s["max_grad_norm"],
                "ent_coef": 0.0,
            },
            "critic_free": {"group_size": GROUP, "loss_aggregation": "sequence", "kl_penalty": "reward"},
        }
    )


def _fresh_model(seed: int) -> torch.nn.Module:
    """The GPT-2 our run builds with this seed (same code, same draws), for TRL to start from."""
    with tempfile.TemporaryDirectory() as directory:
        run = TokenRun(_config(seed, 1), Path(directory), progress=False)
        return run.policy.model


def run_ours(seed: int, budget: int, every: int) -> Result:
    result = Result("ours, GRPO", "V16 A1", seed)
    with tempfile.TemporaryDirectory() as directory:
        run = TokenRun(_config(seed, budget), Path(directory), progress=False)
        seconds, next_eval = 0.0, every
        result.curve.append((0, greedy_success(PolicyAgent(run.policy, greedy=True), ENV_ARGS)))
        while run.env_steps < budget:
            start = time.perf_counter()
            run.step()
            seconds += time.perf_counter() - start
            if run.env_steps >= next_eval or run.env_steps >= budget:
                result.curve.append((run.env_steps, greedy_success(PolicyAgent(run.policy, greedy=True), ENV_ARGS)))
                next_eval += every
        result.final_success = greedy_success(PolicyAgent(run.policy, greedy=True), ENV_ARGS, 1000)
        result.seconds, result.env_steps = seconds, run.env_steps
    return result


def table(results: list[Result]) -> str:
    lines = [
        "| agent | env steps to 90% success | final success | training seconds | env steps/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for agent in COLORS:
        group = [r for r in results if r.agent == agent]
        if not group:
            continue
        reached = [r.steps_to_90 for r in group if r.steps_to_90 is not None]
        never = "" if len(reached) == len(group) else f" ({len(group) - len(reached)} of {len(group)} never)"
        lines.append(
            f"| {agent} | {spread(reached)}{never} | {spread([r.final_success for r in group])} | "
            f"{spread([r.seconds for r in group])} | {spread([r.env_steps / r.seconds for r in group])} |"
        )
    return "\n".join(lines)


def ratios(results: list[Result]) -> str:
    """Ours over each TRL agent, seed by seed (one seed starts all from the same weights), then the mean."""
    by = {(r.agent, r.seed): r for r in results}
    mean = lambda values: f"{statistics.mean(values):.2f}" if values else "-"  # noqa: E731
    lines = ["| ours / | env steps to 90% success | training seconds per env step | seeds |", "|---|---:|---:|---:|"]
    for agent in ("TRL GRPO", TRL_IID):
        seeds = sorted({r.seed for r in results if (agent, r.seed) in by and ("ours, GRPO", r.seed) in by})
        steps, seconds = [], []
        for seed in seeds:
            ours, trl = by[("ours, GRPO", seed)], by[(agent, seed)]
            if ours.steps_to_90 and trl.steps_to_90:
                steps.append(ours.steps_to_90 / trl.steps_to_90)
            seconds.append((ours.seconds / ours.env_steps) / (trl.seconds / trl.env_steps))
        if seeds:
            both = f" (seeds where both reach 90%: {len(steps)})" if len(steps) < len(seeds) else ""
            lines.append(f"| {agent} | {mean(steps)}{both} | {mean(seconds)} | {len(seeds)} |")
    return "\n".join(lines)


def plot(results: list[Result], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.4))
    for r in results:
        steps, success = zip(*r.curve)
        axis.plot(steps, success, color=COLORS[r.agent], alpha=0.8, label=r.agent if r.seed == 0 else None)
    axis.set_xlabel("env steps (sampled tokens)")
    axis.set_ylabel("greedy test success")
    axis.set_title(f"{ENV_ID} V16 A1, tiny GPT-2 from scratch")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(quick: bool = False, seeds: int | None = None, budget: int | None = None, out: Path | None = None) -> str:
    start = time.perf_counter()
    reduced = quick or seeds is not None or budget is not None  # the README quotes the default run only
    seeds = seeds or (1 if quick else 3)
    budget = budget or (30_000 if quick else 100_000)
    every = budget // 30
    results: list[Result] = []
    for seed in range(seeds):
        results.append(run_trl(seed, budget, every))
        results.append(run_trl(seed, budget, every, iid=True))
        results.append(run_ours(seed, budget, every))
        print(f"done: seed {seed}", flush=True)
    sections = {"table": table(results), "ratios": ratios(results)}
    report = "\n\n".join(sections.values())
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        plot(results, out / "trl_crosscheck.png")
        data = {"settings": SETTINGS, "budget": budget, "runs": [dataclasses.asdict(r) for r in results]}
        record.write(
            "trl_crosscheck",
            data,
            report,
            out,
            quick=reduced,
            wall_seconds=time.perf_counter() - start,
            sections=sections,
        )
    return report


def main() -> None:
    parser = record.arguments(__doc__, quick="1 seed, 30k env steps")
    parser.add_argument("--seeds", type=int, help="seeds (default: 3, or 1 with --quick)")
    parser.add_argument("--budget", type=int, help="env steps per run (default: 100k, or 30k with --quick)")
    args = parser.parse_args()
    out = record.out_dir(args)
    print(run(args.quick, args.seeds, args.budget, out))


if __name__ == "__main__":
    main()
