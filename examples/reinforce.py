"""A minimal REINFORCE loop over ``gym.make_vec``, the way a CleanRL-style script uses dialog_gym.

One-hot observations into a small MLP, sampled tokens, the return of each finished episode as the
signal for all of its tokens (minus a running baseline). Next-step autoreset: the step after an
episode ends only resets its row, so it is not a decision and is left out.

    python examples/reinforce.py --steps 200000
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

import dialog_gym


def main(steps: int = 200_000, seed: int = 0, num_envs: int = 64, env_kwargs: dict | None = None) -> dict[str, float]:
    env_kwargs = env_kwargs or {"vocab_size": 8, "answer_len": 1, "n_questions": 0}
    torch.manual_seed(seed)
    envs = gym.make_vec("DialogQA-Toy-v0", num_envs=num_envs, **env_kwargs)
    vocab, window = envs.single_action_space.n, envs.single_observation_space.shape[0]
    policy = nn.Sequential(nn.Flatten(), nn.Linear(vocab * window, 128), nn.Tanh(), nn.Linear(128, vocab))
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)

    def logits_of(obs: np.ndarray) -> torch.Tensor:
        return policy(nn.functional.one_hot(torch.as_tensor(obs), vocab).float())

    obs, info = envs.reset(seed=seed)
    episode_logprobs = [[] for _ in range(num_envs)]
    finished_logprobs, finished_returns, baseline = [], [], 0.0
    resetting = np.zeros(num_envs, bool)
    for _ in range(steps // num_envs):
        distribution = torch.distributions.Categorical(logits=logits_of(obs))
        actions = distribution.sample()
        logprobs = distribution.log_prob(actions)
        obs, rewards, terminated, truncated, info = envs.step(actions.numpy())
        for i in np.flatnonzero(~resetting):
            episode_logprobs[i].append(logprobs[i])
        for i in np.flatnonzero((terminated | truncated) & ~resetting):
            finished_logprobs.append(torch.stack(episode_logprobs[i]).sum())
            finished_returns.append(float(info["dialogue"]["return"][i]))
            episode_logprobs[i] = []
        resetting = terminated | truncated
        if len(finished_returns) >= num_envs:
            returns = torch.tensor(finished_returns)
            loss = -((returns - baseline) * torch.stack(finished_logprobs)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            baseline = 0.9 * baseline + 0.1 * float(returns.mean())
            finished_logprobs, finished_returns = [], []
            episode_logprobs = [[lp.detach() for lp in lps] for lps in episode_logprobs]

    def greedy(observations: np.ndarray, infos: dict) -> np.ndarray:
        with torch.no_grad():
            return logits_of(observations).argmax(-1).numpy()

    return dialog_gym.evaluate(greedy, "DialogQA-Toy-v0", episodes=500, seed=seed, **env_kwargs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.steps, args.seed))
