"""TRL's GRPOTrainer on a dialog_gym env through ``agents.trl_grpo``: a real TRL run, scored by our evaluator."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("trl")

from agents.trl_grpo import EnvReward, blocked_tokens, prompt_dataset, word_tokenizer  # noqa: E402
from benchmarks import trl_crosscheck  # noqa: E402

TOY = trl_crosscheck.ENV_ARGS


def test_the_word_tokenizer_gives_the_envs_own_ids():
    env = gym.make("DialogQA-Toy-v0", **TOY)
    tokenizer = env.unwrapped.tokenizer
    hf = word_tokenizer(tokenizer)
    assert len(hf) == tokenizer.vocab_size
    assert (hf.pad_token_id, hf.eos_token_id) == (tokenizer.pad_id, tokenizer.eos_id)
    text = "w3 w10 <agent>"
    assert hf(text)["input_ids"] == tokenizer.encode(text)


def test_the_prompts_are_the_episodes_openings():
    dataset = prompt_dataset("DialogQA-Toy-v0", TOY)
    env = gym.make("DialogQA-Toy-v0", **TOY)
    assert len(dataset) == env.unwrapped.task.num_examples("train") == 32
    observation, _ = env.reset(options={"index": 5})
    ids = observation[observation != 0].tolist()
    assert dataset[5] == {"prompt": env.unwrapped.tokenizer.decode(ids), "index": 5}


def test_the_reward_is_the_envs_return_of_the_completion():
    reward = EnvReward("DialogQA-Toy-v0", TOY)
    env = gym.make("DialogQA-Toy-v0", **TOY)
    _, info = env.reset(options={"index": 7})
    right = env.unwrapped.tokenizer.encode(info["reference"]) + [env.unwrapped.tokenizer.eos_id]
    wrong_token = next(t for t in range(3, TOY["vocab_size"]) if t != right[0])
    scores = reward([None] * 3, [None] * 3, [right, [wrong_token, 1], [1]], index=[7, 7, 7])
    # match reward: the fraction of the reference's positions (EOS included) the answer gets right
    assert scores == [1.0, 0.5, 0.0]
    assert reward.env_steps == 2 + 2 + 1


def test_a_completion_that_does_not_end_the_episode_is_refused_in_one_line():
    reward = EnvReward("DialogQA-Toy-v0", TOY)
    with pytest.raises(ValueError, match="did not end after the 1-token completion; set max_completion_length"):
        reward.episode_return(0, [5])


def test_generation_never_samples_what_the_env_refuses():
    env = gym.make("DialogQA-Toy-v0", **TOY)
    mask = env.unwrapped.action_masks()
    assert sorted(i for [i] in blocked_tokens("DialogQA-Toy-v0", TOY)) == np.flatnonzero(~mask).tolist()


def test_trl_grpo_learns_the_toy_task_scored_by_our_evaluator():
    result = trl_crosscheck.run_trl(seed=0, budget=12_000, every=4_000)
    assert result.curve[0] == (0, 0.0)  # a fresh GPT-2 answers no question right
    assert result.env_steps >= 12_000
    # a uniformly random answer is right well under 1 time in 13; the curve must climb from 0
    assert result.final_success >= 0.2, result.curve
