"""Tutor-v0: answers are the arithmetic of their questions, splits never share a problem, partial credit, curriculum."""

import re

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401
from dialog_gym.rewards import AnswerBatch, digits_reward
from dialog_gym.tasks.tutor import TutorTask

WORDS = {"gets": "+", "gives away": "-", "boxes of": "*"}


def solve(question: str) -> int:
    """The answer to a problem as the env writes it, computed from its text alone."""
    numbers = [int(n) for n in re.findall(r"\d+", question)]
    symbol = next((s for s in "+-*" if s in question), None)
    if symbol is None:
        symbol = next(s for words, s in WORDS.items() if words in question)
    a, b = numbers
    return {"+": a + b, "-": a - b, "*": a * b}[symbol]


@pytest.mark.parametrize("level", [1, 2, 3, 4, 5])
def test_every_reference_is_the_answer_to_its_question(level):
    task = TutorTask(level=level, problems=3)
    episodes = task.episodes("train", np.arange(300, dtype=np.uint64))
    decode = task.tokenizer.decode
    for row in range(len(episodes)):
        for turn in range(3):
            question = decode(episodes.segments[row, turn, : episodes.segment_len[row, turn]], skip_special=True)
            answer = decode(episodes.references[row, turn, : episodes.reference_len[row, turn]])
            assert int(answer) == solve(question) >= 0, question


def problems(split: str, level: int, count: int = 4000) -> set[tuple[int, int, int]]:
    """The problems asked, with the operands of + and * in order (a+b and b+a are one problem)."""
    task = TutorTask(level=level)
    keys = np.arange(count, dtype=np.uint64) * np.uint64(7919)
    op, a, b, _ = task.problems_of(split, keys)
    commutes = op != 1
    low, high = np.where(commutes, np.minimum(a, b), a), np.where(commutes, np.maximum(a, b), b)
    return set(zip(op.tolist(), low.tolist(), high.tolist()))


@pytest.mark.parametrize("level", [1, 2, 3, 5])
def test_no_test_problem_is_ever_asked_in_training(level):
    train, test = problems("train", level), problems("test", level)
    assert len(test) >= 10 and len(train) >= 40
    assert not train & test


def batch(response: list[int], reference: list[int]) -> AnswerBatch:
    width = max(len(response), len(reference), 1)
    return AnswerBatch(
        response=np.array([response + [0] * (width - len(response))]),
        response_len=np.array([len(response)]),
        ended=np.array([True]),
        reference=np.array([reference + [0] * (width - len(reference))]),
        reference_len=np.array([len(reference)]),
        keywords=np.zeros((1, 1, 1), np.int64),
        keyword_len=np.ones((1, 1), np.int64),
    )


@pytest.mark.parametrize(
    "response,expected",
    [("72", 1.0), ("73", 0.5), ("12", 0.5), ("172", 2 / 3), ("2", 0.5), ("7", 0.0), ("", 0.0), ("27", 0.0)],
)
def test_digits_reward_gives_credit_per_place(response, expected):
    ids = {str(d): 10 + d for d in range(10)}
    assert digits_reward(batch([ids[c] for c in response], [ids["7"], ids["2"]]))[0] == pytest.approx(expected)


def test_the_curriculum_raises_the_level_and_regenerates_queued_problems():
    envs = gym.make_vec("Tutor-v0", num_envs=32, curriculum=True, curriculum_window=64)
    task = envs.unwrapped.task
    obs, info = envs.reset(seed=0)
    levels = []
    for _ in range(60):
        obs, reward, terminated, truncated, info = envs.step(info["expert_action"])
        levels.append(task.level)
    assert levels[0] == 1 and levels[-1] == 5 and levels == sorted(levels)
    # The problems asked after the last rise are word problems, not the queued sums of level 1.
    text = envs.unwrapped.tokenizer.decode(envs.unwrapped.kernel.history(0), skip_special=True)
    assert "how many" in text


def test_the_curriculum_only_counts_answers_to_problems_of_the_current_level():
    envs = gym.make_vec("Tutor-v0", num_envs=256, problems=3, curriculum=True, curriculum_window=64)
    kernel, task = envs.unwrapped.kernel, envs.unwrapped.task
    eos = envs.unwrapped.tokenizer.eos_id
    obs, info = envs.reset(seed=0)
    for _ in range(200):  # solves level 1 only; at level 2 and above it answers with nothing
        level_one = kernel.ahead.tag[kernel.slot] == 1
        obs, reward, terminated, truncated, info = envs.step(np.where(level_one, info["expert_action"], eos))
    assert task.level == 2


def test_seeding_restarts_the_curriculum_and_the_test_split_never_adapts():
    env = gym.make("Tutor-v0", curriculum=True, curriculum_window=4)
    obs, info = env.reset(seed=0)
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            obs, info = env.reset()
    assert env.unwrapped.task.level > 1
    first = env.reset(seed=0)[0]
    assert env.unwrapped.task.level == 1 and np.array_equal(
        first, gym.make("Tutor-v0", curriculum=True).reset(seed=0)[0]
    )
    test = gym.make("Tutor-v0", curriculum=True, curriculum_window=4, split="test")
    obs, info = test.reset(seed=0)
    for _ in range(40):
        obs, reward, terminated, truncated, info = test.step(info["expert_action"])
        if terminated or truncated:
            obs, info = test.reset()
    assert test.unwrapped.task.level == 1


def test_without_a_curriculum_the_level_stays():
    envs = gym.make_vec("Tutor-v0", num_envs=16, level=2)
    obs, info = envs.reset(seed=0)
    for _ in range(50):
        obs, reward, terminated, truncated, info = envs.step(info["expert_action"])
    assert envs.unwrapped.task.level == 2


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"level": 6}, "level must be an integer in [1, 5]"),
        ({"problems": 0}, "problems must be"),
        ({"curriculum": "yes"}, "curriculum must be True or False"),
        ({"level": 3, "max_level": 2, "curriculum": True}, "max_level must be"),
        ({"curriculum_threshold": 1.5}, "curriculum_threshold must be"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gym.make("Tutor-v0", **kwargs)
