"""Scoring a policy with its KV cache: the evaluator for large models (a pretrained LLM zero-shot).

``PolicyAgent`` re-reads every observation at every step, which a 135M-parameter model cannot
afford on a CPU. ``evaluate_policy`` plays episodes in waves instead: every row of a vector env
plays one episode, the model reads each opening once (without the left padding) and then only
what the env appends, and rows leave the cache as their episodes end. A second env, fed the same
actions, scores every answer by exact match as well (more envs: any other named rewards), so one
pass gives the answer accuracy under the env's reward and under ``reward="exact"``.

Wave ``w`` plays the episodes of ``envs.reset(seed=seed + w)``: the same episodes for every policy
given the same seed, batch and env arguments.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn

from agents.policy import real_tokens
from agents.rollout import appended_tokens

SUMMARY_KEYS = ("return", "success", "correct", "questions", "answers", "answer_tokens", "length")


@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    env_id: str,
    episodes: int = 100,
    seed: int = 0,
    split: str = "test",
    greedy: bool = True,
    batch: int = 32,
    device: str | torch.device = "cpu",
    rewards: tuple[str, ...] = ("exact",),
    **env_kwargs: Any,
) -> dict[str, float | None]:
    """The keys of ``dialog_gym.evaluate`` plus ``seconds`` and ``NAME_accuracy`` for each reward of
    ``rewards`` (None where it does not apply), over ``episodes`` episodes played ``batch`` at a time
    with greedy (or sampled) tokens."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    device = torch.device(device)
    policy.eval()
    generator = torch.Generator().manual_seed(seed)
    totals: dict[str, list[np.ndarray]] = {}
    correct: dict[str, int | None] = dict.fromkeys(rewards, 0)
    started = time.perf_counter()
    wave = 0
    while sum(len(v) for v in totals.get("return", [])) < episodes:
        n = min(batch, episodes - sum(len(v) for v in totals.get("return", [])))
        envs = gym.make_vec(env_id, num_envs=n, split=split, **env_kwargs)
        judges = {name: reward_env(env_id, n, split, env_kwargs, name) for name in rewards}
        stats, judged = _play(policy, envs, judges, seed + wave, greedy, generator, device)
        envs.close()
        for key in SUMMARY_KEYS:
            totals.setdefault(key, []).append(stats[key])
        for name, judge in judges.items():
            if judge is None:
                correct[name] = None
            else:
                judge.close()
                correct[name] += int(judged[name]["correct"].sum())
        wave += 1
    s = {key: np.concatenate(values) for key, values in totals.items()}
    questions = max(int(s["questions"].sum()), 1)
    return {
        "episodes": int(len(s["return"])),
        "mean_return": float(s["return"].mean()),
        "std_return": float(s["return"].std()),
        "success_rate": float(s["success"].mean()),
        "answer_accuracy": float(s["correct"].sum() / questions),
        **{f"{name}_accuracy": None if n is None else float(n / questions) for name, n in correct.items()},
        "mean_answer_tokens": float(s["answer_tokens"].sum() / max(int(s["answers"].sum()), 1)),
        "mean_length": float(s["length"].mean()),
        "seconds": time.perf_counter() - started,
    }


def reward_env(env_id: str, n: int, split: str, env_kwargs: dict[str, Any], reward: str) -> gym.vector.VectorEnv | None:
    """The vector env scoring answers by ``reward``, or None for a task that scores the agent's turns
    itself (an interactive one), where no other reward applies."""
    try:
        return gym.make_vec(env_id, num_envs=n, split=split, **{**env_kwargs, "reward": reward})
    except ValueError as error:
        if "scores the agent's turns itself" in str(error):
            return None
        raise


def exact_accuracy(
    agent: Any, env_id: str, episodes: int, seed: int, split: str, env_kwargs: dict[str, Any]
) -> float | None:
    """``dialog_gym.evaluate``'s answer accuracy of a built-in agent under exact match (None where it does
    not apply, as in ``reward_env``)."""
    import dialog_gym

    probe = reward_env(env_id, 1, split, env_kwargs, "exact")
    if probe is None:
        return None
    probe.close()
    kwargs = {**env_kwargs, "reward": "exact"}
    return dialog_gym.evaluate(agent, env_id, episodes=episodes, seed=seed, split=split, **kwargs)["answer_accuracy"]


def _play(policy, envs, judges: dict, seed: int, greedy: bool, generator: torch.Generator, device: torch.device):
    """One episode in every row of ``envs`` (and, with the same actions, of each judge env): the dialogue
    stats of ``envs`` and those of each judge."""
    n = envs.num_envs
    pad = policy.config.pad_id
    obs, _ = envs.reset(seed=seed)
    judges = {name: judge for name, judge in judges.items() if judge is not None}
    for judge in judges.values():
        judge.reset(seed=seed)
    tokens = torch.as_tensor(obs, device=device)
    valid = real_tokens(tokens, pad)
    first = int((~valid).all(0).sum())  # columns that are padding in every row
    length = valid.sum(1)
    logits, _, cache = policy.start(tokens[:, first:])
    live = np.arange(n)
    out: dict[str, np.ndarray] = {}
    judged: dict[str, dict[str, np.ndarray]] = {name: {} for name in judges}
    while len(live):
        if greedy:
            action = logits.argmax(-1).cpu()
        else:
            action = torch.multinomial(torch.softmax(logits.float(), -1).cpu(), 1, generator=generator).squeeze(1)
        actions = np.zeros(n, np.int64)
        actions[live] = action.numpy()
        obs, _, terminated, truncated, info = envs.step(actions)
        sources = [(out, info)] + [(judged[name], judge.step(actions)[4]) for name, judge in judges.items()]
        ended = (terminated | truncated)[live]
        for target, source in sources:
            rows = live[ended]
            for key in SUMMARY_KEYS:
                values = np.asarray(source["dialogue"][key])
                target.setdefault(key, np.zeros(n, values.dtype))[rows] = values[rows]
        keep = ~ended
        live = live[keep]
        if not len(live):
            break
        # What the env appended to the rows still playing: the action, and after an answer the next turn.
        new_obs = torch.as_tensor(obs[live], device=device)
        new_length = real_tokens(new_obs, pad).sum(1)
        kept = torch.as_tensor(keep.nonzero()[0], device=device)
        cache = cache.select(kept)
        chunk, chunk_valid = appended_tokens(new_obs, new_length - length[torch.as_tensor(live, device=device)])
        logits, _, cache = policy.extend(chunk, chunk_valid, cache)
        length[torch.as_tensor(live, device=device)] = new_length
    return out, judged
