"""``EnvOptions``: one checked, frozen set of env settings that the kernel and both envs read, and the
public env API built on it (sizes, history, demonstrations, preferences, reset indices)."""

import dataclasses
import time
import tracemalloc

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym
from dialog_gym import DialogEnv, DialogVectorEnv, EnvOptions
from dialog_gym.options import MAX_ANSWER_TOKENS, MAX_WINDOW
from dialog_gym.sizing import MEMORY_BUDGET
from dialog_gym.tasks.toy import ToyLookupTask


@pytest.mark.parametrize(
    "settings,error,message",
    [
        ({"shaping": "0.1"}, TypeError, "shaping must be a number, got '0.1'"),
        ({"shaping": True}, TypeError, "shaping must be a number, got True"),
        ({"shaping": -0.5}, ValueError, r"shaping=-0.5 is out of range"),
        ({"shaping": float("inf")}, ValueError, "shaping must be a finite number"),
        ({"success_reward": float("nan")}, ValueError, "success_reward must be a finite number, got nan"),
        ({"success_reward": None}, TypeError, "success_reward must be a number"),
        ({"demo_noise": 1.5}, ValueError, r"demo_noise=1.5 is out of range: expected a number in \[0, 1\]"),
        ({"max_len": "64"}, TypeError, "max_len must be a positive integer or None, got '64'"),
        ({"max_len": 0}, ValueError, "max_len=0 is out of range"),
        (
            {"max_len": 10**8},
            ValueError,
            f"max_len=100000000 is out of range: expected an integer in \\[1, {MAX_WINDOW}\\]",
        ),
        ({"max_answer_tokens": 10**9}, ValueError, f"in \\[1, {MAX_ANSWER_TOKENS}\\]"),
        ({"max_answer_tokens": 4.0}, TypeError, "max_answer_tokens must be a positive integer"),
        ({"max_answer_tokens": False}, TypeError, "max_answer_tokens must be a positive integer"),
        ({"split": "validation"}, ValueError, "unknown split 'validation'"),
        ({"split": 0}, ValueError, "unknown split 0"),
        ({"render_mode": "rgb_array"}, TypeError, "unknown render_mode 'rgb_array'"),
        ({"reward": 3}, TypeError, "reward must be a name"),
    ],
)
def test_bad_options_fail_in_one_line_naming_the_field(settings, error, message):
    with pytest.raises(error, match=message) as caught:
        EnvOptions(**settings)
    assert "\n" not in str(caught.value)
    with pytest.raises(error, match=message):  # the same check behind gym.make
        gym.make("DialogQA-Toy-v0", **settings)


def test_good_options_are_kept_as_given_and_frozen():
    options = EnvOptions(split="test", reward="exact", shaping=0.25, max_len=40, demo_noise=0.5, render_mode="ansi")
    assert (options.split, options.reward, options.shaping, options.max_len) == ("test", "exact", 0.25, 40)
    assert EnvOptions(shaping=np.float32(0.5), max_len=np.int64(40)).max_len == 40  # numpy numbers are numbers
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.shaping = 1.0
    assert EnvOptions.names() == tuple(f.name for f in dataclasses.fields(EnvOptions))


def test_build_replaces_fields_and_names_the_valid_ones():
    base = EnvOptions(split="test", shaping=0.5)
    built = EnvOptions.build(base, shaping=0.1)
    assert (built.split, built.shaping, base.shaping) == ("test", 0.1, 0.5)
    with pytest.raises(TypeError, match=r"unknown env option\(s\) \['shapin'\]; the options are \['split'"):
        EnvOptions.build(base, shapin=0.1)
    with pytest.raises(ValueError, match="shaping=-1"):
        EnvOptions.build(base, shaping=-1)


def test_the_kernel_and_both_envs_read_the_options_they_were_given():
    options = EnvOptions(split="test", reward="exact", max_len=20, demo_noise=0.2)
    env = DialogEnv(ToyLookupTask(), options)
    envs = DialogVectorEnv(ToyLookupTask(), 3, options)
    for built in (env, envs):
        assert built.options is options and built.kernel.options is options
        assert (built.split, built.max_len, built.reward_name) == ("test", 20, "exact")
        assert built.observation_space.shape[-1] == 20
    # keywords build the same options
    assert DialogEnv(ToyLookupTask(), split="test", reward="exact", max_len=20, demo_noise=0.2).options == options
    assert DialogEnv(ToyLookupTask(), options, max_len=30).max_len == 30


def test_huge_sizes_fail_before_anything_is_allocated():
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ValueError, match="out of range"):
            gym.make("DialogQA-v0", max_answer_tokens=10**9)
        with pytest.raises(ValueError, match="GiB of state, more than the 4 GiB allowed; use fewer envs") as caught:
            gym.make_vec("DialogQA-v0", num_envs=10**6, max_len=MAX_WINDOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "\n" not in str(caught.value)
    assert peak < 64 * 2**20 and time.perf_counter() - start < 30
    assert MEMORY_BUDGET == 4 << 30


def test_sizes_within_the_budget_are_allocated():
    envs = gym.make_vec("DialogQA-Toy-v0", num_envs=2, max_len=MAX_WINDOW, max_answer_tokens=MAX_ANSWER_TOKENS)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, MAX_WINDOW) and envs.unwrapped.max_answer_tokens == MAX_ANSWER_TOKENS


def test_the_public_api_tells_what_agents_read_from_the_kernel():
    env = gym.make("DialogQA-v0").unwrapped
    envs = gym.make_vec("DialogQA-v0", num_envs=2, max_len=30).unwrapped
    assert env.max_len == env.full_dialogue_len == 80 and env.max_answer_tokens == 6
    assert envs.max_len == 30 < envs.full_dialogue_len == 80 and envs.reward_name == "keyword"
    assert env.action_masks().shape == (env.tokenizer.vocab_size,) and env.action_masks().dtype == bool
    assert not env.action_masks()[env.tokenizer.pad_id] and env.action_masks()[env.tokenizer.eos_id]
    obs, info = envs.reset(seed=0)
    for row in range(2):
        history = envs.history(row)
        assert np.array_equal(history[-30:], obs[row][obs[row] != envs.tokenizer.pad_id][-30:])
    with pytest.raises(ValueError, match=r"row must be an integer in \[0, 2\), got 2"):
        envs.history(2)
    with pytest.raises(ValueError, match=r"row must be an integer in \[0, 1\)"):
        env.history(1)
    pairs = env.preferences(50, seed=0)
    assert 0 < len(pairs) <= 50 and pairs.chosen.shape[0] == len(pairs)
    assert len(env.demonstrations(5)) == 5


@pytest.mark.parametrize(
    "index,message",
    [
        (2**64, "episode numbers are below 2\\*\\*64"),
        (10**30, "episode numbers are below 2\\*\\*64"),
        (-1, "non-negative integer, got -1"),
        (1.5, "non-negative integer, got 1.5"),
        ("3", "non-negative integer, got '3'"),
        (True, "non-negative integer, got True"),
        (np.zeros((40, 40), np.int64), r"got an array of shape \(40, 40\)"),
    ],
)
def test_bad_reset_indices_fail_in_one_line_and_the_env_goes_on(index, message):
    env = gym.make("DialogQA-v0")
    envs = gym.make_vec("DialogQA-v0", num_envs=2)
    _, info = env.reset(seed=0)
    envs.reset(seed=0)
    for target in (env, envs):
        with pytest.raises(ValueError, match=message) as caught:
            target.reset(options={"index": index})
        assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match=message):
        envs.reset(options={"index": [0, index]})
    env.step(info["expert_action"])


def test_the_largest_episode_number_plays():
    env = gym.make("DialogQA-v0")
    a, _ = env.reset(options={"index": 2**64 - 1})
    b, _ = env.reset(options={"index": np.uint64(2**64 - 1)})
    assert np.array_equal(a, b)
    for target in (env, gym.make_vec("DialogQA-v0", num_envs=2)):
        with pytest.raises(TypeError, match="reset options must be a dict"):
            target.reset(options=[3])


def test_registered_envs_accept_every_option():
    for env_id in dialog_gym.ENV_IDS:
        env = gym.make(env_id, split="test", max_len=200, demo_noise=0.1, render_mode="ansi").unwrapped
        assert env.options.max_len == env.max_len == 200 and env.split == "test"
