"""The ``dialog-gym`` command line: train, evaluate, chat, plot, reward models, tokenizers and the list of envs.

Every command is a dataclass whose fields are its options (tyro turns the fields, their types,
defaults and docstrings into flags and help), and ``run()`` does the work. ``train``'s options
are the fields of ``TrainConfig`` itself: ``--total-steps``, ``--ppo.clip-coef``,
``--model.n-layer``, ... A ``--config`` YAML file sets any of them; flags given beside it win.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

import gymnasium as gym
import tyro

import dialog_gym
from agents.command_line import EVAL_COLUMNS, EnvArgs, changed_fields, eval_rows, format_table, parse_env_args
from agents.config import TrainConfig, pick_device
from agents.serve import Serve, Ui

# -- commands -----------------------------------------------------------------------------------


@dataclass
class Train:
    """Pretrain by maximum likelihood on the env's (imperfect) demonstrations, then optimise with PPO against
    the env's reward with a KL penalty to the pretrained policy, then score random, pretrained-only and PPO
    policies on the test split. With no options this is the main job on DialogQA-v0."""

    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)
    out: Path = Path("runs/dialogqa")
    """Run directory to create."""
    config_file: Annotated[Path | None, tyro.conf.arg(name="config", metavar="YAML")] = None
    """YAML file of TrainConfig keys (sections model, lora, ppo, pretraining); flags given beside it win."""
    env_arg: EnvArgs = ()
    resume: Path | None = None
    """Continue the run in this directory from its newest checkpoint, with its saved config.yaml."""
    quiet: bool = False
    """No progress bars."""

    def run(self) -> None:
        from agents.train import train

        if self.resume is not None:
            given = changed_fields(self.config, TrainConfig()) + (["--config"] if self.config_file else [])
            given += ["--env-arg"] if self.env_arg else []
            if given:
                raise ValueError(
                    f"--resume {self.resume} continues with the run's own config.yaml; drop {given} (to train "
                    "with other settings, start a new run with --out)"
                )
            saved = self.resume / "config.yaml"
            if not saved.is_file():
                raise ValueError(f"--resume needs the directory of an earlier run; {saved} does not exist")
            config, run_dir = TrainConfig.from_yaml(saved), self.resume
            results = train(config, run_dir, resume=True, progress=not self.quiet)
        else:
            config, run_dir = self.config, self.out
            if self.env_arg:
                config = TrainConfig.from_dict(
                    {**config.to_dict(), "env_args": {**config.env_args, **parse_env_args(self.env_arg)}}
                )
            results = train(config, run_dir, progress=not self.quiet)
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


@dataclass
class Evaluate:
    """Score a trained run and/or built-in agents with dialog_gym.evaluate on one split."""

    run_dir: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="[RUN_DIR]")] = None
    """A training run directory (its newest checkpoint is scored)."""
    policy: str | None = None
    """An untrained policy to score zero-shot instead of a run: a pretrained model ("smollm2", PATH.gguf)
    or "hf:DIR"; it plays with its KV cache, greedy unless --no-greedy, and is scored by exact match too."""
    batch: int = 32
    """Episodes played at once by --policy."""
    env: str | None = None
    """Env id (default: the run's env, or DialogQA-v0)."""
    agents: tuple[Literal["random", "oracle"], ...] | None = None
    """Built-in agents to score as well (default without a run: both)."""
    episodes: int = 500
    """Episodes per agent."""
    seed: int = 0
    """Seed of the evaluation episodes."""
    split: Literal["train", "test"] = "test"
    """Split to score."""
    greedy: bool | None = None
    """Take the most likely token instead of sampling (default: sample a run's policy, greedy for --policy)."""
    env_arg: EnvArgs = ()

    def run(self) -> None:
        from agents.agent import PolicyAgent
        from agents.build import load_trained_policy

        env_kwargs = parse_env_args(self.env_arg)
        agents: dict[str, Any] = {}
        if self.policy is not None:
            if self.run_dir is not None:
                raise ValueError("give a RUN_DIR or --policy, not both")
            self.zero_shot(env_kwargs)
            return
        if self.run_dir is not None:
            policy, config = load_trained_policy(self.run_dir)
            env_id = self.env or config.env
            env_kwargs = {**config.env_args, **env_kwargs} if env_id == config.env else env_kwargs
            env = gym.make(env_id, **env_kwargs)
            window, vocab = env.observation_space.shape[0], env.action_space.n
            if window > policy.config.context_len or vocab != policy.config.vocab_size:
                raise ValueError(
                    f"the policy reads {policy.config.context_len} tokens of a {policy.config.vocab_size}-token "
                    f"vocabulary, but {env_id} with {env_kwargs} has {window}-token observations of a {vocab}-token "
                    "vocabulary; evaluate on settings whose dialogues fit, or train on them"
                )
            agents["ppo"] = PolicyAgent(policy, greedy=bool(self.greedy), seed=self.seed)
        else:
            env_id = self.env or "DialogQA-v0"
        builtin = {"random": dialog_gym.RandomAgent(self.seed), "oracle": dialog_gym.OracleAgent()}
        for name in self.agents or (() if self.run_dir else ("random", "oracle")):
            agents[name] = builtin[name]
        rows = []
        for name, agent in agents.items():
            result = dialog_gym.evaluate(
                agent, env_id, episodes=self.episodes, seed=self.seed, split=self.split, **env_kwargs
            )
            rows.append({"agent": name, **result})
        print(f"{env_id}, {self.split} split, {self.episodes} episodes, seed {self.seed}")
        print(format_table(rows, EVAL_COLUMNS))

    def zero_shot(self, env_kwargs: dict[str, Any]) -> None:
        """Score ``--policy`` as it is, with the built-in agents beside it on the same split."""
        from agents.build import load_untrained_policy
        from agents.evaluate import evaluate_policy, exact_accuracy

        env_id = self.env or "DialogQA-v0"
        device = pick_device("auto")
        policy, config = load_untrained_policy(self.policy, env_id, env_kwargs, device)
        greedy = True if self.greedy is None else self.greedy
        rows = [
            {
                "agent": self.policy + (" (greedy)" if greedy else ""),
                **evaluate_policy(
                    policy, env_id, self.episodes, self.seed, self.split, greedy, self.batch, device, **config.env_args
                ),
            }
        ]
        if rows[0]["exact_accuracy"] is None:
            rows[0]["exact_accuracy"] = "n/a"
        builtin = {"random": dialog_gym.RandomAgent(self.seed), "oracle": dialog_gym.OracleAgent()}
        for name in self.agents or ():
            agent, kwargs = builtin[name], config.env_args
            result = dialog_gym.evaluate(
                agent, env_id, episodes=self.episodes, seed=self.seed, split=self.split, **kwargs
            )
            exact = exact_accuracy(agent, env_id, self.episodes, self.seed, self.split, kwargs)
            rows.append({"agent": name, **result, "exact_accuracy": "n/a" if exact is None else exact})
        print(
            f"{env_id}, {self.split} split, {self.episodes} episodes, seed {self.seed}, env arguments {config.env_args}"
        )
        print(format_table(rows, [*EVAL_COLUMNS, "exact_accuracy"]))


@dataclass
class Chat:
    """Ask a trained agent (or a pretrained model, untrained) questions about a test-split world, as a person would."""

    run_dir: Annotated[Path | None, tyro.conf.Positional, tyro.conf.arg(metavar="[RUN_DIR]")] = None
    """A training run directory."""
    policy: str | None = None
    """Chat with an untrained policy instead of a run: a pretrained model ("smollm2", PATH.gguf) or "hf:DIR"."""
    env: str = "DialogQA-v0"
    """Env id for --policy (a run chats on its own env)."""
    env_arg: EnvArgs = ()
    episode: int | None = None
    """Index of the test episode whose context is shown (default: one drawn with --seed)."""
    seed: int = 0
    """Seed that picks the episode when --episode is not given."""

    def run(self) -> None:
        from agents.build import load_trained_policy, load_untrained_policy
        from agents.chat import chat, terminal_lines

        if (self.run_dir is None) == (self.policy is None):
            raise ValueError("give a RUN_DIR (a trained run) or --policy SPEC (an untrained model), one of them")
        if self.policy is not None:
            policy, config = load_untrained_policy(self.policy, self.env, parse_env_args(self.env_arg))
        else:
            policy, config = load_trained_policy(self.run_dir)
        env = gym.make(config.env, split="test", **config.env_args)
        lines = terminal_lines() if sys.stdin.isatty() else sys.stdin
        chat(policy, env, lines, print, episode=self.episode, seed=self.seed)


@dataclass
class Plot:
    """Write a learning-curve PNG of a training run."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """A training run directory."""
    output: Path | None = None
    """PNG path (default: RUN_DIR/learning_curve.png)."""

    def run(self) -> None:
        from agents.plot import plot_run

        print(f"wrote {plot_run(self.run_dir, self.output)}")


@dataclass
class RewardModel:
    """Train a Bradley-Terry reward model (the policy's Transformer with a scalar head) on pairs from the env's
    task (reference answer vs. a corrupted one) or from a JSONL file of {"context", "question"?, "chosen",
    "rejected"} lines, and report its held-out accuracy. Any env then takes reward=model:DIR."""

    out: Path
    """Directory to create for the model."""
    env: str = "DialogQA-v0"
    """Env id whose task and vocabulary it learns."""
    pairs: int = 8000
    """Pairs drawn from the task."""
    preferences: Path | None = None
    """JSONL file of preference pairs instead of the task's."""
    epochs: int = 4
    """Passes over the pairs."""
    seed: int = 0
    """Seed of the pairs and the model."""
    env_arg: EnvArgs = ()

    def run(self) -> None:
        from agents.reward_model import RewardModelConfig, preference_accuracy, save_reward_model, train_reward_model
        from dialog_gym.demonstrations import read_preferences

        if self.out.exists():
            raise ValueError(f"{self.out} already exists; pick a new --out directory so no saved model is overwritten")
        env = gym.make(self.env, **parse_env_args(self.env_arg)).unwrapped
        if self.preferences is not None:
            pairs = read_preferences(self.preferences, env.tokenizer)
            pairs, held_out = pairs.split(0.1) if len(pairs) >= 10 else pairs.split(0.0)
        else:
            pairs = env.preferences(self.pairs, seed=self.seed)
            held_out = env.preferences(max(self.pairs // 10, 1), seed=self.seed + 1, split="test")
        print(f"{len(pairs)} training pairs, {len(held_out)} held-out pairs")
        config = RewardModelConfig(epochs=self.epochs, seed=self.seed)
        model = train_reward_model(pairs, env.max_len, config, progress=True)
        save_reward_model(model, self.out)
        if len(held_out):
            print(f"held-out preference accuracy: {preference_accuracy(model, held_out):.3f}")
        else:
            print("held-out preference accuracy: not measured (fewer than 10 pairs)")
        print(f"saved to {self.out}; use it as an env's reward with --env-arg reward=model:{self.out}")


@dataclass
class Tokenizer:
    """Train a byte-level BPE (the tokenizers library) on the text of an env's training episodes and save it
    where transformers' AutoTokenizer.from_pretrained loads it, offline. Any env then takes tokenizer=DIR."""

    out: Path
    """Directory to write."""
    env: str = "DialogQA-v0"
    """Env id whose text it learns."""
    vocab_size: int = 1024
    """Most tokens, 263 or more."""
    episodes: int = 20000
    """Training episodes read."""
    seed: int = 0
    """Seed of the episodes read."""
    env_arg: EnvArgs = ()

    def run(self) -> None:
        from dialog_gym.bpe import train_bpe

        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise ValueError(f"{self.out} already exists and is not an empty directory; pick a new --out directory")
        env_args = parse_env_args(self.env_arg)
        tokenizer = train_bpe(
            self.env, self.out, vocab_size=self.vocab_size, episodes=self.episodes, seed=self.seed, **env_args
        )
        env = gym.make(self.env, tokenizer=str(self.out), **env_args)
        native = gym.make(self.env, **env_args)
        print(
            f"trained a byte-level BPE of {len(tokenizer)} tokens on {self.episodes} {self.env} training episodes; "
            f"saved to {self.out}"
        )
        print(
            f"{self.env} with it: {env.action_space.n} actions, {env.observation_space.shape[0]}-token observations "
            f"(built-in vocabulary: {native.action_space.n} and {native.observation_space.shape[0]})"
        )
        print(f"use it with --env-arg tokenizer={self.out}, or gym.make({self.env!r}, tokenizer={str(self.out)!r})")


@dataclass
class Envs:
    """List the registered environments and show an episode."""

    def run(self) -> None:
        rows = []
        for env_id in dialog_gym.ENV_IDS:
            env = gym.make(env_id)
            rows.append(
                {
                    "id": env_id,
                    "vocab": env.action_space.n,
                    "obs length": env.observation_space.shape[0],
                    "turns": env.unwrapped.task.limits.max_turns,
                    "reward": env.unwrapped.reward_name,
                    "summary": dialog_gym.ENV_SUMMARIES[env_id],
                }
            )
        print(format_table(rows, ["id", "vocab", "obs length", "turns", "reward", "summary"]))
        example = gym.make(dialog_gym.ENV_IDS[0], render_mode="ansi")
        example.reset(seed=0)
        print(f"\nAn episode of {dialog_gym.ENV_IDS[0]} (seed 0) as the agent first sees it:\n{example.render()}")


COMMANDS: dict[str, type] = {
    "train": Train,
    "evaluate": Evaluate,
    "chat": Chat,
    "plot": Plot,
    "reward-model": RewardModel,
    "tokenizer": Tokenizer,
    "envs": Envs,
    "serve": Serve,
    "ui": Ui,
}


def _config_file(argv: Sequence[str]) -> Path | None:
    """The ``--config`` file of a ``train`` command line, read before the flags so that they override it."""
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--config="):
            return Path(arg.split("=", 1)[1])
    return None


def parse(argv: Sequence[str]) -> Any:
    """The command object a command line names (``--help`` prints help and exits)."""
    argv = list(argv)
    defaults: dict[str, Any] = {}
    if argv and argv[0] == "train" and "-h" not in argv and "--help" not in argv:
        path = _config_file(argv[1:])
        if path is not None:
            defaults["train"] = Train(config=TrainConfig.from_yaml(path), config_file=path)
    options = [
        Annotated[kind, tyro.conf.subcommand(name, default=defaults[name])]
        if name in defaults
        else Annotated[kind, tyro.conf.subcommand(name)]
        for name, kind in COMMANDS.items()
    ]
    return tyro.cli(
        Union[tuple(options)],  # type: ignore[valid-type]  (a Union built from the command table)
        args=argv,
        prog="dialog-gym",
        description="Token-level dialogue and QA environments, and a PPO agent that learns them.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    from agents.checkpoint import CheckpointError
    from agents.ppo import NonFiniteError

    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv else ""
    errors = (ValueError, TypeError, FileNotFoundError, ImportError, gym.error.Error, CheckpointError, NonFiniteError)
    try:
        command = parse(argv)
        command.run()
    except errors as error:
        raise SystemExit(f"dialog-gym {name}: {error}") from None


if __name__ == "__main__":
    main()
