"""The ``serve`` and ``ui`` commands, and a trained policy behind the server (the agent of ``dialog-gym ui``).

``PolicyReplies`` makes a token-level agent (``PolicyAgent``: observation window in, next token
out) answer a whole turn: it reads the window the token-level env would show after each token typed
so far (``DialogTurnEnv.window_after``), until EOS or the answer limit, so the reply is exactly what
the policy would type step by step in the token-level env. ``transcripts`` plays a run's test episodes with it for the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import torch
import tyro

from agents.agent import PolicyAgent
from agents.chat import ChatSession
from agents.command_line import EnvArgs, parse_env_args
from dialog_gym.turn import DialogTurnEnv

__all__ = ["PolicyReplies", "Serve", "Ui", "chat_factory", "serve", "transcripts"]


class PolicyReplies:
    """``agent(env)`` -> the token agent's reply to ``env``'s open turn, as token ids (EOS last if reached)."""

    def __init__(self, agent: PolicyAgent) -> None:
        self.agent = agent

    def __call__(self, env: DialogTurnEnv) -> list[int]:
        eos, reply = env.tokenizer.eos_id, []
        info = {"turn": np.array([env.turn])}
        while len(reply) < env.max_answer_tokens and (not reply or reply[-1] != eos):
            reply.append(int(self.agent(env.window_after(reply)[None], info)[0]))
        return reply


def transcripts(env_id: str, env_kwargs: dict[str, Any], agent: PolicyReplies, episodes: int) -> list[dict[str, Any]]:
    """The first ``episodes`` episodes of the env's split, played by ``agent``."""
    from dialog_gym.server import DialogServerEnv, play_transcript  # the serve extra

    env = DialogServerEnv(env_id, env_kwargs)
    return [play_transcript(env, agent, index) for index in range(episodes)]


def chat_factory(
    policy: torch.nn.Module, env_id: str, env_kwargs: dict[str, Any]
) -> Callable[[int | None, Callable[[str], None]], ChatSession] | None:
    """``(episode, write) -> ChatSession``: ``dialog-gym chat`` for the page, or None for an env whose
    user turns the task plays itself (the interactive envs: there the page's episodes are the chat)."""
    if not ChatSession.supports(gym.make(env_id, **env_kwargs)):
        return None

    def open_chat(episode: int | None, write: Callable[[str], None]) -> ChatSession:
        return ChatSession(policy, gym.make(env_id, **env_kwargs), write, episode, seed=0)

    return open_chat


def serve(app: Any, host: str, port: int) -> None:
    """Run ``app`` with uvicorn until interrupted."""
    import uvicorn

    print(f"serving on http://{host}:{port} (web page at /, OpenEnv WebSocket at /ws); Ctrl-C stops", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


@dataclass
class Serve:
    """Serve an env's turn-level view (one whole reply per step) over HTTP and WebSocket with openenv-core,
    with a web page at / where a person plays the agent's part. Needs the serve extra."""

    env: str = "DialogQA-v0"
    """Env id (token-level or -Turn- id)."""
    env_arg: EnvArgs = ()
    host: str = "127.0.0.1"
    """Address to listen on (0.0.0.0 serves other machines too)."""
    port: int = 8000
    """Port to listen on."""
    max_sessions: int = 64
    """Most sessions held at once, HTTP and WebSocket each."""
    idle_timeout: float = 600.0
    """Seconds after which an idle HTTP session may be closed to make room."""

    def run(self) -> None:
        from dialog_gym.server import create_dialog_app

        app = create_dialog_app(
            self.env, parse_env_args(self.env_arg), max_sessions=self.max_sessions, idle_timeout_s=self.idle_timeout
        )
        serve(app, self.host, self.port)


@dataclass
class Ui:
    """Chat with a trained policy on its env's test episodes in a web page (let it answer, or answer yourself),
    and browse the transcripts of its evaluation episodes with their rewards. Needs the serve extra."""

    run_dir: Annotated[Path, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """A training run directory."""
    host: str = "127.0.0.1"
    """Address to listen on."""
    port: int = 8000
    """Port to listen on."""
    transcripts: int = 20
    """Test episodes the policy plays (greedily) at startup for the page's transcripts."""
    max_sessions: int = 64
    """Most sessions held at once."""

    def run(self) -> None:
        from agents.build import load_trained_policy
        from dialog_gym.server import create_dialog_app

        if self.transcripts < 0:
            raise ValueError(f"--transcripts must be 0 or more, got {self.transcripts}")
        policy, config = load_trained_policy(self.run_dir)
        agent = PolicyReplies(PolicyAgent(policy, greedy=True))
        env_kwargs = {**config.env_args, "split": "test"}
        played = transcripts(config.env, env_kwargs, agent, self.transcripts)
        app = create_dialog_app(
            config.env,
            env_kwargs,
            max_sessions=self.max_sessions,
            agent=agent,
            transcripts=played,
            chat=chat_factory(policy, config.env, env_kwargs),
        )
        serve(app, self.host, self.port)
