"""A step whose reward function raises leaves the env as it was: the step never half-happens."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401

STATE = ("obs", "answers", "turn", "pos", "episode_return", "episode_length", "answer_len", "answers_given")
STATE += ("answers_correct", "answer_tokens", "success", "done")
STREAMS = ("counter", "slot")  # which episode each row plays


class FailsOnce:
    """A text reward (1 for an exact answer) that raises on its ``fail_at``-th call, once."""

    def __init__(self, fail_at: int | None) -> None:
        self.calls, self.fail_at = 0, fail_at

    def __call__(self, response: str, reference: str, keywords) -> float:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the reward failed")
        return float(response == reference)


def snapshot(env) -> dict[str, np.ndarray]:
    kernel = env.unwrapped.kernel
    state = {name: getattr(kernel, name).copy() for name in STATE}
    return state | {name: getattr(kernel.streams, name).copy() for name in STREAMS}


def assert_same_state(before: dict, after: dict) -> None:
    for name in STATE + STREAMS:
        assert np.array_equal(before[name], after[name]), name


def transitions_equal(a, b) -> None:
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                transitions_equal([x[key]], [y[key]])
        else:
            assert np.array_equal(x, y)


@pytest.mark.parametrize("env_id", ["DialogQA-Toy-v0", "DialogQA-v0"])
def test_single_env_step_whose_reward_raises_changes_nothing(env_id):
    failing = gym.make(env_id, reward=FailsOnce(3))
    clean = gym.make(env_id, reward=FailsOnce(None))
    rng = np.random.default_rng(0)
    obs, info = failing.reset(seed=1)
    clean.reset(seed=1)
    raised = 0
    for _ in range(60):
        action = info["expert_action"] if rng.random() < 0.7 else int(rng.integers(3, failing.action_space.n))
        before = snapshot(failing)
        try:
            result = failing.step(action)
        except RuntimeError:
            raised += 1
            assert_same_state(before, snapshot(failing))
            result = failing.step(action)  # the same step again, now with a working reward
        transitions_equal(result, clean.step(action))
        obs, _, terminated, truncated, info = result
        if terminated or truncated:
            obs, info = failing.reset()
            clean.reset()
    assert raised == 1


def test_vector_env_step_whose_reward_raises_changes_nothing():
    failing = gym.make_vec("DialogQA-Toy-v0", num_envs=4, reward=FailsOnce(5))
    clean = gym.make_vec("DialogQA-Toy-v0", num_envs=4, reward=FailsOnce(None))
    rng = np.random.default_rng(0)
    obs, info = failing.reset(seed=2)
    clean.reset(seed=2)
    raised = 0
    for _ in range(30):
        actions = np.where(rng.random(4) < 0.6, info["expert_action"], rng.integers(3, 16, size=4))
        before = snapshot(failing)
        try:
            result = failing.step(actions)
        except RuntimeError:
            raised += 1
            assert_same_state(before, snapshot(failing))
            result = failing.step(actions)
        transitions_equal(result, clean.step(actions))
        obs, _, _, _, info = result
    assert raised == 1
