"""sb3-contrib's MaskablePPO on DialogQA-v0, using the env's action mask (``env.action_masks()``).

The mask rules out the special tokens an answer never contains, so the policy only chooses among
words and EOS.

    python examples/maskable_ppo.py --steps 200000
"""

from __future__ import annotations

import argparse

from sb3_contrib import MaskablePPO
from stable_baselines3.common.env_util import make_vec_env

import dialog_gym  # noqa: F401
from agents.sb3 import sb3_agent
from dialog_gym.wrappers import TerminateAtAnswerLimit


def main(
    steps: int = 200_000, seed: int = 0, env_id: str = "DialogQA-Toy-v0", env_kwargs: dict | None = None
) -> dict[str, float]:
    env_kwargs = env_kwargs or {"vocab_size": 16, "answer_len": 1}
    # MaskablePPO calls envs.env_method("action_masks"); the answer limit must not be bootstrapped.
    envs = make_vec_env(env_id, n_envs=8, seed=seed, env_kwargs=env_kwargs, wrapper_class=TerminateAtAnswerLimit)
    model = MaskablePPO("MlpPolicy", envs, seed=seed, device="cpu", verbose=0)
    model.learn(total_timesteps=steps)
    return dialog_gym.evaluate(sb3_agent(model, masked=True), env_id, episodes=500, seed=seed, **env_kwargs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.steps, args.seed))
