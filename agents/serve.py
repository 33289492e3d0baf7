"""A trained policy behind the server: the agent of ``dialog-gym ui`` and the commands that start it.

``PolicyReplies`` makes a token-level agent (``PolicyAgent``: observation window in, next token
out) answer a whole turn: it types tokens into a copy of the observation window, as the env slides
it, until EOS or the answer limit, so the reply is exactly what the policy would type step by step
in the token-level env. ``transcripts`` plays a run's test episodes with it for the page.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.agent import PolicyAgent
from agents.chat import ChatSession
from dialog_gym.server import DialogServerEnv, play_transcript
from dialog_gym.turn import DialogTurnEnv

__all__ = ["PolicyReplies", "chat_factory", "serve", "transcripts"]


class PolicyReplies:
    """``agent(env)`` -> the token agent's reply to ``env``'s open turn, as token ids (EOS last if reached)."""

    def __init__(self, agent: PolicyAgent) -> None:
        self.agent = agent

    def __call__(self, env: DialogTurnEnv) -> list[int]:
        window = env.kernel.obs[0].copy()  # (L,) the token-level env's observation now
        eos, reply = env.tokenizer.eos_id, []
        info = {"turn": np.array([env.kernel.turn.item()])}
        while len(reply) < env.max_answer_tokens and (not reply or reply[-1] != eos):
            token = int(self.agent(window[None], info)[0])
            reply.append(token)
            window[:-1], window[-1] = window[1:].copy(), token
        return reply


def transcripts(env_id: str, env_kwargs: dict[str, Any], agent: PolicyReplies, episodes: int) -> list[dict[str, Any]]:
    """The first ``episodes`` episodes of the env's split, played by ``agent``."""
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
