"""TwentyQuestions-v0: the env answers truthfully, the expert always wins, and every way to lose is scored."""

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401
from dialog_gym.tasks.twenty_questions import ATTRIBUTES, NAMES, TABLE, TwentyQuestionsTask


def say(env, text: str):
    """Emit the words of ``text`` and EOS; returns the last step's result."""
    tokenizer = env.unwrapped.tokenizer
    for token in tokenizer.encode(text):
        env.step(token)
    return env.step(tokenizer.eos_id)


def hidden_animal(env) -> str:
    kernel = env.unwrapped.kernel
    _, hidden = env.unwrapped.task.games(kernel.split, kernel.ahead.index[kernel.slot[:1]])
    return NAMES[int(hidden[0])]


def test_every_animal_has_its_own_attributes():
    assert len({tuple(row) for row in TABLE.tolist()}) == len(NAMES)


def test_the_user_answers_every_question_truthfully():
    env = gym.make("TwentyQuestions-v0", max_questions=len(ATTRIBUTES), render_mode="ansi")
    for seed in range(5):
        env.reset(seed=seed)
        animal = hidden_animal(env)
        for attribute in ATTRIBUTES:
            obs, reward, terminated, truncated, info = say(env, f"is it {attribute} ?")
            reply = env.unwrapped.tokenizer.decode(obs[-3:-1])
            assert reply == ("yes ." if TABLE[NAMES.index(animal), ATTRIBUTES.index(attribute)] else "no .")
            assert reward == pytest.approx(-0.05)


@pytest.mark.parametrize("n_candidates", [2, 8, 24])
def test_the_expert_wins_every_game_within_its_questions(n_candidates):
    envs = gym.make_vec("TwentyQuestions-v0", num_envs=64, n_candidates=n_candidates, max_questions=24)
    obs, info = envs.reset(seed=0)
    finished, questions = 0, []
    while finished < 200:
        obs, reward, terminated, truncated, info = envs.step(info["expert_action"])
        assert not truncated.any()
        if terminated.any():
            finished += int(terminated.sum())
            assert info["dialogue"]["success"][terminated].all()
            questions += (info["dialogue"]["answers"][terminated] - 1).tolist()
    assert max(questions) <= n_candidates - 1 and np.mean(questions) <= np.ceil(np.log2(n_candidates)) + 1


def test_the_expert_recovers_after_a_wasted_question():
    env = gym.make("TwentyQuestions-v0")
    obs, info = env.reset(seed=3)
    say(env, "is it furry ?")
    say(env, "is it furry ?")
    say(env, "what is it")  # not a question: the user says "what ?"
    assert env.unwrapped.tokenizer.decode(env.unwrapped.kernel.obs[0, -3:-1]) == "what ?"
    info = env.unwrapped._info(None)
    while True:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    assert terminated and reward == 1.0 and info["dialogue"]["success"]
    # every move but the repeated question (it rules nothing out) and "what is it"
    assert info["dialogue"]["correct"] == info["dialogue"]["answers"] - 2


def test_a_wrong_guess_loses_and_ends_the_game():
    env = gym.make("TwentyQuestions-v0")
    env.reset(seed=0)
    wrong = next(name for name in NAMES if name != hidden_animal(env))
    obs, reward, terminated, truncated, info = say(env, f"guess {wrong}")
    assert reward == -1.0 and terminated and not info["dialogue"]["success"]


def test_running_out_of_questions_truncates():
    env = gym.make("TwentyQuestions-v0", n_candidates=3, max_questions=2)
    env.reset(seed=0)
    say(env, "is it furry ?")
    say(env, "is it furry ?")
    obs, reward, terminated, truncated, info = say(env, "is it furry ?")
    assert truncated and not terminated and info["truncated_by"] == "max_turns"


def test_test_games_never_use_a_training_set_of_animals():
    task = TwentyQuestionsTask(n_candidates=3)
    index = np.arange(3000, dtype=np.uint64)
    train = {tuple(sorted(c)) for c in task.games("train", index)[0].tolist()}
    test = {tuple(sorted(c)) for c in task.games("test", index)[0].tolist()}
    assert len(test) > 50 and not train & test


def test_the_reward_cannot_be_replaced_and_arguments_are_checked():
    with pytest.raises(ValueError, match="scores the agent's turns itself"):
        gym.make("TwentyQuestions-v0", reward="exact")
    with pytest.raises(ValueError, match=r"max_questions must be an integer in \[7, 64\]"):
        gym.make("TwentyQuestions-v0", max_questions=3)
    with pytest.raises(ValueError, match="n_candidates must be"):
        gym.make("TwentyQuestions-v0", n_candidates=1)


def test_only_questions_that_rule_something_out_count_as_good_moves():
    env = gym.make("TwentyQuestions-v0", n_candidates=24, max_questions=30)
    env.reset(seed=0)
    assert say(env, "is it furry ?")[4]["answer_correct"]
    assert not say(env, "is it furry ?")[4]["answer_correct"]
