"""The learned reward model: Bradley-Terry training ranks held-out pairs, and envs take it as their reward."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import dialog_gym
from agents.checkpoint import CheckpointError
from agents.reward_model import (
    RewardModelConfig,
    bradley_terry_loss,
    left_pad,
    load_reward_model,
    preference_accuracy,
    save_reward_model,
    train_reward_model,
)
from dialog_gym.demonstrations import read_preferences, task_preferences

TOY = {"vocab_size": 16}


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory):
    kernel = gym.make("DialogQA-Toy-v0", **TOY).unwrapped.kernel
    pairs = task_preferences(kernel, 3000, seed=0)
    model = train_reward_model(pairs, kernel.max_len, RewardModelConfig(epochs=4, batch_size=128, learning_rate=3e-3))
    return save_reward_model(model, tmp_path_factory.mktemp("rm") / "model"), model, kernel


def test_task_pairs_prefer_the_reference_answer():
    kernel = gym.make("DialogQA-v0").unwrapped.kernel
    pairs = task_preferences(kernel, 300, seed=0)
    assert len(pairs) > 100
    tok = pairs.tokenizer
    for i in range(20):
        chosen = tok.decode(pairs.chosen[i, : pairs.chosen_len[i]])
        rejected = tok.decode(pairs.rejected[i, : pairs.rejected_len[i]])
        prompt = chosen.rsplit("<agent>", 1)[0]
        assert rejected.startswith(prompt) and chosen != rejected and chosen.endswith("<eos>")


def test_bradley_terry_loss_matches_its_formula():
    chosen, rejected = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, 0.5])
    expected = np.mean([np.log1p(np.exp(-(c - r))) for c, r in zip(chosen.tolist(), rejected.tolist())])
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(expected)


def test_the_trained_model_ranks_held_out_pairs(toy_model):
    _, model, kernel = toy_model
    held_out = task_preferences(kernel, 1000, seed=7)
    assert preference_accuracy(model, held_out) >= 0.9


def test_an_env_scores_answers_with_the_saved_model(toy_model):
    path, model, _ = toy_model
    env = gym.make("DialogQA-Toy-v0", reward=f"model:{path}", **TOY)
    obs, info = env.reset(seed=0)
    while True:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if terminated or truncated:
            break
    expected = model(torch.as_tensor(obs[None])).item()  # an independent pass over the final window
    assert reward == pytest.approx(expected, abs=1e-5)
    # Correctness is the task's own metric, not the learned reward's scale.
    assert info["answer_correct"] is True and info["dialogue"]["success"]
    oracle = dialog_gym.evaluate(
        dialog_gym.OracleAgent(), "DialogQA-Toy-v0", episodes=100, reward=f"model:{path}", **TOY
    )
    random = dialog_gym.evaluate(
        dialog_gym.RandomAgent(0), "DialogQA-Toy-v0", episodes=100, reward=f"model:{path}", **TOY
    )
    assert oracle["answer_accuracy"] == 1.0 and oracle["mean_return"] > random["mean_return"]


def test_a_model_env_survives_pickling(toy_model):
    import pickle

    path, _, _ = toy_model
    env = gym.make("DialogQA-Toy-v0", reward=f"model:{path}", **TOY)
    env.reset(seed=0)
    clone = pickle.loads(pickle.dumps(env))
    assert clone.step(4)[1] == env.step(4)[1]


def test_bad_models_fail_with_one_line(tmp_path, toy_model):
    path, _, _ = toy_model
    with pytest.raises(CheckpointError, match="not a saved reward model"):
        gym.make("DialogQA-Toy-v0", reward=f"model:{tmp_path / 'missing'}")
    with pytest.raises(ValueError, match="vocabulary of 16 tokens but this env has 8"):
        gym.make("DialogQA-Toy-v0", reward=f"model:{path}", vocab_size=8)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a reward model's state"):
        load_reward_model(broken)


def test_preference_files_are_read_and_bad_lines_named(tmp_path):
    tokenizer = gym.make("DialogQA-v0").unwrapped.tokenizer
    good = tmp_path / "good.jsonl"
    good.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "context": "mary is in the kitchen .",
                    "question": "where is mary ?",
                    "chosen": "the kitchen",
                    "rejected": "the park",
                },
                {"context": "john has the ball .", "chosen": "john", "rejected": "nobody"},
            ]
        )
    )
    pairs = read_preferences(str(good), tokenizer)
    assert len(pairs) == 2
    assert tokenizer.decode(pairs.chosen[1, : pairs.chosen_len[1]]) == "<bos> john has the ball . <agent> john <eos>"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"context": "x", "chosen": "a", "rejected": "b"}\nnot json\n{"context": "x", "chosen": ""}\n[1]\n')
    with pytest.raises(ValueError) as caught:
        read_preferences(str(bad), tokenizer)
    message = str(caught.value)
    assert "3 malformed line(s)" in message and "line 2: not valid JSON" in message
    assert (
        "line 3: field 'chosen' must be a non-empty string" in message and "line 4: expected a JSON object" in message
    )


def test_left_pad_keeps_the_newest_tokens():
    ids = np.array([[5, 6, 7, 0], [1, 2, 3, 4]])
    assert left_pad(ids, np.array([3, 4]), 3, 0).tolist() == [[5, 6, 7], [2, 3, 4]]


def test_a_model_of_another_vocabulary_of_the_same_size_is_refused(toy_model):
    path, _, _ = toy_model
    with pytest.raises(ValueError, match="another vocabulary of the same size"):
        _same_size_env(path)
    with pytest.raises(ValueError, match="names no directory"):
        gym.make("DialogQA-Toy-v0", reward="model:")


def _same_size_env(path):
    """A toy env whose tokenizer has the model's vocabulary size but other tokens."""
    from dialog_gym.env import DialogEnv
    from dialog_gym.tasks.toy import ToyLookupTask

    task = ToyLookupTask(vocab_size=16)
    task.tokenizer.tokens = [t.upper() for t in task.tokenizer.tokens]
    return DialogEnv(task, reward=f"model:{path}")


def test_training_without_pairs_is_refused():
    from dialog_gym.demonstrations import Preferences

    tokenizer = gym.make("DialogQA-Toy-v0").unwrapped.tokenizer
    empty = Preferences(
        np.zeros((0, 4), np.int64), np.zeros(0, np.int64), np.zeros((0, 4), np.int64), np.zeros(0, np.int64), tokenizer
    )
    with pytest.raises(ValueError, match="no preference pairs"):
        train_reward_model(empty, 8)


def test_preference_files_with_a_bom_load_and_bad_bytes_are_named(tmp_path):
    tokenizer = gym.make("DialogQA-v0").unwrapped.tokenizer
    line = json.dumps({"context": "john has the ball .", "chosen": "john", "rejected": "nobody"})
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\n")
    assert len(read_preferences(str(bom), tokenizer)) == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(line.encode() + b"\n\xff\xfe\n")
    with pytest.raises(ValueError, match="line 2: not UTF-8 text"):
        read_preferences(str(bad), tokenizer)


@pytest.mark.slow  # trains a reward model, then a policy against it
def test_ppo_against_a_learned_reward_raises_the_true_accuracy(tmp_path):
    """The RLHF loop end to end on DialogQA-v0: preferences -> reward model -> PPO, judged by the task's metric."""
    from agents.config import TrainConfig
    from agents.train import train

    kernel = gym.make("DialogQA-v0").unwrapped.kernel
    model = train_reward_model(task_preferences(kernel, 2000, seed=0), kernel.max_len, RewardModelConfig(epochs=2))
    path = save_reward_model(model, tmp_path / "rm")
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-v0",
            "env_args": {"reward": f"model:{path}"},
            "total_steps": 40000,
            "eval_episodes": 1000,
            "pretraining": {"demonstrations": 4000, "epochs": 1},
        }
    )
    results = train(config, tmp_path / "run", progress=False)
    assert results["ppo"]["mean_return"] > results["pretrained"]["mean_return"]  # the learned reward rose
    # ... and so did the truth (about 2,000 answers scored per agent: a standard error near 0.01)
    assert results["ppo"]["answer_accuracy"] > results["pretrained"]["answer_accuracy"] + 0.01
