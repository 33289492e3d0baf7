"""The ``dialog-gym`` command line: train, evaluate, chat, plot, reward models, tokenizers and the list of environments."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import yaml

import dialog_gym

EVAL_COLUMNS = ["agent", "mean_return", "answer_accuracy", "success_rate", "mean_answer_tokens"]


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["n_people=3", "reward=f1"]`` -> ``{"n_people": 3, "reward": "f1"}`` (values read as YAML scalars)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--env-arg expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (dicts) with the given ``columns``; floats to 3 decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def eval_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        {"agent": name, **values}
        for name, values in results.items()
        if isinstance(values, dict) and "mean_return" in values
    ]
    if "demonstrations" in results:
        rows.append({"agent": "demonstrations", **results["demonstrations"]})
    return rows


# -- commands -----------------------------------------------------------------------------------


def cmd_envs(args: argparse.Namespace) -> None:
    rows = []
    for env_id in dialog_gym.ENV_IDS:
        env = gym.make(env_id)
        rows.append(
            {
                "id": env_id,
                "vocab": env.action_space.n,
                "obs length": env.observation_space.shape[0],
                "turns": env.unwrapped.task.limits.max_turns,
                "reward": env.unwrapped.kernel.reward_name,
                "summary": dialog_gym.ENV_SUMMARIES[env_id],
            }
        )
    print(format_table(rows, ["id", "vocab", "obs length", "turns", "reward", "summary"]))
    example = gym.make(dialog_gym.ENV_IDS[0], render_mode="ansi")
    example.reset(seed=0)
    print(f"\nAn episode of {dialog_gym.ENV_IDS[0]} (seed 0) as the agent first sees it:\n{example.render()}")


def load_config(args: argparse.Namespace):
    from agents.train import TrainConfig

    data: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a YAML mapping of config keys, got {type(loaded).__name__}")
        data = loaded
    overrides = {
        "env": args.env,
        "seed": args.seed,
        "total_steps": args.total_steps,
        "num_envs": args.num_envs,
        "device": args.device,
        "policy": args.policy,
    }
    data.update({k: v for k, v in overrides.items() if v is not None})
    if args.env_arg:
        data["env_args"] = {**data.get("env_args", {}), **parse_env_args(args.env_arg)}
    if args.no_pretrain:
        data["pretrain"] = False
    return TrainConfig.from_dict(data)


def cmd_train(args: argparse.Namespace) -> None:
    from agents.train import TrainConfig, train

    if args.resume:
        run_dir = Path(args.resume)
        config_file = run_dir / "config.yaml"
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file} does not exist; --resume needs the directory of an earlier run")
        config = TrainConfig.from_dict(yaml.safe_load(config_file.read_text(encoding="utf-8")))
        results = train(config, run_dir, resume=True, progress=not args.quiet)
    else:
        config = load_config(args)
        results = train(config, args.out, progress=not args.quiet)
        run_dir = Path(args.out)
    if results and "random" in results:
        print(f"\n{config.env}, test split, {config.eval_episodes} episodes per agent (sampling from each policy):")
    elif results:
        print(f"\n{config.env}, {results['ppo']['episodes']} episodes of the greedy policy:")
    if results:
        print(format_table(eval_rows(results), EVAL_COLUMNS))
        print(f"\nRun directory: {run_dir} (config.yaml, metrics.csv, tensorboard/, checkpoints/, eval.json)")
        if (run_dir / "model").is_dir():
            print(
                f"The trained model, loadable with from_pretrained (value head and tokenizer beside it): {run_dir / 'model'}"
            )


def load_trained_policy(run_dir: Path, device: str = "cpu"):
    """The PPO policy of a run directory (its latest checkpoint) and the run's config."""
    from agents.checkpoint import latest_checkpoint, load_checkpoint
    from agents.train import Run, TrainConfig

    config_file = Path(run_dir) / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} does not exist; pass the directory of a training run")
    config = TrainConfig.from_dict(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    config.num_envs, config.device = 1, device
    run = Run(config, Path(run_dir), progress=False)
    load_checkpoint(latest_checkpoint(Path(run_dir) / "checkpoints"), run.policy, None, run.device)
    return run.policy, config


def cmd_evaluate(args: argparse.Namespace) -> None:
    from agents.agent import PolicyAgent

    env_kwargs = parse_env_args(args.env_arg)
    agents: dict[str, Any] = {}
    if args.run_dir:
        policy, config = load_trained_policy(Path(args.run_dir))
        env_id = args.env or config.env
        env_kwargs = {**config.env_args, **env_kwargs} if env_id == config.env else env_kwargs
        window = gym.make(env_id, **env_kwargs).observation_space.shape[0]
        if (
            window > policy.config.context_len
            or gym.make(env_id, **env_kwargs).action_space.n != policy.config.vocab_size
        ):
            raise ValueError(
                f"the policy reads {policy.config.context_len} tokens of a {policy.config.vocab_size}-token vocabulary, "
                f"but {env_id} with {env_kwargs} has {window}-token observations; evaluate on settings whose "
                f"dialogues fit, or train on them"
            )
        agents["ppo"] = PolicyAgent(policy, greedy=args.greedy, seed=args.seed)
    else:
        env_id = args.env or "DialogQA-v0"
    for name in args.agents or ([] if args.run_dir else ["random", "oracle"]):
        agents[name] = {"random": dialog_gym.RandomAgent(args.seed), "oracle": dialog_gym.OracleAgent()}[name]
    rows = []
    for name, agent in agents.items():
        result = dialog_gym.evaluate(
            agent, env_id, episodes=args.episodes, seed=args.seed, split=args.split, **env_kwargs
        )
        rows.append({"agent": name, **result})
    print(f"{env_id}, {args.split} split, {args.episodes} episodes, seed {args.seed}")
    print(format_table(rows, EVAL_COLUMNS))


def cmd_chat(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    policy, config = load_trained_policy(Path(args.run_dir))
    env = gym.make(config.env, split="test", **config.env_args).unwrapped
    tokenizer = env.tokenizer
    obs, _ = env.reset(seed=args.seed, options={"index": args.episode} if args.episode is not None else None)
    opening = env.kernel.history(0)
    sep = tokenizer.sep_id
    context = opening[: list(opening).index(sep) + 1] if sep is not None and sep in opening else opening[:0]
    print("Context:", tokenizer.decode(context, skip_special=True))
    print("Ask a question about it (an empty line or end of input quits).")
    dialogue = list(context)
    for line in sys.stdin:
        question = line.strip()
        if not question:
            break
        if tokenizer.unk_id is not None and tokenizer.unk_id in tokenizer.encode(question):
            print(
                f"(part of the question is not in the vocabulary and reads as <unk>: {tokenizer.decode(tokenizer.encode(question))})"
            )
        if hasattr(tokenizer, "marker"):  # a Hugging Face vocabulary: its own marker tokens or their text
            dialogue += tokenizer.marker("<user>") + tokenizer.encode(" " + question) + tokenizer.marker("<agent>")
        else:
            markers = (tokenizer.user_id, *tokenizer.encode(question), tokenizer.agent_id)
            dialogue += [token for token in markers if token is not None]  # a vocabulary may lack the markers
        answer = []
        with torch.no_grad():
            for _ in range(env.kernel.max_answer_tokens):
                window = dialogue[-policy.config.context_len :]
                logits, _ = policy(torch.as_tensor(np.array([window])))
                token = int(logits[0, -1].argmax())
                dialogue.append(token)
                if token == tokenizer.eos_id:
                    break
                answer.append(token)
        print("agent:", tokenizer.decode(answer, skip_special=True))
        sys.stdout.flush()


def cmd_plot(args: argparse.Namespace) -> None:
    from agents.plot import plot_run

    path = plot_run(Path(args.run_dir), Path(args.output) if args.output else None)
    print(f"wrote {path}")


def cmd_tokenizer(args: argparse.Namespace) -> None:
    from dialog_gym.bpe import train_bpe

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty; pick a new --out directory")
    tokenizer = train_bpe(
        args.env,
        out,
        vocab_size=args.vocab_size,
        episodes=args.episodes,
        seed=args.seed,
        **parse_env_args(args.env_arg),
    )
    env = gym.make(args.env, tokenizer=str(out), **parse_env_args(args.env_arg))
    native = gym.make(args.env, **parse_env_args(args.env_arg))
    print(
        f"trained a byte-level BPE of {len(tokenizer)} tokens on {args.episodes} {args.env} training episodes; saved to {out}"
    )
    print(
        f"{args.env} with it: {env.action_space.n} actions, {env.observation_space.shape[0]}-token observations "
        f"(built-in vocabulary: {native.action_space.n} and {native.observation_space.shape[0]})"
    )
    print(f"use it with --env-arg tokenizer={out}, or gym.make({args.env!r}, tokenizer={str(out)!r})")


# -- parser -------------------------------------------------------------------------------------


def cmd_reward_model(args: argparse.Namespace) -> None:
    from agents.reward_model import RewardModelConfig, preference_accuracy, save_reward_model, train_reward_model
    from dialog_gym.demonstrations import read_preferences, task_preferences

    out = Path(args.out)
    if out.exists():
        raise ValueError(f"{out} already exists; pick a new --out directory so no saved model is overwritten")
    kernel = gym.make(args.env, **parse_env_args(args.env_arg)).unwrapped.kernel
    if args.preferences:
        pairs = read_preferences(args.preferences, kernel.tokenizer)
        pairs, held_out = pairs.split(0.1) if len(pairs) >= 10 else pairs.split(0.0)
    else:
        pairs = task_preferences(kernel, args.pairs, seed=args.seed)
        held_out = task_preferences(kernel, max(args.pairs // 10, 1), seed=args.seed + 1, split="test")
    print(f"{len(pairs)} training pairs, {len(held_out)} held-out pairs")
    model = train_reward_model(
        pairs, kernel.max_len, RewardModelConfig(epochs=args.epochs, seed=args.seed), progress=True
    )
    save_reward_model(model, out)
    if len(held_out):
        print(f"held-out preference accuracy: {preference_accuracy(model, held_out):.3f}")
    else:
        print("held-out preference accuracy: not measured (fewer than 10 pairs)")
    print(f"saved to {out}; use it as an env's reward with --env-arg reward=model:{out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialog-gym",
        description="Token-level dialogue and QA environments, and a PPO agent that learns them.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        help="pretrain a Transformer policy on demonstrations, then PPO; ends with a test-split table",
        description="Pretrain by maximum likelihood on the env's (imperfect) demonstrations, then optimise with "
        "PPO against the env's reward with a KL penalty to the pretrained policy, then score random, "
        "pretrained-only and PPO policies on the test split. With no options this is the main job on "
        "DialogQA-v0.",
    )
    train.add_argument("--env", help="registered env id (default: DialogQA-v0)")
    train.add_argument("--out", default="runs/dialogqa", help="run directory to create (default: runs/dialogqa)")
    train.add_argument("--total-steps", type=int, help="env steps (agent tokens) of PPO (default: 300000)")
    train.add_argument("--seed", type=int, help="seed of the run (default: 0)")
    train.add_argument("--num-envs", type=int, help="episodes per PPO rollout (default: 512)")
    train.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], help="where to train (default: auto, CUDA when present)"
    )
    train.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="env constructor argument, repeatable (e.g. --env-arg n_people=2)",
    )
    train.add_argument("--config", help="YAML file with any TrainConfig keys (sections: model, ppo, pretraining)")
    train.add_argument("--no-pretrain", action="store_true", help="PPO from a random initialisation")
    train.add_argument(
        "--policy",
        metavar="transformer|hf:PATH",
        help="our Transformer (default), or hf:PATH: a transformers causal LM from a local model "
        "directory or built fresh from a config.json (e.g. hf:examples/tiny-gpt2)",
    )
    train.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="score a trained run and/or built-in agents with dialog_gym.evaluate"
    )
    evaluate.add_argument("run_dir", nargs="?", help="a training run directory (its latest checkpoint is scored)")
    evaluate.add_argument("--env", help="env id (default: the run's env, or DialogQA-v0)")
    evaluate.add_argument(
        "--agents",
        nargs="+",
        choices=["random", "oracle"],
        help="built-in agents to score as well (default without a run: both)",
    )
    evaluate.add_argument("--episodes", type=int, default=500, help="episodes per agent (default: 500)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")
    evaluate.add_argument("--split", default="test", choices=["train", "test"], help="split to score (default: test)")
    evaluate.add_argument("--greedy", action="store_true", help="take the most likely token instead of sampling")
    evaluate.add_argument(
        "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument, repeatable"
    )
    evaluate.set_defaults(run=cmd_evaluate)

    chat = commands.add_parser("chat", help="ask a trained agent questions about a test-split world")
    chat.add_argument("run_dir", help="a training run directory")
    chat.add_argument("--episode", type=int, help="index of the test episode whose context is shown")
    chat.add_argument("--seed", type=int, default=0, help="seed that picks the episode when --episode is not given")
    chat.set_defaults(run=cmd_chat)

    plot = commands.add_parser("plot", help="write a learning-curve PNG of a training run")
    plot.add_argument("run_dir", help="a training run directory")
    plot.add_argument("--output", help="PNG path (default: RUN_DIR/learning_curve.png)")
    plot.set_defaults(run=cmd_plot)

    reward = commands.add_parser(
        "reward-model",
        help="train a reward model on preference pairs; any env then takes reward=model:DIR",
        description="Train a Bradley-Terry reward model (the policy's Transformer with a scalar head) on pairs "
        "from the env's task (reference answer vs. a corrupted one) or from a JSONL file of "
        '{"context", "question"?, "chosen", "rejected"} lines, and report its held-out accuracy.',
    )
    reward.add_argument(
        "--env", default="DialogQA-v0", help="env id whose task and vocabulary it learns (default: DialogQA-v0)"
    )
    reward.add_argument("--out", required=True, help="directory to create for the model")
    reward.add_argument("--pairs", type=int, default=8000, help="pairs drawn from the task (default: 8000)")
    reward.add_argument("--preferences", help="JSONL file of preference pairs instead of the task's")
    reward.add_argument("--epochs", type=int, default=4, help="passes over the pairs (default: 4)")
    reward.add_argument("--seed", type=int, default=0, help="seed of the pairs and the model (default: 0)")
    reward.add_argument(
        "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument, repeatable"
    )
    reward.set_defaults(run=cmd_reward_model)

    tokenizer = commands.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer on an env's text; any env then takes tokenizer=DIR",
        description="Train a byte-level BPE (the tokenizers library) on the text of an env's training episodes and "
        "save it where transformers' AutoTokenizer.from_pretrained loads it, offline.",
    )
    tokenizer.add_argument("--env", default="DialogQA-v0", help="env id whose text it learns (default: DialogQA-v0)")
    tokenizer.add_argument("--out", required=True, help="directory to write")
    tokenizer.add_argument("--vocab-size", type=int, default=1024, help="most tokens, 263 or more (default: 1024)")
    tokenizer.add_argument("--episodes", type=int, default=20000, help="training episodes read (default: 20000)")
    tokenizer.add_argument("--seed", type=int, default=0, help="seed of the episodes read (default: 0)")
    tokenizer.add_argument(
        "--env-arg", action="append", default=[], metavar="KEY=VALUE", help="env constructor argument, repeatable"
    )
    tokenizer.set_defaults(run=cmd_tokenizer)

    envs = commands.add_parser("envs", help="list the registered environments and show an episode")
    envs.set_defaults(run=cmd_envs)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from agents.checkpoint import CheckpointError
    from agents.ppo import NonFiniteError

    try:
        args.run(args)
    except (ValueError, TypeError, FileNotFoundError, gym.error.Error, CheckpointError, NonFiniteError) as error:
        raise SystemExit(f"dialog-gym {args.command}: {error}") from None


if __name__ == "__main__":
    main()
