"""The ``dialog-gym`` command line."""

from __future__ import annotations

import argparse
from typing import Any, Sequence

import gymnasium as gym
import yaml

import dialog_gym


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["n_people=3", "reward=f1"]`` -> ``{"n_people": 3, "reward": "f1"}`` (values read as YAML scalars)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"dialog-gym: --env-arg expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (dicts) with the given ``columns``; floats to 3 decimals."""
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def cmd_envs(args: argparse.Namespace) -> None:
    rows = []
    for env_id in dialog_gym.ENV_IDS:
        env = gym.make(env_id)
        task = env.unwrapped.task
        rows.append({
            "id": env_id,
            "task": type(task).__name__,
            "vocab": env.action_space.n,
            "obs length": env.observation_space.shape[0],
            "turns": task.limits.max_turns,
            "reward": env.unwrapped.kernel.reward_name,
            "summary": dialog_gym.ENV_SUMMARIES[env_id],
        })  # fmt: skip
    print(format_table(rows, ["id", "task", "vocab", "obs length", "turns", "reward", "summary"]))
    example = gym.make(dialog_gym.ENV_IDS[0], render_mode="ansi")
    example.reset(seed=0)
    print(f"\nAn episode of {dialog_gym.ENV_IDS[0]} (seed 0) as the agent first sees it:\n{example.render()}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    env_kwargs = parse_env_args(args.env_arg)
    agents = {"random": dialog_gym.RandomAgent(args.seed), "oracle": dialog_gym.OracleAgent()}
    rows = []
    for name in args.agents:
        result = dialog_gym.evaluate(agents[name], args.env, episodes=args.episodes, seed=args.seed,
                                     split=args.split, **env_kwargs)  # fmt: skip
        rows.append({"agent": name, **result})
    print(f"{args.env}, {args.split} split, {args.episodes} episodes, seed {args.seed}")
    print(format_table(rows, ["agent", "mean_return", "answer_accuracy", "success_rate", "mean_answer_tokens"]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dialog-gym", description="Token-level dialogue and QA environments, and a PPO agent that learns them."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    envs = commands.add_parser("envs", help="list the registered environments and show an episode")
    envs.set_defaults(run=cmd_envs)

    evaluate = commands.add_parser("evaluate", help="score agents with dialog_gym.evaluate and print a table")
    evaluate.add_argument("--agents", nargs="+", choices=["random", "oracle"], default=["random", "oracle"],
                          help="built-in agents to score (default: both)")  # fmt: skip
    evaluate.add_argument("--env", default="DialogQA-v0", help="registered env id (default: DialogQA-v0)")
    evaluate.add_argument("--episodes", type=int, default=500, help="episodes per agent (default: 500)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation episodes (default: 0)")
    evaluate.add_argument("--split", default="test", choices=["train", "test"], help="split to score on (default: test)")
    evaluate.add_argument("--env-arg", action="append", default=[], metavar="KEY=VALUE",
                          help="env constructor argument, repeatable (e.g. --env-arg n_people=3)")  # fmt: skip
    evaluate.set_defaults(run=cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, TypeError, FileNotFoundError, gym.error.Error) as error:
        raise SystemExit(f"dialog-gym {args.command}: {error}") from None


if __name__ == "__main__":
    main()
