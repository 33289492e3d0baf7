"""CustomerService-v0: the simulated customer answers from its goal, and bookings are judged against it."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401
from dialog_gym.tasks.customer_service import SLOTS, VALUES, CustomerServiceTask


def say(env, text: str):
    tokenizer = env.unwrapped.tokenizer
    for token in tokenizer.encode(text):
        env.step(token)
    return env.step(tokenizer.eos_id)


def goal_of(env) -> dict[str, str]:
    kernel, task = env.unwrapped.kernel, env.unwrapped.task
    keys = task._keys(kernel.split, kernel.ahead.index[kernel.slot[:1]])
    goal = task._draw_goal(keys)[0]
    return {slot: VALUES[slot][goal[s]] for s, slot in enumerate(SLOTS)}


def last_user_line(env) -> str:
    text = env.unwrapped.tokenizer.decode(env.unwrapped.kernel.history(0))
    return text.rsplit("<user>", 1)[1].rsplit("<agent>", 1)[0].strip()


def test_the_customer_answers_every_question_from_its_goal():
    env = gym.make("CustomerService-v0", max_turns=16, reveal=0.0)
    phrasings = set()
    for seed in range(6):
        env.reset(seed=seed)
        goal = goal_of(env)
        for slot, question in zip(SLOTS, ("which day ?", "what time ?", "where ?", "how many people ?")):
            obs, reward, terminated, truncated, info = say(env, question)
            line = last_user_line(env)
            assert goal[slot] in line.split() and reward == pytest.approx(-0.05) and info["answer_correct"]
            phrasings.add(line.replace(goal[slot], "X"))
    assert len(phrasings) >= 8  # paraphrased from a grammar, not one fixed sentence per slot


def test_the_right_booking_wins_and_a_wrong_one_loses():
    env = gym.make("CustomerService-v0")
    env.reset(seed=1)
    goal = goal_of(env)
    booking = "book " + " ".join(goal[slot] for slot in SLOTS)
    obs, reward, terminated, truncated, info = say(env, booking)
    assert reward == 1.0 and terminated and info["dialogue"]["success"]
    env.reset(seed=1)
    wrong_day = next(day for day in VALUES["day"] if day != goal["day"])
    obs, reward, terminated, truncated, info = say(env, booking.replace(goal["day"], wrong_day, 1))
    assert reward == -1.0 and terminated and not info["dialogue"]["success"]


def test_anything_else_gets_sorry_and_the_expert_still_books_right():
    env = gym.make("CustomerService-v0")
    obs, info = env.reset(seed=2)
    say(env, "hello")
    assert last_user_line(env) == "sorry ?"
    info = env.unwrapped._info(None)
    while True:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert (
        reward == 1.0 and info["dialogue"]["success"] and info["dialogue"]["correct"] == info["dialogue"]["answers"] - 1
    )


def test_a_booking_must_name_all_four_slots_and_asking_twice_is_no_progress():
    env = gym.make("CustomerService-v0", reveal=0.0)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = say(env, "book")
    assert not terminated and last_user_line(env) == "sorry ?"
    assert say(env, "where ?")[4]["answer_correct"]
    assert not say(env, "where ?")[4]["answer_correct"]


def test_running_out_of_turns_truncates():
    env = gym.make("CustomerService-v0", max_turns=5)
    env.reset(seed=0)
    for _ in range(4):
        say(env, "where ?")
    obs, reward, terminated, truncated, info = say(env, "where ?")
    assert truncated and not terminated and info["truncated_by"] == "max_turns"


def test_test_goals_never_occur_in_training():
    task = CustomerServiceTask()
    index = np.arange(4000, dtype=np.uint64)
    train = {tuple(g) for g in task._draw_goal(task._keys("train", index)).tolist()}
    test = {tuple(g) for g in task._draw_goal(task._keys("test", index)).tolist()}
    assert len(test) > 100 and not train & test


def test_the_reward_cannot_be_replaced_and_arguments_are_checked():
    with pytest.raises(ValueError, match="scores the agent's turns itself"):
        gym.make("CustomerService-v0", reward="f1")
    with pytest.raises(ValueError, match=r"max_turns must be an integer in \[5, 64\]"):
        gym.make("CustomerService-v0", max_turns=2)
    with pytest.raises(ValueError, match="reveal"):
        gym.make("CustomerService-v0", reveal=2)


def test_agent_tokens_mark_exactly_what_the_agent_said():
    env = gym.make("CustomerService-v0")
    obs, info = env.reset(seed=2)
    assert not env.unwrapped.agent_tokens().any()
    say(env, "where ?")
    obs, *_ = env.step(env.unwrapped.tokenizer.encode("book")[0])
    mask = env.unwrapped.agent_tokens()
    tokenizer = env.unwrapped.tokenizer
    assert tokenizer.decode(obs[mask]) == "where ? <eos> book"
    envs = gym.make_vec("CustomerService-v0", num_envs=3)
    obs, info = envs.reset(seed=0)
    obs, *_ = envs.step(info["expert_action"])
    assert envs.unwrapped.agent_tokens().sum(1).tolist() == [1, 1, 1]
