"""Bad input gets a one-line error naming the bad value, and the env stays usable."""

import pickle
import re
import time

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401  (registers the ids)
from dialog_gym.tasks.microworld import MicroWorldTask

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
    env = dialog_gym.envs.make_env("DialogQA-v0")
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


# -- task sizes: bounded before anything is allocated ---------------------------------------------

HUGE = 2**31
OVERSIZED = [
    ("DialogQA-Toy-v0", {"vocab_size": HUGE}, "vocab_size"),
    ("DialogQA-Toy-v0", {"question_len": HUGE}, "question_len"),
    ("DialogQA-Toy-v0", {"answer_len": HUGE}, "answer_len"),
    ("DialogQA-Toy-v0", {"vocab_size": 1024, "n_questions": HUGE}, "n_questions"),
    ("DialogQA-v0", {"n_people": HUGE}, "n_people"),
    ("DialogQA-v0", {"n_events": HUGE}, "n_events"),
    ("DialogQA-v0", {"max_turns": HUGE}, "max_turns"),
    ("Tutor-v0", {"level": HUGE}, "level"),
    ("Tutor-v0", {"problems": HUGE}, "problems"),
    ("Tutor-v0", {"curriculum": True, "curriculum_window": HUGE}, "curriculum_window"),
    ("Conversation-v0", {"max_turns": HUGE}, "max_turns"),
    ("Conversation-v0", {"max_utterance_tokens": HUGE}, "max_utterance_tokens"),
    ("TwentyQuestions-v0", {"n_candidates": HUGE}, "n_candidates"),
    ("TwentyQuestions-v0", {"max_questions": HUGE}, "max_questions"),
    ("CustomerService-v0", {"max_turns": HUGE}, "max_turns"),
]


@pytest.mark.parametrize("env_id,kwargs,name", OVERSIZED, ids=[f"{e}-{n}" for e, _, n in OVERSIZED])
def test_oversized_task_arguments_fail_fast_naming_the_value(env_id, kwargs, name):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"{name} must be an integer in \[\d+, \d+\].*got {HUGE}") as caught:
        gym.make(env_id, **kwargs)
    assert time.perf_counter() - start < 0.5  # nothing of that size was built
    assert "\n" not in str(caught.value)


def test_a_toy_table_too_large_for_memory_is_refused_before_it_is_drawn():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"1048576 questions .* more than 33554432; lower n_questions"):
        gym.make("DialogQA-Toy-v0", vocab_size=1024, question_len=64, answer_len=64, n_questions=2**20)
    assert time.perf_counter() - start < 0.5


MISTYPED = [
    ("DialogQA-Toy-v0", "vocab_size", True),
    ("DialogQA-Toy-v0", "vocab_size", "16"),
    ("DialogQA-Toy-v0", "vocab_size", 16.0),
    ("DialogQA-Toy-v0", "n_questions", 4.0),
    ("DialogQA-Toy-v0", "table_seed", "0"),
    ("DialogQA-v0", "n_people", True),
    ("DialogQA-v0", "n_places", "4"),
    ("DialogQA-v0", "min_turns", 1.0),
    ("Tutor-v0", "level", True),
    ("Tutor-v0", "problems", "2"),
    ("Tutor-v0", "max_level", 5.0),
    ("Tutor-v0", "curriculum_threshold", True),
    ("Tutor-v0", "curriculum_threshold", "0.9"),
    ("Conversation-v0", "max_utterance_tokens", True),
    ("Conversation-v0", "max_turns", 2.0),
    ("Conversation-v0", "language", ["en"]),
    ("Conversation-v0", "categories", [3]),
    ("Conversation-v0", "categories", []),
    ("TwentyQuestions-v0", "n_candidates", np.float64(8)),
    ("TwentyQuestions-v0", "question_cost", True),
    ("TwentyQuestions-v0", "question_cost", float("nan")),
    ("CustomerService-v0", "reveal", "0.5"),
    ("CustomerService-v0", "max_turns", 8.0),
    ("CustomerService-v0", "turn_cost", False),
]


@pytest.mark.parametrize("env_id,name,value", MISTYPED, ids=[f"{e}-{n}-{v!r}" for e, n, v in MISTYPED])
def test_mistyped_task_arguments_are_named(env_id, name, value):
    with pytest.raises(ValueError, match=re.escape(name)) as caught:
        gym.make(env_id, **{name: value})
    message = str(caught.value)
    assert repr(value)[:20] in message and "\n" not in message


def test_numpy_integers_are_integers():
    assert gym.make("DialogQA-Toy-v0", vocab_size=np.int64(8)).unwrapped.task.vocab_size == 8


# -- dataset= -------------------------------------------------------------------------------------


def test_explicit_dataset_none_means_the_generated_worlds():
    assert type(gym.make("DialogQA-v0", dataset=None).unwrapped.task) is MicroWorldTask


@pytest.mark.parametrize("dataset", [3, True, b"data.jsonl", ["data.jsonl"]])
def test_a_dataset_that_is_not_a_path_is_named(dataset):
    with pytest.raises(TypeError, match=r"dataset must be the path of a JSONL file .*got " + re.escape(repr(dataset))):
        gym.make("DialogQA-v0", dataset=dataset)


def test_an_empty_dataset_path_is_named():
    with pytest.raises(ValueError, match="dataset path is empty"):
        gym.make("DialogQA-v0", dataset="")


# -- hf: policies never unpickle weights ----------------------------------------------------------


class _Trap:
    """Unpickling this creates the file ``path``: the proof that a pickle was loaded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickled_checkpoint_is_refused_without_being_unpickled(tmp_path):
    pytest.importorskip("transformers")
    from transformers import GPT2Config

    from agents.hf_policy import HFPolicyConfig, build_hf_policy

    model_dir = tmp_path / "model"
    GPT2Config(n_layer=1, n_head=1, n_embd=8, vocab_size=16).save_pretrained(model_dir)
    marker = tmp_path / "unpickled"
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(str(marker))))
    with pytest.raises(ValueError, match=r"only pickled pytorch_model\*\.bin.*convert them to safetensors") as caught:
        build_hf_policy(str(model_dir), HFPolicyConfig(vocab_size=16, pad_id=0, context_len=8))
    assert not marker.exists() and "\n" not in str(caught.value)
