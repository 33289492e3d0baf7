"""Hugging Face tokenizers as the action space: BPE training, re-tokenized envs, text-level rewards."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from transformers import AutoTokenizer

import dialog_gym
from agents.cli import main as cli

EPISODES = 60


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A byte-level BPE trained on DialogQA-v0 by the command users run."""
    out = tmp_path_factory.mktemp("bpe") / "tokenizer"
    cli(["tokenizer", "--env", "DialogQA-v0", "--out", str(out), "--episodes", "3000", "--vocab-size", "600"])
    return out


def snapshot(tokenizer) -> tuple:
    return (
        len(tokenizer),
        tokenizer.pad_token,
        tokenizer.eos_token,
        dict(tokenizer.special_tokens_map),
        tokenizer.padding_side,
        tuple(sorted(tokenizer.get_vocab().items())),
    )


def test_the_tokenizer_command_writes_a_directory_autotokenizer_loads(bpe_dir):
    tokenizer = AutoTokenizer.from_pretrained(bpe_dir)
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>"
    assert "<user>" in tokenizer.get_vocab() and "<agent>" in tokenizer.get_vocab()
    text = " where is the ball ?"
    assert tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)) == text
    assert (
        tokenizer.decode(tokenizer.encode(" 你好 zebra", add_special_tokens=False)) == " 你好 zebra"
    )  # byte-level: anything spells


def test_an_env_speaks_the_tokenizers_vocabulary(bpe_dir):
    tokenizer = AutoTokenizer.from_pretrained(bpe_dir)
    env = gym.make("DialogQA-v0", tokenizer=bpe_dir, render_mode="ansi")
    native = gym.make("DialogQA-v0", render_mode="ansi")
    assert env.action_space.n == len(tokenizer)
    obs, info = env.reset(seed=5)
    native.reset(seed=5)
    real = obs[obs != tokenizer.pad_token_id]
    shown = tokenizer.decode(real.tolist())
    assert "<user>" in shown and shown.endswith("<agent>")
    assert " ".join(shown.replace("<", " <").split()) == " ".join(native.render().replace("<", " <").split())
    assert not info["action_mask"][tokenizer.pad_token_id] and info["action_mask"][tokenizer.eos_token_id]


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
def test_every_env_scores_the_same_answers_alike_in_either_vocabulary(env_id, tmp_path):
    cli(["tokenizer", "--env", env_id, "--out", str(tmp_path / "tok"), "--episodes", "300", "--vocab-size", "1200"])
    tokenizer = str(tmp_path / "tok")
    oracle = dialog_gym.evaluate(dialog_gym.OracleAgent(), env_id, episodes=EPISODES, seed=1, tokenizer=tokenizer)
    native = dialog_gym.evaluate(dialog_gym.OracleAgent(), env_id, episodes=EPISODES, seed=1)
    for key in ("mean_return", "answer_accuracy", "success_rate"):  # answers take other numbers of tokens
        assert oracle[key] == pytest.approx(native[key]), key
    random = dialog_gym.evaluate(dialog_gym.RandomAgent(0), env_id, episodes=EPISODES, seed=2, tokenizer=tokenizer)
    assert np.isfinite(random["mean_return"]) and random["mean_return"] < oracle["mean_return"]


def test_an_hf_env_passes_the_gymnasium_checker(bpe_dir):
    check_env(gym.make("DialogQA-v0", tokenizer=bpe_dir).unwrapped, skip_render_check=True)


def test_the_env_never_changes_the_tokenizer_it_was_given(gpt2_like, bpe_dir):
    for tokenizer in (gpt2_like, AutoTokenizer.from_pretrained(bpe_dir)):
        before = snapshot(tokenizer)
        env = gym.make_vec("DialogQA-v0", num_envs=4, tokenizer=tokenizer)
        env.reset(seed=0)
        for _ in range(20):
            env.step(env.action_space.sample())
        copy.deepcopy(env.unwrapped.tokenizer)
        assert snapshot(tokenizer) == before


def test_a_vocabulary_without_padding_or_markers_gets_a_private_pad_and_text_markers(gpt2_like):
    env = gym.make("DialogQA-v0", tokenizer=gpt2_like)
    n = len(gpt2_like)
    assert env.action_space.n == n + 1  # one id past the vocabulary pads observations
    obs, info = env.reset(seed=0)
    assert obs[0] == n and not info["action_mask"][n]
    text = gpt2_like.decode(obs[obs < n].tolist())
    assert "\nUser:" in text and text.endswith("\nAgent:")
    assert gpt2_like.pad_token is None


def test_rewards_read_the_text_so_any_spelling_of_the_answer_counts(bpe_dir):
    tokenizer = AutoTokenizer.from_pretrained(bpe_dir)
    env = gym.make("DialogQA-v0", tokenizer=bpe_dir, reward="exact")
    obs, info = env.reset(seed=3)
    answer = info["reference"]
    spelled = tokenizer.encode(" " + answer, add_special_tokens=False)
    byte_by_byte = [tokenizer.convert_tokens_to_ids(t) for t in tokenizer.convert_ids_to_tokens(spelled) for t in t]
    assert len(byte_by_byte) > len(spelled) and tokenizer.decode(byte_by_byte) == tokenizer.decode(spelled)
    env = gym.make("DialogQA-v0", tokenizer=bpe_dir, reward="exact", max_answer_tokens=len(byte_by_byte) + 1)
    obs, info = env.reset(seed=3)
    for token in byte_by_byte + [tokenizer.eos_token_id]:
        obs, reward, terminated, truncated, info = env.step(token)
    assert info["answer_correct"] and reward == 1.0


def test_bad_tokenizers_are_refused_in_one_line(tmp_path, gpt2_like):
    with pytest.raises(ValueError, match="not a directory"):
        gym.make("DialogQA-v0", tokenizer=str(tmp_path / "missing"))
    no_eos = copy.deepcopy(gpt2_like)
    no_eos.eos_token = None
    with pytest.raises(ValueError, match="no EOS token"):
        gym.make("DialogQA-v0", tokenizer=no_eos)
    with pytest.raises(ValueError, match="learned reward model"):
        gym.make("DialogQA-v0", tokenizer=gpt2_like, reward="model:somewhere")
    with pytest.raises(SystemExit, match="vocab_size must be an integer >= 263"):
        cli(["tokenizer", "--out", str(tmp_path / "small"), "--vocab-size", "100"])


def test_a_task_with_few_episodes_gets_a_window_measured_over_all_of_them(tmp_path):
    cli(
        [
            "tokenizer",
            "--env",
            "Conversation-v0",
            "--out",
            str(tmp_path / "tok"),
            "--episodes",
            "300",
            "--vocab-size",
            "600",
        ]
    )
    task = gym.make("Conversation-v0", tokenizer=str(tmp_path / "tok")).unwrapped.task
    native, limits = task.native.limits, task.limits
    widest = int(task.piece_len.max())
    assert widest > 2 and limits.max_dialogue_len < native.max_dialogue_len * widest / 2  # far below the bound
    every = [task.episodes(split, np.arange(task.num_examples(split), dtype=np.uint64)) for split in ("train", "test")]
    assert max(int(e.segment_len.sum(1).max()) for e in every) == limits.max_dialogue_len  # tight, and all fit
    assert max(int(e.reference_len.max()) for e in every) == limits.max_reference_len
