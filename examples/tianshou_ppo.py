"""Tianshou's PPO on DialogQA-Toy-v0, through plain ``gymnasium.make``, scored by dialog_gym.evaluate.

Tianshou stacks every step's info into its replay buffer, so it needs the env's info to have the
same keys on every step, which dialog_gym's infos do. The policy reads the observation's tokens
one-hot; the greedy policy is then scored like any other agent.

    python examples/tianshou_ppo.py --steps 20000
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
from tianshou.algorithm import PPO
from tianshou.algorithm.modelfree.reinforce import ProbabilisticActorPolicy
from tianshou.algorithm.optim import AdamOptimizerFactory
from tianshou.data import Collector, VectorReplayBuffer
from tianshou.env import DummyVectorEnv
from tianshou.trainer import OnPolicyTrainerParams
from tianshou.utils.net.common import ModuleWithVectorOutput
from tianshou.utils.net.discrete import DiscreteActor, DiscreteCritic

import dialog_gym


class OneHotTokens(ModuleWithVectorOutput):
    """Token ids (B, L) -> one MLP layer over their one-hot encoding (B, hidden)."""

    def __init__(self, vocab_size: int, window: int, hidden: int) -> None:
        super().__init__(output_dim=hidden)
        self.vocab_size = vocab_size
        self.layer = nn.Sequential(nn.Linear(vocab_size * window, hidden), nn.Tanh())

    def forward(self, obs, state=None, info=None):
        tokens = torch.as_tensor(obs, dtype=torch.long)
        return self.layer(nn.functional.one_hot(tokens, self.vocab_size).flatten(1).float()), state


def main(
    steps: int = 20_000, seed: int = 0, num_envs: int = 8, env_kwargs: dict | None = None, episodes: int = 500
) -> dict[str, float]:
    env_kwargs = env_kwargs or {"vocab_size": 8, "answer_len": 1}
    torch.manual_seed(seed)
    env = gym.make("DialogQA-Toy-v0", **env_kwargs)
    vocab, window = int(env.action_space.n), env.observation_space.shape[0]
    train_envs = DummyVectorEnv([lambda: gym.make("DialogQA-Toy-v0", **env_kwargs) for _ in range(num_envs)])
    train_envs.seed(seed)

    actor = DiscreteActor(preprocess_net=OneHotTokens(vocab, window, 64), action_shape=vocab, softmax_output=False)
    critic = DiscreteCritic(preprocess_net=OneHotTokens(vocab, window, 64))
    policy = ProbabilisticActorPolicy(
        actor=actor,
        dist_fn=lambda logits: torch.distributions.Categorical(logits=logits),
        action_space=env.action_space,
        action_scaling=False,
    )
    algorithm = PPO(policy=policy, critic=critic, optim=AdamOptimizerFactory(lr=3e-3), ent_coef=0.01)
    collector = Collector(algorithm, train_envs, VectorReplayBuffer(2048, num_envs))
    collector.reset()
    algorithm.run_training(
        OnPolicyTrainerParams(
            training_collector=collector,
            max_epochs=1,
            epoch_num_steps=steps,
            collection_step_num_env_steps=512,
            update_step_num_repetitions=4,
            batch_size=128,
            test_in_training=False,
            show_progress=False,
            verbose=False,
        )
    )
    train_envs.close()

    def greedy(observations: np.ndarray, infos: dict) -> np.ndarray:
        with torch.no_grad():
            return actor(observations)[0].argmax(-1).numpy()

    return dialog_gym.evaluate(greedy, "DialogQA-Toy-v0", episodes=episodes, seed=seed, **env_kwargs)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.steps, args.seed))
