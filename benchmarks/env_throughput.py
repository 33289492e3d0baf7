"""Env steps per second, each env next to a baseline of the same env measured in the same run.

What is counted, on every row alike: steps that advance an episode. The single-env loop's
``reset()`` calls and the vector envs' next-step autoreset steps (a finished row's next step only
restarts it and returns reward 0) take time but are not counted.

Baselines, since absolute numbers move with the machine's load:

* single env (``gym.make``, a Python loop): a plain-Python implementation of the toy task
  (``PlainToyEnv``), through the same Gymnasium wrappers and with the same observation and info;
* native vector env: Gymnasium's ``SyncVectorEnv`` over our single envs, same ids and sizes.

Two kinds of actions: the oracle's (the reference answer, then EOS) and uniformly random tokens
(drawn ahead of the timing). A random token costs the vector env more than an oracle token: the
oracle's rows all answer in step and finish on the same step, so the fixed cost of the steps on
which answers end and rows restart (scoring, writing the next episodes, a few dozen numpy calls
whatever the number of rows) is paid by one step in five; random answers end at different
times, so that cost falls on nearly every step. The kernel keeps it low by keeping each row's
next episodes generated ahead (one generation call per 16 episodes of a row, not one per step).

    python -m benchmarks.env_throughput            # the full table (a few minutes)
    python -m benchmarks.env_throughput --quick    # shorter runs, under a minute

``main`` also writes the table and the raw numbers to benchmarks/results/env_throughput.md and .json.
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

import dialog_gym  # noqa: F401  (registers the ids)

ACTION_KINDS = ("oracle", "random")
THROUGHPUT_IDS = ("DialogQA-Toy-v0", "DialogQA-v0")


class PlainToyEnv(gym.Env):
    """``DialogQA-Toy-v0`` in plain Python (lists and ints, one numpy array per step for the observation).

    It plays the same table with the same observation window, rewards and info keys as the
    registered env (checked by the tests), so the two rows differ only in how they are written.
    """

    def __init__(self) -> None:
        task = gym.make("DialogQA-Toy-v0").unwrapped.task
        tokenizer = task.tokenizer
        self.questions = [[*q, tokenizer.agent_id] for q in task.questions.tolist()]
        self.answers = task.answers.tolist()
        self.texts = [tokenizer.decode(a) for a in self.answers]
        self.eos, self.limit = tokenizer.eos_id, task.answer_len + 1
        self.window = task.question_len + 1 + self.limit
        self.observation_space = gym.spaces.MultiDiscrete(np.full(self.window, tokenizer.vocab_size), dtype=np.int64)
        self.action_space = gym.spaces.Discrete(tokenizer.vocab_size)
        mask = np.ones(tokenizer.vocab_size, np.int8)
        mask[[tokenizer.pad_id, tokenizer.agent_id]] = 0
        self.mask, self.decode, self.pad = mask, tokenizer.decode, tokenizer.pad_id

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None or not hasattr(self, "order"):
            self.order, self.played = self.np_random.integers(len(self.questions), size=1 << 16).tolist(), 0
        self.played += 1
        self.k = self.order[self.played % len(self.order)] if options is None else options["index"]
        self.tokens = [self.pad] * (self.window - len(self.questions[self.k])) + self.questions[self.k]
        self.answer, self.target = [], self.answers[self.k] + [self.eos]
        return np.array(self.tokens, np.int64), self._info(0.0)

    def step(self, action):
        action = int(action)
        if not 0 <= action < self.action_space.n:
            raise ValueError(f"action {action} is out of range")
        self.tokens = self.tokens[1:] + [action]
        self.answer.append(action)
        terminated = action == self.eos
        done = terminated or len(self.answer) >= self.limit
        reward = 0.0
        if done:  # the "match" reward: the fraction of the reference's tokens and EOS in place
            reward = sum(a == b for a, b in zip(self.answer, self.target)) / len(self.target)
        info = self._info(reward, done, terminated)
        return np.array(self.tokens, np.int64), reward, terminated, done and not terminated, info

    def _info(self, reward: float, done: bool = False, terminated: bool = False) -> dict[str, Any]:
        length = len(self.answer)
        spoken = length - terminated  # EOS not counted
        return {
            "action_mask": self.mask.copy(),
            "expert_action": self.target[min(length, len(self.target) - 1)],
            "turn": 0,
            "reference": self.texts[self.k],
            "answer": self.decode(self.answer, skip_special=True) if done else "",
            "answer_done": done,
            "answer_reward": reward,
            "answer_correct": done and reward >= 1.0,
            "episode_done": done,
            "truncated_by": "max_answer_tokens" if done and not terminated else "",
            "dialogue": {
                "return": reward,
                "length": length,
                "answers": int(done),
                "correct": int(done and reward >= 1.0),
                "questions": 1,
                "success": done and reward >= 1.0,
                "answer_tokens": spoken if done else 0,
            },
        }


def plain_toy_env() -> gym.Env:
    """``PlainToyEnv`` behind the wrappers ``gym.make`` puts around a registered env."""
    return gym.wrappers.OrderEnforcing(gym.wrappers.PassiveEnvChecker(PlainToyEnv()))


def single_env_steps_per_second(env: gym.Env, kind: str, seconds: float) -> float:
    """Steps that advance an episode per second in a Python loop; the ``reset()`` calls are timed, not counted."""
    tokens = np.random.default_rng(0).integers(env.action_space.n, size=4096).tolist()
    obs, info = env.reset(seed=0)
    steps, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        for i in range(1024):
            obs, reward, terminated, truncated, info = env.step(
                info["expert_action"] if kind == "oracle" else tokens[i]
            )
            if terminated or truncated:
                obs, info = env.reset()
        steps += 1024
        tokens = tokens[1024:] + tokens[:1024]
    return steps / (time.process_time() - start)


def vector_env_steps_per_second(envs: gym.vector.VectorEnv, kind: str, seconds: float) -> float:
    """Steps that advance an episode per second; a row's autoreset step is timed, not counted."""
    n = envs.num_envs
    tokens = np.random.default_rng(0).integers(envs.single_action_space.n, size=(64, n))
    obs, info = envs.reset(seed=0)
    obs, _, terminated, truncated, info = envs.step(info["expert_action"])  # the first generation of episodes
    restarting = terminated | truncated
    steps, calls, start = 0, 0, time.process_time()
    while time.process_time() - start < seconds:
        actions = info["expert_action"] if kind == "oracle" else tokens[calls % 64]
        obs, _, terminated, truncated, info = envs.step(actions)
        steps += n - int(restarting.sum())
        restarting = terminated | truncated
        calls += 1
    return steps / (time.process_time() - start)


def measure(quick: bool = False, seconds: float | None = None) -> list[dict[str, Any]]:
    """One record per (env, implementation, envs, actions): steps/s and the baseline it is compared with."""
    seconds = seconds or (0.3 if quick else 2.0)
    records = []
    for kind in ACTION_KINDS:
        plain = single_env_steps_per_second(plain_toy_env(), kind, seconds)
        records.append(_record("DialogQA-Toy-v0", "plain Python env (baseline)", 1, kind, plain, None, None))
        for env_id in THROUGHPUT_IDS:
            rate = single_env_steps_per_second(gym.make(env_id), kind, seconds)
            baseline = ("plain Python env", plain) if env_id == "DialogQA-Toy-v0" else (None, None)
            records.append(_record(env_id, "single env, Python loop", 1, kind, rate, *baseline))
    for env_id in THROUGHPUT_IDS:
        for n in (64, 1024):
            sync_envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
            native_envs = gym.make_vec(env_id, num_envs=n)
            for kind in ACTION_KINDS:
                sync = vector_env_steps_per_second(sync_envs, kind, seconds)
                native = vector_env_steps_per_second(native_envs, kind, seconds)
                records.append(_record(env_id, "SyncVectorEnv (baseline)", n, kind, sync, None, None))
                records.append(_record(env_id, "native vector env", n, kind, native, "SyncVectorEnv", sync))
            sync_envs.close()
    return records


def _record(env_id, implementation, n, kind, rate, baseline, baseline_rate) -> dict[str, Any]:
    return {
        "env": env_id,
        "implementation": implementation,
        "envs": n,
        "actions": kind,
        "steps_per_second": round(rate),
        "baseline": baseline,
        "baseline_steps_per_second": None if baseline_rate is None else round(baseline_rate),
        "ratio": None if baseline_rate is None else round(rate / baseline_rate, 2),
    }


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| env | implementation | envs | actions | env steps/s | baseline | vs baseline |",
        "|---|---|---:|---|---:|---|---:|",
    ]
    for r in records:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {r['env']} | {r['implementation']} | {r['envs']} | {r['actions']} | {r['steps_per_second']:,} "
            f"| {r['baseline'] or ''} | {ratio} |"
        )
    return "\n".join(lines)


def run(quick: bool = False, seconds: float | None = None) -> str:
    """The table as markdown."""
    return table(measure(quick, seconds))


def main() -> None:
    from benchmarks import record

    parser = record.arguments(__doc__, quick="shorter timing runs")
    parser.add_argument("--seconds", type=float, default=None, help="time per configuration (default 2, quick 0.3)")
    args = parser.parse_args()
    start = time.perf_counter()
    records = measure(args.quick, args.seconds)
    text = table(records)
    out = record.out_dir(args)
    record.write(
        "env_throughput", {"rows": records}, text, out, quick=args.quick, wall_seconds=time.perf_counter() - start
    )
    print(text)


if __name__ == "__main__":
    main()
