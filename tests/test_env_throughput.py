"""The env-throughput benchmark's plain-Python baseline plays exactly the registered toy env."""

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401

sys.path.insert(0, str(Path(__file__).parents[1]))


@pytest.mark.parametrize("kind", ["oracle", "random"])
def test_plain_toy_env_gives_the_transitions_and_infos_of_the_registered_env(kind):
    from benchmarks.env_throughput import plain_toy_env

    plain, ours = plain_toy_env(), gym.make("DialogQA-Toy-v0")
    rng = np.random.default_rng(0)
    for index in range(0, 32, 3):
        a, info = plain.reset(seed=0, options={"index": index})
        b, expected_info = ours.reset(seed=0, options={"index": index})
        assert np.array_equal(a, b)
        assert info.keys() == expected_info.keys()
        done = False
        while not done:
            action = (
                info["expert_action"] if kind == "oracle" else int(rng.integers(16))
            )  # any token, EOS and specials too
            first, second = plain.step(action), ours.step(action)
            assert np.array_equal(first[0], second[0]) and first[1:4] == second[1:4]
            info, expected_info = first[4], second[4]
            assert {k: v for k, v in info.items() if k != "action_mask"} == {
                k: v for k, v in expected_info.items() if k != "action_mask"
            }
            assert np.array_equal(info["action_mask"], expected_info["action_mask"])
            done = first[2] or first[3]
