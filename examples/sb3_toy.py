"""Stable-Baselines3's PPO, A2C or DQN on DialogQA-Toy-v0, scored by dialog_gym.evaluate.

python examples/sb3_toy.py --algo PPO --steps 100000
"""

from __future__ import annotations

import argparse

from stable_baselines3 import A2C, DQN, PPO
from stable_baselines3.common.env_util import make_vec_env

import dialog_gym  # noqa: F401  (registers the env ids)
from agents.sb3 import sb3_agent
from dialog_gym.wrappers import TerminateAtAnswerLimit

ALGORITHMS = {"PPO": PPO, "A2C": A2C, "DQN": DQN}


def main(algo: str = "PPO", steps: int = 100_000, seed: int = 0, env_kwargs: dict | None = None) -> dict[str, float]:
    env_kwargs = env_kwargs or {"vocab_size": 16, "answer_len": 1}
    # The answer limit ends an answer for good: SB3 must not bootstrap it as it would a time limit.
    envs = make_vec_env(
        "DialogQA-Toy-v0",
        n_envs=1 if algo == "DQN" else 8,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=TerminateAtAnswerLimit,
    )
    model = ALGORITHMS[algo]("MlpPolicy", envs, seed=seed, device="cpu", verbose=0)  # one-hot observations
    model.learn(total_timesteps=steps)
    return dialog_gym.evaluate(sb3_agent(model), "DialogQA-Toy-v0", episodes=500, seed=seed, **env_kwargs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algo", choices=sorted(ALGORITHMS), default="PPO")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.algo, args.steps, args.seed))
