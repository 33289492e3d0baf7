"""Env steps per second: a single env in a Python loop, Gymnasium's SyncVectorEnv and the native vector env.

Every configuration is timed in the same run and the native vector env is reported as a ratio
to SyncVectorEnv with the same number of envs, since absolute numbers move with the machine's
load. Actions are the oracle's (the reference answer, then EOS), so episodes end and reset as
often as they can: the slowest case for a vector env.

    python benchmarks/env_throughput.py            # the full table (about a minute)
    python benchmarks/env_throughput.py --quick    # fewer configurations, shorter runs
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import dialog_gym  # noqa: F401  (registers the ids)


class PlainToyEnv(gym.Env):
    """The toy task as a plain Python env (lists and ints, no numpy per step): a reference speed.

    It plays the same table as ``DialogQA-Toy-v0`` and returns its observation as a tuple, the
    cheapest a Python env can be; the registered env pays for numpy arrays and full infos.
    """

    def __init__(self) -> None:
        task = gym.make("DialogQA-Toy-v0").unwrapped.task
        self.questions, self.answers = task.questions.tolist(), task.answers.tolist()
        self.eos, self.agent, self.limit = task.tokenizer.eos_id, task.tokenizer.agent_id, task.answer_len + 1
        self.rng = np.random.default_rng(0)

    def reset(self, *, seed=None, options=None):
        self.k = int(self.rng.integers(len(self.questions)))
        self.tokens, self.answer = [*self.questions[self.k], self.agent], []
        return tuple(self.tokens), {"expert_action": self.answers[self.k][0]}

    def step(self, action):
        self.tokens.append(action)
        self.answer.append(action)
        target = self.answers[self.k] + [self.eos]
        done = action == self.eos or len(self.answer) >= self.limit
        reward = sum(a == b for a, b in zip(self.answer, target)) / len(target) if done else 0.0
        expert = target[min(len(self.answer), len(target) - 1)]
        return (
            tuple(self.tokens[-7:]),
            reward,
            action == self.eos,
            done and action != self.eos,
            {"expert_action": expert},
        )


def plain_env_steps_per_second(seconds: float) -> float:
    env = PlainToyEnv()
    obs, info = env.reset()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(1000):
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
            if terminated or truncated:
                obs, info = env.reset()
        steps += 1000
    return steps / (time.perf_counter() - start)


def single_env_steps_per_second(env_id: str, seconds: float, **kwargs) -> float:
    env = gym.make(env_id, **kwargs)
    obs, info = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(100):
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
            if terminated or truncated:
                obs, info = env.reset()
        steps += 100
    return steps / (time.perf_counter() - start)


def vector_env_steps_per_second(env_id: str, num_envs: int, mode: str, seconds: float, **kwargs) -> float:
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode=mode, **kwargs)
    obs, info = envs.reset(seed=0)
    obs, _, _, _, info = envs.step(info["expert_action"])  # warm up the first generation of episodes
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        obs, _, _, _, info = envs.step(info["expert_action"])
        steps += num_envs
    envs.close()
    return steps / (time.perf_counter() - start)


def answer_steps_per_second(num_envs: int, seconds: float, **kwargs) -> float:
    """Steps inside answers only: every row emits content tokens and never ends its answer."""
    envs = gym.make_vec("DialogQA-v0", num_envs=num_envs, max_answer_tokens=200, **kwargs)
    envs.reset(seed=0)
    token = np.full(num_envs, envs.unwrapped.tokenizer.token_to_id("the"))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds and steps < 150 * num_envs:
        envs.step(token)
        steps += num_envs
    return steps / (time.perf_counter() - start)


# The QA ids the targets are set for. (A SyncVectorEnv of 1024 Conversation-v0 envs would load
# the corpus 1024 times; the other ids step through the same kernel.)
THROUGHPUT_IDS = ("DialogQA-v0", "DialogQA-Toy-v0")


def run(quick: bool = False, seconds: float | None = None) -> str:
    """The two tables as markdown."""
    seconds = seconds or (0.5 if quick else 2.0)
    plain = plain_env_steps_per_second(seconds)
    rows = [("DialogQA-Toy-v0", "plain Python env (reference, not registered)", 1, plain, None)]
    for env_id in THROUGHPUT_IDS:
        rows.append((env_id, "single env, Python loop", 1, single_env_steps_per_second(env_id, seconds), None))
        for n in (64, 1024):
            sync = vector_env_steps_per_second(env_id, n, "sync", seconds)
            native = vector_env_steps_per_second(env_id, n, "vector_entry_point", seconds)
            rows.append((env_id, "SyncVectorEnv", n, sync, None))
            rows.append((env_id, "native vector env", n, native, native / sync))
    lines = [
        "| env | implementation | envs | env steps/s | native / Sync | native / plain Python |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for env_id, name, n, rate, ratio in rows:
        versus_plain = f"{rate / plain:.1f}x" if ratio is not None else ""
        lines.append(
            f"| {env_id} | {name} | {n} | {rate:,.0f} | {'' if ratio is None else f'{ratio:.1f}x'} | {versus_plain} |"
        )

    # What a step costs must not grow with the dialogue. Both worlds below play in the same
    # 300-token window; the larger one costs more per *episode* (its world is generated and
    # written once, at reset), so its answer steps are also timed with resets left out.
    lines += [
        "",
        "| DialogQA-v0 world (window 300 tokens) | context tokens | steps/s, oracle (1024 envs) | answer steps/s, no resets |",
        "|---|---:|---:|---:|",
    ]
    for label, kwargs in [
        ("1 person, 1 object, 4 events (default)", {}),
        ("6 people, 6 objects, 24 events", {"n_people": 6, "n_objects": 6, "n_events": 24}),
    ]:
        context = gym.make("DialogQA-v0", **kwargs).unwrapped.task.context_len
        rate = vector_env_steps_per_second("DialogQA-v0", 1024, "vector_entry_point", seconds, max_len=300, **kwargs)
        no_reset = answer_steps_per_second(1024, seconds, max_len=300, **kwargs)
        lines.append(f"| {label} | {context} | {rate:,.0f} | {no_reset:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter timing runs")
    parser.add_argument("--seconds", type=float, default=None, help="time per configuration (default 2, quick 0.5)")
    args = parser.parse_args()
    print(run(args.quick, args.seconds))


if __name__ == "__main__":
    main()
