"""A load test of ``dialog-gym serve`` on loopback: sessions held at once, steps/s, latency, no leaks.

    python -m benchmarks.serve_load [--quick] [--out DIR]

Starts ``dialog-gym serve --env CustomerService-v0`` as its own process on 127.0.0.1, then holds
``sessions`` sessions open at once from one client process (asyncio) and plays whole episodes in
every one of them, through OpenEnv's WebSocket client and through the HTTP session routes in turn.
Each episode is scripted beforehand with the in-process turn-level env (seed ``episode``, the
expert's replies with a wrong one at every third turn), so every observation and reward the
server returns is checked against the in-process episode of the same seed: a session that saw
another session's episode, or a stale one, counts as a leak. Bounded in requests and in time.

Each transport first plays a few untimed episodes (the server's first sessions fill its caches).
The baseline is the in-process turn-level env replaying the same scripts in this process. Both
sides count replies (steps) only, and both time the resets too. Latency is per step, from sending
the request to reading the answer. Client and server share the machine's cores.

Writes ``serve_load.json`` and ``.md`` into ``--out`` (see ``benchmarks/record.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import dialog_gym  # noqa: F401  (registers the envs)
from benchmarks import record

ENV_ID = "CustomerService-v0"
MAX_TURNS = 12  # CustomerService-v0's episodes are shorter; the script stops at the end either way


@dataclass
class Script:
    """One episode to play: its seed, the replies to send and what the server must answer."""

    seed: int
    replies: list[list[int]]
    texts: list[str]  # the dialogue after the reset, then after each reply
    rewards: list[float]


def script(seed: int) -> Script:
    """Episode ``seed`` played in process with the expert's replies, a wrong one at every third turn."""
    env = gym.make(ENV_ID.replace("-v0", "-Turn-v0"))
    observation, _ = env.reset(seed=seed)
    replies, texts, rewards = [], [observation["text"]], []
    for turn in range(MAX_TURNS):
        reply = env.unwrapped.expert_reply()
        if turn % 3 == 2:
            reply = reply[:-1] or [env.unwrapped.tokenizer.eos_id]
        observation, reward, terminated, truncated, _ = env.step(reply)
        replies.append(reply)
        texts.append(observation["text"])
        rewards.append(float(reward))
        if terminated or truncated:
            break
    return Script(seed, replies, texts, rewards)


def in_process_steps_per_second(scripts: list[Script]) -> float:
    """Replies per second of the in-process turn-level env replaying ``scripts`` (resets timed too)."""
    env = gym.make(ENV_ID.replace("-v0", "-Turn-v0"))
    steps, start = 0, time.perf_counter()
    for s in scripts:
        env.reset(seed=s.seed)
        for reply in s.replies:
            env.step(reply)
        steps += len(s.replies)
    return steps / (time.perf_counter() - start)


@dataclass
class Load:
    """What one transport's run saw."""

    latencies: list[float] = field(default_factory=list)
    episodes: int = 0
    leaks: int = 0
    errors: int = 0
    seconds: float = 0.0


class Budget:
    """Hands out episodes until the request or time bound is reached."""

    def __init__(self, scripts: list[Script], max_requests: int, max_seconds: float) -> None:
        self.scripts, self.max_requests, self.deadline = scripts, max_requests, time.monotonic() + max_seconds
        self.next, self.requests = 0, 0

    def take(self) -> Script | None:
        if self.next >= len(self.scripts) or self.requests >= self.max_requests or time.monotonic() > self.deadline:
            return None
        s = self.scripts[self.next]
        self.next += 1
        self.requests += len(s.replies) + 1
        return s


async def websocket_session(url: str, budget: Budget, load: Load) -> None:
    from dialog_gym.server import DialogAction, DialogEnvClient

    async with DialogEnvClient(base_url=url, message_timeout_s=120) as client:
        while (s := budget.take()) is not None:
            try:
                result = await client.reset(seed=s.seed)
                leaked = result.observation.text != s.texts[0]
                for reply, text, reward in zip(s.replies, s.texts[1:], s.rewards):
                    sent = time.perf_counter()
                    result = await client.step(DialogAction(reply=reply))
                    load.latencies.append(time.perf_counter() - sent)
                    leaked |= result.observation.text != text or result.reward != reward
            except RuntimeError:
                load.errors += 1
                continue
            load.episodes += 1
            load.leaks += int(leaked)


async def http_session(url: str, budget: Budget, load: Load, client: Any) -> None:
    while (s := budget.take()) is not None:
        opened = await client.post(f"{url}/sessions", json={"seed": s.seed})
        if opened.status_code != 200:
            load.errors += 1
            continue
        body = opened.json()
        session, leaked = body["session_id"], body["observation"]["text"] != s.texts[0]
        for reply, text, reward in zip(s.replies, s.texts[1:], s.rewards):
            sent = time.perf_counter()
            answer = await client.post(f"{url}/sessions/{session}/step", json={"action": {"reply": reply}})
            load.latencies.append(time.perf_counter() - sent)
            body = answer.json() if answer.status_code == 200 else None
            leaked |= body is None or body["observation"]["text"] != text or body["reward"] != reward
        await client.delete(f"{url}/sessions/{session}")
        load.episodes += 1
        load.leaks += int(leaked)


async def drive(transport: str, url: str, sessions: int, budget: Budget) -> Load:
    load = Load()
    start = time.perf_counter()
    if transport == "websocket":
        await asyncio.gather(*(websocket_session(url, budget, load) for _ in range(sessions)))
    else:
        import httpx

        limits = httpx.Limits(max_connections=sessions, max_keepalive_connections=sessions)
        async with httpx.AsyncClient(limits=limits, timeout=120) as client:
            await asyncio.gather(*(http_session(url, budget, load, client) for _ in range(sessions)))
    load.seconds = time.perf_counter() - start
    return load


@contextlib.contextmanager
def server(sessions: int):
    """``dialog-gym serve`` in its own process on a free loopback port; yields its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "agents.cli", "serve", "--env", ENV_ID, "--port", str(port)]
    command += ["--max-sessions", str(sessions)]
    log = tempfile.TemporaryFile("w+")  # a pipe nobody reads would fill up and stall the server
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import requests

        for _ in range(600):
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"the server exited: {log.read()}")
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(url + "/health", timeout=2).ok:
                    break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


# Per run: sessions held at once, episodes scripted, and the bounds on each transport's run.
FULL = {"sessions": 32, "episodes": 2000, "max_requests": 20_000, "max_seconds": 120.0}
QUICK = {"sessions": 8, "episodes": 80, "max_requests": 600, "max_seconds": 20.0}


def measure(quick: bool) -> dict[str, Any]:
    settings = QUICK if quick else FULL
    sessions, n_scripts = settings["sessions"], settings["episodes"]
    max_requests, max_seconds = settings["max_requests"], settings["max_seconds"]
    scripts = [script(seed) for seed in range(n_scripts)]
    warm_up = [script(seed) for seed in range(n_scripts, n_scripts + 2 * sessions)]
    baseline = in_process_steps_per_second(scripts[: min(len(scripts), 400)])
    rows = []
    with server(sessions) as url:
        for transport in ("websocket", "http"):  # untimed: the server's first sessions build its caches
            asyncio.run(drive(transport, url, sessions, Budget(warm_up, max_requests, max_seconds)))
        for transport in ("websocket", "http"):
            load = asyncio.run(drive(transport, url, sessions, Budget(scripts, max_requests, max_seconds)))
            steps = len(load.latencies)
            rows.append(
                {
                    "transport": transport,
                    "sessions": sessions,
                    "episodes": load.episodes,
                    "steps": steps,
                    "seconds": load.seconds,
                    "steps_per_second": steps / load.seconds,
                    "p50_ms": 1000 * float(np.percentile(load.latencies, 50)),
                    "p99_ms": 1000 * float(np.percentile(load.latencies, 99)),
                    "leaks": load.leaks,
                    "errors": load.errors,
                }
            )
    return {
        "env": ENV_ID,
        "max_requests": max_requests,
        "max_seconds": max_seconds,
        "cpu_cores": os.cpu_count(),
        "in_process_steps_per_second": baseline,
        "rows": rows,
    }


def table(data: dict[str, Any]) -> str:
    base = data["in_process_steps_per_second"]
    lines = [
        f"{data['env']} (turn level), loopback, client and server sharing {data['cpu_cores']} CPU cores; each run "
        f"bounded by {data['max_requests']:,} requests and {data['max_seconds']:.0f} s.",
        "",
        "| transport | sessions held at once | episodes | steps | steps/s | vs in-process | p50 ms | p99 ms | "
        "episodes leaked | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| in-process env (baseline) | 1 | | | {base:,.0f} | 1.000x | | | | |",
    ]
    names = {"websocket": "WebSocket (OpenEnv's client)", "http": "HTTP sessions"}
    for r in data["rows"]:
        lines.append(
            f"| {names[r['transport']]} | {r['sessions']} | {r['episodes']:,} | {r['steps']:,} | "
            f"{r['steps_per_second']:,.0f} | {r['steps_per_second'] / base:.3f}x | {r['p50_ms']:.1f} | "
            f"{r['p99_ms']:.1f} | {r['leaks']} | {r['errors']} |"
        )
    return "\n".join(lines)


def run(quick: bool = False, out: Path | None = None) -> str:
    """Measure, write ``out/serve_load.json`` and ``.md`` when ``out`` is given, and return the table."""
    start = time.perf_counter()
    data = measure(quick)
    markdown = table(data)
    if out is not None:
        record.write("serve_load", data, markdown, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return markdown


def main() -> None:
    parser = record.arguments(__doc__, quick="8 sessions, 80 episodes, 600 requests or 20 s per transport")
    args = parser.parse_args()
    print(run(args.quick, record.out_dir(args)))


if __name__ == "__main__":
    main()
