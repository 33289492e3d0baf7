"""The RLHF shaping wrappers: each part of the reward is what it says, and SB3 trains through them."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import dialog_gym  # noqa: F401
from dialog_gym.wrappers import KLPenalty, LengthPenalty, MissingEOSPenalty


def play(env, actions):
    env.reset(seed=0)
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        out.append((reward, info))
        if terminated or truncated:
            break
    return out


def test_length_penalty_charges_every_token_but_eos():
    env = LengthPenalty(gym.make("DialogQA-Toy-v0", vocab_size=8, answer_len=1, max_answer_tokens=4), cost=0.1)
    eos = env.unwrapped.tokenizer.eos_id
    steps = play(env, [5, 6, eos])
    assert [info["reward_components"]["length"] for _, info in steps] == [-0.1, -0.1, 0.0]
    for reward, info in steps:
        assert reward == pytest.approx(info["reward_components"]["env"] + info["reward_components"]["length"])


def test_missing_eos_penalty_only_when_an_answer_hits_the_limit():
    env = MissingEOSPenalty(gym.make("DialogQA-Toy-v0", vocab_size=8, answer_len=1, max_answer_tokens=3), penalty=2.0)
    steps = play(env, [5, 5, 5])
    assert [info["reward_components"]["missing_eos"] for _, info in steps] == [0.0, 0.0, -2.0]
    assert steps[-1][1]["truncated_by"] == "max_answer_tokens"
    eos = env.unwrapped.tokenizer.eos_id
    assert all(info["reward_components"]["missing_eos"] == 0.0 for _, info in play(env, [5, eos]))


def test_kl_penalty_matches_an_independent_computation():
    base = gym.make("DialogQA-Toy-v0", vocab_size=8, answer_len=2)
    vocab = base.unwrapped.tokenizer.vocab_size
    rng = np.random.default_rng(0)
    table_ref, table_pol = rng.normal(size=(vocab, vocab)), rng.normal(size=(vocab, vocab))

    def from_table(table):  # log-softmax of a row chosen by the newest token
        return lambda obs: torch.log_softmax(torch.tensor(table[obs[:, -1]]), -1).numpy()

    env = KLPenalty(base, from_table(table_ref), beta=0.5, policy=from_table(table_pol))
    obs, _ = env.reset(seed=0)
    for action in (3, 4):
        expected = -0.5 * (from_table(table_pol)(obs[None])[0, action] - from_table(table_ref)(obs[None])[0, action])
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["reward_components"]["kl"] == pytest.approx(expected)
        assert reward == pytest.approx(info["reward_components"]["env"] + expected)
    only_reference = KLPenalty(gym.make("DialogQA-Toy-v0", vocab_size=8), from_table(table_ref), beta=0.5)
    obs, _ = only_reference.reset(seed=0)
    _, _, _, _, info = only_reference.step(3)
    assert info["reward_components"]["kl"] == pytest.approx(0.5 * from_table(table_ref)(obs[None])[0, 3])


def test_kl_penalty_with_our_policy_as_reference_and_policy_is_zero():
    from agents.agent import log_prob_function
    from agents.policy import PolicyConfig, TransformerPolicy

    env = gym.make("DialogQA-Toy-v0")
    policy = TransformerPolicy(PolicyConfig(vocab_size=env.unwrapped.tokenizer.vocab_size, context_len=16))
    same = log_prob_function(policy)
    wrapped = KLPenalty(env, same, beta=1.0, policy=same)
    for reward, info in play(wrapped, [4, 5, 6, 1]):
        assert info["reward_components"]["kl"] == pytest.approx(0.0, abs=1e-6)


def test_stacked_wrappers_keep_every_part_and_sb3_trains_through_them():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    def shaped(env):
        return LengthPenalty(MissingEOSPenalty(env), cost=0.01)

    steps = play(shaped(gym.make("DialogQA-Toy-v0", vocab_size=8, max_answer_tokens=4)), [5, 5, 5, 5])
    assert set(steps[-1][1]["reward_components"]) == {"env", "missing_eos", "length"}
    envs = make_vec_env("DialogQA-Toy-v0", n_envs=2, env_kwargs={"vocab_size": 8}, wrapper_class=shaped)
    PPO("MlpPolicy", envs, n_steps=64, batch_size=64, n_epochs=1, device="cpu").learn(128)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda env: LengthPenalty(env, cost=-1), "cost must be"),
        (lambda env: MissingEOSPenalty(env, penalty=float("nan")), "penalty must be"),
        (lambda env: KLPenalty(env, lambda obs: obs, beta=-0.1), "beta must be"),
        (lambda env: KLPenalty(env, "ref"), "must be functions"),
    ],
)
def test_bad_settings_are_named(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make(gym.make("DialogQA-Toy-v0"))


def test_stepping_before_reset_and_infinite_log_probs_are_named():
    env = LengthPenalty(gym.make("DialogQA-Toy-v0"))
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        env.step(4)
    kl = KLPenalty(gym.make("DialogQA-Toy-v0"), lambda obs: np.full((1, 16), -np.inf), beta=0.1)
    kl.reset(seed=0)
    with pytest.raises(ValueError, match="gave -inf for token 4"):
        kl.step(4)


def test_the_answer_limit_becomes_a_termination_for_bootstrapping_agents():
    from dialog_gym.wrappers import TerminateAtAnswerLimit

    env = TerminateAtAnswerLimit(gym.make("DialogQA-Toy-v0", vocab_size=8, answer_len=1))
    env.reset(seed=0)
    env.step(5)
    obs, reward, terminated, truncated, info = env.step(5)  # two tokens without EOS: the limit
    assert terminated and not truncated and info["truncated_by"] == "max_answer_tokens"
    env.reset(seed=0)
    env.step(5)
    obs, reward, terminated, truncated, info = env.step(env.unwrapped.tokenizer.eos_id)
    assert terminated and not truncated
