"""TRL's ``GRPOTrainer`` on a dialog_gym env: the independent cross-check of our GRPO.

TRL sees the env the way its users see any task: a dataset of prompts and a reward function.

- ``word_tokenizer`` turns the env's built-in vocabulary into a ``PreTrainedTokenizerFast`` with
  the same ids (a word-level model from ``tokenizers``), so TRL's model reads what ours reads;
- ``prompt_dataset`` holds one row per episode of a split: the opening observation as text and the
  episode's index;
- ``EnvReward`` is TRL's reward function: it replays each completion token by token in the env (the
  episode its row names) and returns the env's return, counting the env steps that took;
- ``SuccessCurve`` scores the model with ``dialog_gym.evaluate`` after every generation batch, as
  our runs are scored, and stops TRL at an env-step budget.

The adapter serves envs whose episode is one answer (the toy task, ``DialogQA-v0`` with one
question): TRL's plain GRPO samples one completion per prompt, with no user turn in between.
``trl`` is an optional dependency (``pip install dialog-gym[trl]``).
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from transformers import PreTrainedTokenizerFast, TrainerCallback

import dialog_gym
from agents.agent import PolicyAgent
from agents.build import env_shape
from agents.hf_policy import HFPolicy, HFPolicyConfig
from dialog_gym.tokenizers import Tokenizer


def word_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """A Hugging Face tokenizer with ``tokenizer``'s tokens and ids, splitting text on whitespace."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit

    vocab = {tokenizer.id_to_token(i): i for i in range(tokenizer.vocab_size)}
    if len(vocab) != tokenizer.vocab_size:
        raise ValueError(f"the vocabulary has {tokenizer.vocab_size} ids but only {len(vocab)} distinct tokens")
    unknown = None if tokenizer.unk_id is None else tokenizer.id_to_token(tokenizer.unk_id)
    rust = RustTokenizer(WordLevel(vocab, unk_token=unknown))
    rust.pre_tokenizer = WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=rust,
        pad_token=tokenizer.id_to_token(tokenizer.pad_id),
        eos_token=tokenizer.id_to_token(tokenizer.eos_id),
        unk_token=unknown,
    )


def prompt_dataset(env_id: str, env_args: dict[str, Any], split: str = "train", limit: int = 4096):
    """A ``datasets.Dataset`` of the split's episodes (at most ``limit``): ``prompt`` (the opening
    observation as text) and ``index`` (the episode, for ``EnvReward``)."""
    from datasets import Dataset

    env = gym.make(env_id, split=split, **env_args)
    tokenizer = env.unwrapped.tokenizer
    hf_tokenizer = word_tokenizer(tokenizer)
    size = env.unwrapped.task.num_examples(split)
    rows: dict[str, list] = {"prompt": [], "index": []}
    for index in range(min(size or limit, limit)):
        observation, _ = env.reset(seed=index, options={"index": index})
        ids = observation[observation != tokenizer.pad_id].tolist()
        text = tokenizer.decode(ids)
        if hf_tokenizer(text)["input_ids"] != ids:
            raise ValueError(
                f"{env_id}'s opening of episode {index} does not survive a round trip through its tokens as text; "
                "the adapter needs a vocabulary whose tokens contain no whitespace"
            )
        rows["prompt"].append(text)
        rows["index"].append(index)
    env.close()
    return Dataset.from_dict(rows)


class EnvReward:
    """TRL's reward function: the env's return of each completion, replayed in the episode of its row."""

    __name__ = "env_reward"  # TRL names a reward function's logs by it

    def __init__(self, env_id: str, env_args: dict[str, Any], split: str = "train") -> None:
        self.env = gym.make(env_id, split=split, **env_args)
        self.env_steps = 0  # completion tokens the env has taken, all calls together

    def episode_return(self, index: int, completion: list[int]) -> float:
        """The return of typing ``completion`` in episode ``index``; tokens after the episode ends are not run."""
        self.env.reset(seed=index, options={"index": index})
        total = 0.0
        for token in completion:
            _, reward, terminated, truncated, _ = self.env.step(int(token))
            self.env_steps += 1
            total += float(reward)
            if terminated or truncated:
                return total
        raise ValueError(
            f"episode {index} did not end after the {len(completion)}-token completion; set max_completion_length "
            "to the env's max_answer_tokens, and use this adapter only on envs whose episode is one answer"
        )

    def __call__(self, prompts: list, completions: list, completion_ids: list[list[int]], index: list[int], **_):
        return [self.episode_return(i, ids) for i, ids in zip(index, completion_ids)]


class SuccessCurve(TrainerCallback):
    """After each generation batch (``updates_per_batch`` optimiser steps), the greedy policy's
    ``dialog_gym.evaluate`` scores against the env steps so far; stops training at ``budget``."""

    def __init__(
        self,
        reward: EnvReward,
        env_id: str,
        env_args: dict[str, Any],
        budget: int,
        updates_per_batch: int,
        every: int,
        episodes: int = 256,
        seed: int = 0,
    ) -> None:
        self.reward, self.env_id, self.env_args = reward, env_id, env_args
        self.budget, self.updates_per_batch, self.every = budget, updates_per_batch, every
        self.episodes, self.seed = episodes, seed
        self.points: list[tuple[int, float]] = []  # (env steps, greedy success)
        self.model: torch.nn.Module | None = None
        self._next, self._start, self._paused = 0, time.perf_counter(), 0.0

    @property
    def training_seconds(self) -> float:
        """Wall time since the callback was made, evaluations left out."""
        return time.perf_counter() - self._start - self._paused

    def success(self, model: torch.nn.Module, episodes: int | None = None) -> float:
        """Greedy success of ``model`` on the env's test episodes, through our evaluator."""
        paused = time.perf_counter()
        agent = PolicyAgent(env_policy(model, self.env_id, self.env_args), greedy=True)
        result = dialog_gym.evaluate(
            agent, self.env_id, episodes=episodes or self.episodes, seed=self.seed, **self.env_args
        )
        self._paused += time.perf_counter() - paused
        return result["success_rate"]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.points.append((0, self.success(model)))
        self._next = self.every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.updates_per_batch:
            return control
        if self.reward.env_steps >= self._next or self.reward.env_steps >= self.budget:
            self.points.append((self.reward.env_steps, self.success(model)))
            self._next += self.every
        if self.reward.env_steps >= self.budget:
            control.should_training_stop = True
        return control


def env_policy(model: torch.nn.Module, env_id: str, env_args: dict[str, Any]) -> HFPolicy:
    """``model`` (a causal LM over the env's ids) as our policy for ``env_id``: the env's window and
    action mask, so our evaluator scores it as it scores our own runs."""
    env = gym.make(env_id, **env_args)
    vocab, window, allowed = env_shape(env)
    config = HFPolicyConfig(vocab, env.unwrapped.tokenizer.pad_id, window)
    env.close()
    # The value head's initialisation draws from torch's global generator, which TRL samples with:
    # scoring the model must not change what it samples next.
    with torch.random.fork_rng(devices=[]):
        return HFPolicy(model, config, allowed.to(model.device))


def blocked_tokens(env_id: str, env_args: dict[str, Any]) -> list[list[int]]:
    """The ids the env never takes as an action, as ``generate``'s ``bad_words_ids``."""
    env = gym.make(env_id, **env_args)
    _, _, allowed = env_shape(env)
    env.close()
    return [[int(i)] for i in np.flatnonzero(~allowed.numpy())]
