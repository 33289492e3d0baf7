"""Demonstrations are the dialogues the env would produce, and their noise is measured."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401


@pytest.mark.parametrize("env_id,kwargs", [("DialogQA-v0", {"min_turns": 2}), ("DialogQA-Toy-v0", {})])
@pytest.mark.parametrize("noise", [0.0, 0.5])
def test_demonstrations_replay_token_for_token_in_the_env(env_id, kwargs, noise):
    """Feeding a demonstration's answer tokens to the env rebuilds the demonstration exactly."""
    env = gym.make(env_id, **kwargs).unwrapped
    demos = env.demonstrations(25, seed=3, noise=noise)
    if noise == 0.0:
        assert demos.accuracy == 1.0
    for i in range(len(demos)):
        ids, mask = demos.ids[i, : demos.lengths[i]], demos.answer_mask[i, : demos.lengths[i]]
        env.reset(options={"index": int(demos.index[i])})
        correct = []
        for token in ids[mask]:
            *_, terminated, truncated, info = env.step(int(token))
            if info["answer_done"]:
                correct.append(info["answer_correct"])
        assert terminated and not truncated
        assert np.array_equal(env.kernel.history(0), ids)
        assert correct == list(demos.correct[i, : demos.n_turns[i]])


def test_noise_makes_demonstrations_imperfect_at_the_asked_rate():
    env = gym.make("DialogQA-v0").unwrapped
    clean = env.demonstrations(2000, seed=0, noise=0.0)
    noisy = env.demonstrations(2000, seed=0, noise=0.4)
    assert clean.accuracy == 1.0
    # Half of the noisy answers are verbose ("the answer is the kitchen"), which the keyword
    # reward accepts; the other half are another episode's answer, wrong unless equal by chance.
    assert 0.75 < noisy.accuracy < 0.87
    exact = gym.make("DialogQA-v0", reward="exact").unwrapped.demonstrations(2000, seed=0, noise=0.4)
    assert 0.58 < exact.accuracy < 0.66
    texts = [noisy.text(i)["answers"] for i in range(200)]
    assert any(a.startswith("the answer is") for answers in texts for a in answers)


def test_demonstrations_are_deterministic_and_from_the_train_split():
    env = gym.make("DialogQA-v0").unwrapped
    a, b = env.demonstrations(50, seed=5), env.demonstrations(50, seed=5)
    assert np.array_equal(a.ids, b.ids)
    assert not np.array_equal(a.ids, env.demonstrations(50, seed=6).ids)
    text = a.text(0)
    assert set(text) == {"context", "questions", "answers"} and " is in the " in text["context"]
    assert len(text["questions"]) == len(text["answers"]) == a.n_turns[0]


def test_vector_env_hands_out_the_same_demonstrations():
    single = gym.make("DialogQA-Toy-v0", demo_noise=0.3).unwrapped.demonstrations(40, seed=2)
    vector = gym.make_vec("DialogQA-Toy-v0", num_envs=4, demo_noise=0.3).unwrapped.demonstrations(40, seed=2)
    assert np.array_equal(single.ids, vector.ids) and single.accuracy == vector.accuracy < 1.0
