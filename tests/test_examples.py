"""Other agents on dialog_gym: the examples run end to end, and evaluate scores every agent alike."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import dialog_gym
from agents.agent import PolicyAgent
from agents.config import TrainConfig
from agents.sb3 import EvaluationCurve, sb3_agent
from dialog_gym import RandomAgent

EXAMPLES = Path(__file__).parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))
TINY = {"vocab_size": 8, "answer_len": 1}
KEYS = {"episodes", "mean_return", "success_rate", "answer_accuracy", "mean_answer_tokens"}


def assert_learned(result: dict[str, float], env_kwargs: dict, success_margin: float, return_margin: float) -> None:
    """``result`` (an example's greedy score) beats the random agent on the same 500 test episodes by the margins.

    The examples score with ``evaluate(..., episodes=500, seed=0)``; on these tiny tasks random
    succeeds about 1 time in 36 (1 in 6 for the token, 1 in 6 for EOS after it).
    """
    random = dialog_gym.evaluate(RandomAgent(0), "DialogQA-Toy-v0", episodes=500, seed=0, **env_kwargs)
    assert KEYS <= set(result) and result["episodes"] == random["episodes"] == 500
    assert result["success_rate"] >= random["success_rate"] + success_margin, (result, random)
    assert result["mean_return"] >= random["mean_return"] + return_margin, (result, random)


# Budgets and margins over random: each margin is at most two thirds of the smallest one seen with
# seeds 0-4 of the example. PPO's first rollout alone is 8 envs x 2048 steps, whatever the budget asks.
SB3_BUDGETS = [("PPO", 2048, 0.2, 0.3), ("A2C", 4096, 0.1, 0.25), ("DQN", 4096, 0.06, 0.25)]


@pytest.mark.parametrize("algo,steps,success_margin,return_margin", SB3_BUDGETS)
def test_stable_baselines3_examples_learn_and_are_scored(algo, steps, success_margin, return_margin):
    import sb3_toy

    result = sb3_toy.main(algo, steps=steps, env_kwargs=TINY)
    assert_learned(result, TINY, success_margin, return_margin)


def test_maskable_ppo_learns_and_uses_the_action_mask():
    import maskable_ppo
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.env_util import make_vec_env

    assert_learned(maskable_ppo.main(steps=2048, env_kwargs=TINY), TINY, success_margin=0.2, return_margin=0.3)
    envs = make_vec_env("DialogQA-Toy-v0", n_envs=2, seed=0, env_kwargs=TINY)
    model = MaskablePPO("MlpPolicy", envs, n_steps=64, seed=0, device="cpu")
    model.learn(128)
    masks = np.stack(envs.env_method("action_masks"))
    assert not masks[:, 0].any() and masks[:, 1].all()  # <pad> is masked, <eos> is allowed
    obs = np.random.default_rng(0).integers(0, 8, size=(200, 5))
    actions, _ = model.predict(obs, deterministic=False, action_masks=np.repeat(masks[:1], 200, axis=0))
    assert masks[0][actions].all()


def test_reinforce_example_learns():
    import reinforce

    env_kwargs = {**TINY, "n_questions": 0}
    assert_learned(
        reinforce.main(steps=30_000, env_kwargs=env_kwargs), env_kwargs, success_margin=0.3, return_margin=0.3
    )


def play_by_hand(act_one, env_id: str, episodes_per_row: int, rows: int, seed: int, **env_kwargs) -> list[float]:
    """Returns of single envs seeded seed + i, each playing its first episodes, acting one observation at a time."""
    returns = []
    for i in range(rows):
        env = gym.make(env_id, split="test", **env_kwargs)
        obs, info = env.reset(seed=seed + i)
        for _ in range(episodes_per_row):
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, info = env.step(act_one(obs, info))
                total += reward
                done = terminated or truncated
            returns.append(total)
            obs, info = env.reset()
    return returns


def test_evaluate_scores_an_sb3_model_and_ours_like_a_hand_written_loop():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    model = PPO(
        "MlpPolicy",
        make_vec_env("DialogQA-Toy-v0", n_envs=2, seed=0, env_kwargs=TINY),
        n_steps=64,
        seed=0,
        device="cpu",
    )
    model.learn(256)
    env = gym.make("DialogQA-Toy-v0", **TINY).unwrapped
    from agents.policy import PolicyConfig, TransformerPolicy

    torch.manual_seed(0)
    policy = TransformerPolicy(
        PolicyConfig(vocab_size=env.tokenizer.vocab_size, context_len=env.kernel.max_len),
        torch.tensor(np.array(env.kernel.action_mask)),
    )
    agents = {
        "sb3": (sb3_agent(model), lambda obs, info: int(model.predict(obs, deterministic=True)[0])),
        "ours": (
            PolicyAgent(policy, greedy=True),
            lambda obs, info: int(PolicyAgent(policy, greedy=True)(obs[None], {})[0]),
        ),
    }
    for batched, single in agents.values():
        result = dialog_gym.evaluate(batched, "DialogQA-Toy-v0", episodes=12, seed=3, num_envs=4, **TINY)
        by_hand = play_by_hand(single, "DialogQA-Toy-v0", episodes_per_row=3, rows=4, seed=3, **TINY)
        assert result["episodes"] == 12
        assert result["mean_return"] == pytest.approx(np.mean(by_hand))


def test_sb3_evaluation_curve_records_points():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    model = PPO(
        "MlpPolicy",
        make_vec_env("DialogQA-Toy-v0", n_envs=2, seed=0, env_kwargs=TINY),
        n_steps=64,
        seed=0,
        device="cpu",
    )
    curve = EvaluationCurve("DialogQA-Toy-v0", TINY, every=128, episodes=16)
    model.learn(384, callback=curve)
    steps = [p["env_steps"] for p in curve.points]
    assert len(steps) >= 3 and steps == sorted(steps) and all(p["episodes"] == 16 for p in curve.points)
    curve.record()  # a point is what evaluate gives the model at that moment
    final = dialog_gym.evaluate(sb3_agent(model), "DialogQA-Toy-v0", episodes=16, seed=0, **TINY)
    assert {key: curve.points[-1][key] for key in final} == final and curve.training_seconds > 0


def test_tianshou_ppo_learns_the_toy_through_gymnasium_make():
    # Tianshou is not in the dev extra: a full install pins virtualenv, which downgrades filelock.
    pytest.importorskip("tianshou", reason="tianshou is not installed (pip install tianshou==2.0.1)")
    import tianshou_ppo

    result = tianshou_ppo.main(steps=4096, episodes=200, env_kwargs=TINY)
    random = dialog_gym.evaluate(dialog_gym.RandomAgent(0), "DialogQA-Toy-v0", episodes=200, **TINY)
    assert result["episodes"] == 200 and random["success_rate"] < 0.1  # 1 in 6 tokens times 1 in 6 for EOS
    assert result["success_rate"] > max(0.3, 5 * random["success_rate"])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_example_config_is_a_train_config_of_a_registered_env(path):
    """``dialog-gym train --config`` takes each example: known keys, the dataclass types, a registered env."""
    config = TrainConfig.from_yaml(path)
    assert config.env in gym.registry, f"{path.name}: env {config.env!r} is not registered"
