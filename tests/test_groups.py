"""Grouped episodes: rows in groups of G play the same episode, for group-baseline trainers."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym
from dialog_gym import group_seeds

G, N = 4, 8


def play(envs, seed, options, steps=60):
    """Observations and rewards of ``steps`` steps, the first row of each group choosing the expert's
    action and the others copying it, so that a group's rows can stay identical."""
    obs, info = envs.reset(seed=seed, options=options)
    seen, rewards = [obs], []
    for _ in range(steps):
        leader = info["expert_action"][::G]
        obs, reward, terminated, truncated, info = envs.step(np.repeat(leader, G))
        seen.append(obs)
        rewards.append(reward)
    return np.stack(seen, 1), np.stack(rewards, 1)  # (N, steps + 1, W), (N, steps)


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
def test_rows_of_a_group_play_the_same_episodes(env_id):
    envs = gym.make_vec(env_id, num_envs=N)
    obs, rewards = play(envs, 7, {"group_size": G})
    for start in range(0, N, G):
        assert (obs[start : start + G] == obs[start]).all()
        assert (rewards[start : start + G] == rewards[start]).all()
    assert not (obs[0, 0] == obs[G, 0]).all(), "two groups opened with the same episode"
    assert rewards[0].sum() > 0, "the expert earned nothing: the episodes were not played"
    # Row i plays the episodes of a single env seeded s + i // G.
    single = gym.make(env_id)
    first, _ = single.reset(seed=7 + 1)
    assert (first == obs[G, 0]).all()


@pytest.mark.parametrize("env_id", ["DialogQA-v0", "TwentyQuestions-v0"])
def test_group_seeds_group_gymnasiums_own_vector_env(env_id):
    native = gym.make_vec(env_id, num_envs=N)
    sync = gym.make_vec(env_id, num_envs=N, vectorization_mode="sync")
    native_obs, _ = native.reset(seed=3, options={"group_size": G})
    sync_obs, _ = sync.reset(seed=group_seeds(3, N, G))
    assert (native_obs == sync_obs).all()


def test_a_group_without_a_seed_continues_its_first_rows_stream():
    envs = gym.make_vec("DialogQA-v0", num_envs=N)
    envs.reset(seed=0)
    obs, _ = envs.reset(options={"group_size": G})
    assert (obs[:G] == obs[0]).all() and (obs[G:] == obs[G]).all()
    assert not (obs[0] == obs[G]).all()


@pytest.mark.parametrize(
    "options, message",
    [
        ({"group_size": 3}, "does not divide the 8 rows"),
        ({"group_size": 16}, "does not divide the 8 rows"),
        ({"group_size": 0}, "group_size must be a positive integer"),
        ({"group_size": 2.0}, "group_size must be a positive integer"),
        ({"groups": 2}, "unknown reset option(s) ['groups']"),
    ],
)
def test_bad_group_sizes_fail_in_one_line(options, message):
    envs = gym.make_vec("DialogQA-v0", num_envs=N)
    with pytest.raises(ValueError) as error:
        envs.reset(seed=0, options=options)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_single_env_refuses_a_group_and_says_where_groups_are():
    with pytest.raises(ValueError, match="group_seeds"):
        gym.make("DialogQA-v0").reset(options={"group_size": 2})
