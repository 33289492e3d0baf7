"""Bad input gets a one-line error naming the bad value, and the env stays usable."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401  (registers the ids)

BAD_ACTIONS = [
    (10_000, "out of range"),
    (-1, "out of range"),
    (2.0, "integer token id"),
    (None, "integer token id"),
    ("3", "integer token id"),
    (True, "integer token id"),
    (np.array([3, 4]), "shape (2,)"),
    (np.array([[3]]), "shape (1, 1)"),
]


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
@pytest.mark.parametrize("action,message", BAD_ACTIONS)
def test_bad_action_is_rejected_and_the_episode_goes_on(env_id, action, message):
    env = gym.make(env_id)
    reference = gym.make(env_id)
    obs, info = env.reset(seed=0)
    reference.reset(seed=0)
    with pytest.raises(gym.error.InvalidAction, match=message.replace("(", r"\(").replace(")", r"\)")) as caught:
        env.step(action)
    assert "\n" not in str(caught.value)
    expert = info["expert_action"]
    assert np.array_equal(env.step(expert)[0], reference.step(expert)[0])


def test_numpy_integer_and_zero_dim_actions_are_fine():
    env = gym.make("DialogQA-Toy-v0")
    env.reset(seed=0)
    env.step(np.int32(3))
    env.step(np.array(4))


def test_step_before_reset():
    env = dialog_gym.envs.dialog_qa()
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        env.step(3)
    envs = gym.make_vec("DialogQA-v0", num_envs=2)
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        envs.step(np.array([3, 3]))


def test_step_after_the_episode_ended():
    env = gym.make("DialogQA-Toy-v0", answer_len=1)
    obs, info = env.reset(seed=0)
    *_, info = env.step(info["expert_action"])
    *_, terminated, truncated, info = env.step(info["expert_action"])
    assert terminated
    with pytest.raises(gym.error.ResetNeeded, match="after the episode ended"):
        env.step(3)
    env.reset()
    env.step(3)


@pytest.mark.parametrize(
    "actions,message",
    [
        (np.array([3, 3, 3]), "shape"),
        (np.array([3.0, 3.0]), "dtype float64"),
        (np.array([3, 99]), "row 1 is out of range"),
        (np.array([-2, 3]), "out of range"),
        (np.array([True, False]), "dtype bool"),
        ([None, None], "dtype object"),
    ],
)
def test_vector_bad_actions(actions, message):
    envs = gym.make_vec("DialogQA-Toy-v0", num_envs=2)
    obs, info = envs.reset(seed=0)
    with pytest.raises(gym.error.InvalidAction, match=message):
        envs.step(actions)
    envs.step(info["expert_action"])


@pytest.mark.parametrize(
    "env_id,kwargs,message",
    [
        ("DialogQA-Toy-v0", {"vocab_size": 3}, r"vocab_size must be an integer in \[4, 65536\] \(3 special tokens"),
        ("DialogQA-Toy-v0", {"vocab_size": 8.0}, "vocab_size"),
        ("DialogQA-Toy-v0", {"vocab_size": 5, "n_questions": 10}, "n_questions=10 is more than the 4"),
        ("DialogQA-Toy-v0", {"vocab_size": 1024, "question_len": 3, "n_questions": 0}, "give n_questions explicitly"),
        ("DialogQA-Toy-v0", {"question_len": 0}, "question_len"),
        ("DialogQA-Toy-v0", {"max_len": 3}, "max_len=3 is too short.*max_len >= 7"),
        ("DialogQA-v0", {"max_len": 5}, "max_len=5 is too short"),
        ("DialogQA-v0", {"max_answer_tokens": 2}, "max_answer_tokens=2 is too small"),
        ("DialogQA-v0", {"reward": "bleu"}, "unknown reward 'bleu'"),
        ("DialogQA-v0", {"reward": 3}, "reward must be a name"),
        ("DialogQA-v0", {"split": "validation"}, "unknown split 'validation'"),
        ("DialogQA-v0", {"n_people": 0}, r"n_people must be an integer in \[1, 24\]"),
        ("DialogQA-v0", {"n_places": 1}, "n_places"),
        ("DialogQA-v0", {"min_turns": 3, "max_turns": 2}, "max_turns"),
        ("DialogQA-v0", {"demo_noise": 1.5}, "demo_noise"),
        ("DialogQA-v0", {"render_mode": "rgb_array"}, "unknown render_mode"),
        ("DialogQA-v0", {"shaping": float("nan")}, "shaping"),
        ("DialogQA-v0", {"tokenizer": "char"}, "tokenizer= applies to dataset"),
    ],
)
def test_bad_constructor_arguments(env_id, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message) as caught:
        gym.make(env_id, **kwargs)
    assert "\n" not in str(caught.value)
    with pytest.raises((ValueError, TypeError), match=message):
        gym.make_vec(env_id, num_envs=2, **kwargs)


def test_unknown_argument_is_named():
    with pytest.raises(TypeError, match="n_peple"):
        gym.make("DialogQA-v0", n_peple=3)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"episode": 3}, "unknown reset option"),
        ({"index": -1}, "non-negative integer"),
        ({"index": 1.5}, "non-negative integer"),
        ({"index": 32}, "out of range: the 'train' split holds 32 episodes"),
    ],
)
def test_bad_reset_options_leave_the_env_usable(options, message):
    env = gym.make("DialogQA-Toy-v0")
    obs, info = env.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        env.reset(options=options)
    env.step(info["expert_action"])


def test_vector_reset_index_count_must_match():
    envs = gym.make_vec("DialogQA-v0", num_envs=3)
    with pytest.raises(ValueError, match="one index or 3"):
        envs.reset(options={"index": [1, 2]})


def test_bad_demonstration_arguments():
    env = gym.make("DialogQA-v0").unwrapped
    with pytest.raises(ValueError, match="positive number"):
        env.demonstrations(0)
    with pytest.raises(ValueError, match="noise"):
        env.demonstrations(5, noise=2.0)


def test_bad_evaluate_arguments():
    with pytest.raises(ValueError, match="episodes must be a positive integer"):
        dialog_gym.evaluate(dialog_gym.OracleAgent(), "DialogQA-v0", episodes=0)
