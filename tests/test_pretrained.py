"""Pretrained chat models from GGUF files: conversion, the cache, chat-templated envs, bad files."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from helpers.tiny_gguf import write_tiny_llama_gguf
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from transformers import AutoModelForCausalLM, AutoTokenizer

import dialog_gym
from agents import pretrained
from agents.build import build_policy, with_model_tokenizer
from agents.config import TrainConfig
from agents.hf_policy import HFPolicy
from agents.pretrained import CACHE_VARIABLE, COMPLETE, PretrainedModel, model_directory

EPISODES = 40


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_the_first_load_converts_and_caches_later_loads_read_the_cache(tiny_gguf, cache, monkeypatch):
    directory = model_directory(str(tiny_gguf))
    assert directory.parent == cache / "models" and directory.name.startswith("tiny-chat-")
    assert {"model.safetensors", "tokenizer.json", "config.json", COMPLETE} <= set(os.listdir(directory))
    direct = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32)
    cached = AutoModelForCausalLM.from_pretrained(str(directory), use_safetensors=True)
    ids = torch.tensor([[5, 70, 80, 90, 100, 3]])
    assert torch.equal(direct(ids).logits, cached(ids).logits)
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert tokenizer.chat_template and tokenizer.eos_token == "<|im_end|>"

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(pretrained, "_convert", no_conversion)
    assert model_directory(str(tiny_gguf)) == directory


def test_an_edited_file_gets_its_own_copy_and_a_half_written_one_is_never_read(tmp_path, cache):
    first = model_directory(str(write_tiny_llama_gguf(tmp_path / "m.gguf", seed=0)))
    second = model_directory(str(write_tiny_llama_gguf(tmp_path / "m.gguf", seed=1)))
    assert first != second and (second / COMPLETE).is_file()
    (second / COMPLETE).unlink()  # as if killed before the copy was finished
    assert model_directory(str(tmp_path / "m.gguf")) == second and (second / COMPLETE).is_file()


def test_a_short_name_finds_the_file_in_its_package_without_importing_it(tiny_gguf, tmp_path, cache, monkeypatch):
    package = tmp_path / "site" / "tiny_model_wheel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise ImportError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    wheel = PretrainedModel(package="tiny_model_wheel", file="tiny.gguf", install="pip install tiny", summary="test")
    monkeypatch.setitem(pretrained.PRETRAINED_MODELS, "tiny", wheel)
    with pytest.raises(FileNotFoundError, match=r"has no tiny\.gguf\); install it: pip install tiny"):
        model_directory("tiny")
    (package / "tiny.gguf").write_bytes(tiny_gguf.read_bytes())
    assert (model_directory("tiny") / COMPLETE).is_file()
    absent = PretrainedModel(package="no_such_wheel_xyz", file="x.gguf", install="pip install no-such", summary="test")
    monkeypatch.setitem(pretrained.PRETRAINED_MODELS, "absent", absent)
    with pytest.raises(
        FileNotFoundError, match=r"needs the no_such_wheel_xyz package; install it: pip install no-such"
    ):
        model_directory("absent")


def test_bad_gguf_files_fail_in_one_line_naming_the_file(tmp_path, tiny_gguf, cache):
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size // 2])
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model " * 100)
    other = write_tiny_llama_gguf(tmp_path / "other.gguf", architecture="rwkv6")
    cases = [
        (tmp_path / "missing.gguf", FileNotFoundError, "does not exist"),
        (truncated, ValueError, "corrupt or truncated"),
        (junk, ValueError, "corrupt or truncated"),
        (other, ValueError, "'rwkv6' model, which transformers cannot read"),
    ]
    for file, kind, message in cases:
        with pytest.raises(kind) as error:
            model_directory(str(file))
        text = str(error.value)
        assert message in text and str(file.name) in text and "\n" not in text, text
    assert not (cache / "models").exists() or not any((cache / "models").iterdir())  # nothing half-written is left


def test_the_config_takes_short_names_and_gguf_files_and_refuses_others():
    assert TrainConfig(policy="smollm2").policy == "smollm2"
    assert TrainConfig(policy="models/x.gguf").policy == "models/x.gguf"
    with pytest.raises(ValueError, match="one of \\['smollm2'\\] or a PATH.gguf file"):
        TrainConfig(policy="smollm3")


def test_a_gguf_policy_gives_the_env_its_tokenizer_and_chat_template(tiny_gguf, cache):
    config = with_model_tokenizer(TrainConfig(policy=str(tiny_gguf), env="DialogQA-Toy-v0"))
    assert config.env_args["chat_template"] is True and os.path.isdir(config.env_args["tokenizer"])
    env = gym.make(config.env, **config.env_args)
    policy = build_policy(config, env)
    assert isinstance(policy, HFPolicy) and policy.loaded_weights
    assert env.unwrapped.tokenizer.eos_id == env.unwrapped.tokenizer.hf.convert_tokens_to_ids("<|im_end|>")


# -- chat-templated envs --------------------------------------------------------------------------


def test_the_dialogue_is_written_in_the_chat_template(tiny_chat_model):
    env = gym.make("DialogQA-v0", tokenizer=str(tiny_chat_model), chat_template=True)
    hf = env.unwrapped.tokenizer.hf
    obs, info = env.reset(seed=3)
    shown = hf.decode([t for t in obs.tolist() if t < len(hf)])
    native = gym.make("DialogQA-v0")
    native_obs, _ = native.reset(seed=3)
    words = native.unwrapped.tokenizer
    ids = native_obs[native_obs != words.pad_id].tolist()
    sep, user, agent = ids.index(words.sep_id), ids.index(words.user_id), ids.index(words.agent_id)
    context, question = words.decode(ids[1:sep]), words.decode(ids[user + 1 : agent])
    expected = hf.apply_chat_template(
        [{"role": "user", "content": context}, {"role": "user", "content": question}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert shown == expected
    assert hf.convert_ids_to_tokens(env.unwrapped.tokenizer.eos_id) == "<|im_end|>"


def test_a_second_question_follows_the_answer_as_a_new_user_turn(tiny_chat_model):
    env = gym.make("DialogQA-v0", tokenizer=str(tiny_chat_model), chat_template=True, min_turns=2, max_turns=2)
    obs, info = env.reset(seed=4)
    hf = env.unwrapped.tokenizer.hf
    while not info["answer_done"]:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
    assert not terminated
    shown = hf.decode([t for t in obs.tolist() if t < len(hf)])
    # "...<|im_start|>assistant\nANSWER<|im_end|>\n<|im_start|>user\nQUESTION<|im_end|>\n<|im_start|>assistant\n"
    after_first = shown.split("<|im_start|>assistant\n")[1]
    answer, rest = after_first.split("<|im_end|>\n<|im_start|>user\n")
    question = rest.removesuffix("<|im_end|>\n")
    assert answer.strip() and answer == answer.strip() and "<|" not in answer
    assert question.endswith("?") and "<|" not in question
    assert shown.endswith("<|im_start|>assistant\n") and shown.count("<|im_start|>assistant\n") == 2


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
def test_the_oracle_scores_exactly_as_in_the_built_in_vocabulary_on_every_env(env_id, tiny_chat_model):
    chat = dict(tokenizer=str(tiny_chat_model), chat_template=True)
    oracle = dialog_gym.evaluate(dialog_gym.OracleAgent(), env_id, episodes=EPISODES, seed=1, **chat)
    native = dialog_gym.evaluate(dialog_gym.OracleAgent(), env_id, episodes=EPISODES, seed=1)
    for key in ("mean_return", "answer_accuracy", "success_rate"):
        assert oracle[key] == native[key], key
    random = dialog_gym.evaluate(dialog_gym.RandomAgent(0), env_id, episodes=EPISODES, seed=2, **chat)
    assert random["mean_return"] < oracle["mean_return"]


@pytest.mark.parametrize("env_id", ["DialogQA-v0", "CustomerService-v0"])
def test_chat_templated_envs_pass_the_gymnasium_and_sb3_checkers(env_id, tiny_chat_model):
    env = gym.make(env_id, tokenizer=str(tiny_chat_model), chat_template=True)
    check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env, warn=False)


def test_a_tokenizer_without_a_chat_template_is_refused_in_one_line(gpt2_like):
    with pytest.raises(ValueError, match="has no chat template") as error:
        gym.make("DialogQA-v0", tokenizer=gpt2_like, chat_template=True)
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="needs a Hugging Face tokenizer that has a chat template"):
        gym.make("DialogQA-v0", chat_template=True)
    with pytest.raises(ValueError, match="chat_template must be True or False"):
        gym.make("DialogQA-v0", chat_template="yes")


def test_without_chat_template_the_vocabulary_is_plain(tiny_chat_model):
    env = gym.make("DialogQA-Toy-v0", tokenizer=str(tiny_chat_model))
    obs, _ = env.reset(seed=0)
    hf = env.unwrapped.tokenizer.hf
    assert "<|im_start|>" not in hf.decode([t for t in obs.tolist() if t < len(hf)])
    assert np.all(obs[:1] == env.unwrapped.tokenizer.pad_id)
