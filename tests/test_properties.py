"""Property tests: whatever the settings and actions, observations never leave their space."""

import gymnasium as gym
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import dialog_gym  # noqa: F401


@settings(max_examples=40, deadline=None)
@given(
    vocab_size=st.integers(4, 40),
    question_len=st.integers(1, 3),
    answer_len=st.integers(1, 4),
    extra_len=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.integers(0, 2**16), min_size=1, max_size=60),
)
def test_toy_observations_stay_in_space(vocab_size, question_len, answer_len, extra_len, seed, actions):
    n_questions = min(5, (vocab_size - 3) ** question_len)
    env = gym.make(
        "DialogQA-Toy-v0",
        vocab_size=vocab_size,
        question_len=question_len,
        answer_len=answer_len,
        n_questions=n_questions,
        max_answer_tokens=answer_len + 1 + extra_len,
    )
    check_random_walk(env, seed, actions)


@settings(max_examples=25, deadline=None)
@given(
    n_people=st.integers(1, 5),
    n_places=st.integers(2, 6),
    n_objects=st.integers(1, 4),
    n_events=st.integers(0, 8),
    max_turns=st.integers(1, 4),
    max_len=st.one_of(st.none(), st.integers(14, 40)),
    seed=st.integers(0, 2**31 - 1),
    actions=st.lists(st.integers(0, 2**16), min_size=1, max_size=60),
)
def test_dialog_qa_observations_stay_in_space(
    n_people, n_places, n_objects, n_events, max_turns, max_len, seed, actions
):
    env = gym.make(
        "DialogQA-v0",
        n_people=n_people,
        n_places=n_places,
        n_objects=n_objects,
        n_events=n_events,
        max_turns=max_turns,
        max_len=max_len,
    )
    check_random_walk(env, seed, actions)


def check_random_walk(env, seed, actions):
    obs, info = env.reset(seed=seed)
    assert obs in env.observation_space
    for raw in actions:
        action = raw % env.action_space.n
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space
        assert np.isfinite(reward)
        assert info["action_mask"].shape == (env.action_space.n,)
        assert 0 <= info["expert_action"] < env.action_space.n
        if terminated or truncated:
            assert set(info["dialogue"]) >= {"return", "length", "success"}
            obs, info = env.reset()
            assert obs in env.observation_space


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 9), seed=st.integers(0, 2**31 - 1), steps=st.integers(1, 40))
def test_vector_observations_stay_in_space(n, seed, steps):
    envs = gym.make_vec("DialogQA-v0", num_envs=n, n_events=2)
    obs, info = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        obs, rewards, terminated, truncated, info = envs.step(rng.integers(envs.single_action_space.n, size=n))
        assert obs in envs.observation_space
        assert not (terminated & truncated).any()
