"""The turn-level env as an OpenEnv environment: typed actions, observations and state.

OpenEnv (``openenv-core``) serves an ``Environment`` whose ``reset`` and ``step`` return pydantic
``Observation`` objects that carry ``reward`` and ``done``; clients send pydantic ``Action``
objects. ``DialogServerEnv`` is one turn-level ``DialogTurnEnv`` behind that interface, so an
OpenEnv client plays exactly the episodes that ``gym.make("Name-Turn-v0")`` plays with the same
seed. The observation holds what the agent may see: the dialogue, the score of the answer it just
gave (with the reference, now that it has answered), never the reference of a question still open.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from openenv.core.env_server import Action, Environment, Observation, State
from pydantic import Field

from dialog_gym.turn import DialogTurnEnv, make_turn_env, turn_id

__all__ = ["DialogAction", "DialogObservation", "DialogServerEnv", "DialogState"]


class DialogAction(Action):
    """One whole reply: text in the env's vocabulary, or token ids (EOS may end them)."""

    reply: str | list[int] = Field(description="The reply, as text or as a list of token ids")


class DialogObservation(Observation):
    """The dialogue after a reset or a reply, and how the reply was scored."""

    text: str = Field(description="The whole dialogue so far, markers such as <user> included")
    tokens: list[int] = Field(description="The token-level env's observation: the last max_len token ids, left-padded")
    turn: int = Field(description="Agent turns completed in this episode")
    terminated: bool = Field(default=False, description="The episode ended (the task is over)")
    truncated: bool = Field(default=False, description="The episode was cut (token or turn limit)")
    truncated_by: str = Field(default="", description="Which limit cut the episode, if one did")
    answer: str = Field(default="", description="The last reply, as the env read it")
    answer_reward: float | None = Field(default=None, description="The last reply's score (None after a reset)")
    answer_correct: bool | None = Field(
        default=None, description="Whether the last reply was right (None after a reset)"
    )
    reference: str | None = Field(default=None, description="The reference answer to the turn just answered")
    dialogue: dict[str, float | int | bool] = Field(
        default_factory=dict, description="The episode so far: return, answers, correct, success, ..."
    )


class DialogState(State):
    """The session's env and episode (OpenEnv's ``episode_id`` and ``step_count``, plus these)."""

    env_id: str = Field(description="The turn-level env id")
    seed: int | None = Field(default=None, description="The seed of the last reset")
    done: bool = Field(default=False, description="The episode is over; reset to play another")


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars as Python numbers (pydantic and JSON take only those)."""
    return value.item() if isinstance(value, np.generic) else value


class DialogServerEnv(Environment[DialogAction, DialogObservation, DialogState]):
    """One session's turn-level env of ``env_id`` (token-level or ``-Turn-`` id), built with ``env_kwargs``."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session builds its own env; none shares state

    def __init__(self, env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.env_id = env_id if "-Turn-v" in env_id else turn_id(env_id)
        self.env: DialogTurnEnv = make_turn_env(self.env_id, **(env_kwargs or {}))
        self._state = DialogState(env_id=self.env_id)
        self._started = False

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, index: int | None = None, **kwargs: Any
    ) -> DialogObservation:
        """A new episode: drawn with ``seed``, or episode ``index`` of the env's split (``ValueError`` if
        the split has no such episode)."""
        if index is not None and (isinstance(index, bool) or not isinstance(index, int) or index < 0):
            raise ValueError(f"index must be a non-negative integer (an episode of the split), got {index!r}")
        tokens_and_text, info = self.env.reset(seed=seed, options=None if index is None else {"index": index})
        self._state = DialogState(env_id=self.env_id, episode_id=episode_id, seed=seed)
        self._started = True
        return self._observation(tokens_and_text, info, reward=None, terminated=False, truncated=False)

    def step(self, action: DialogAction, timeout_s: float | None = None, **kwargs: Any) -> DialogObservation:
        """Type the reply; a bad reply raises ``gym.error.InvalidAction`` (one line) and changes nothing."""
        open_turn = self._started and not self._state.done
        reference = self.env.tokenizer.decode(self.env.expert_reply()) if open_turn else None
        observation, reward, terminated, truncated, info = self.env.step(action.reply)
        self._state.step_count += 1
        self._state.done = bool(terminated or truncated)
        out = self._observation(observation, info, reward=float(reward), terminated=terminated, truncated=truncated)
        out.reference = reference
        return out

    @property
    def started(self) -> bool:
        """Whether ``reset`` has been called (a step before it raises ``ResetNeeded``)."""
        return self._started

    @property
    def state(self) -> DialogState:
        return self._state

    def _observation(
        self, observation: dict[str, Any], info: dict[str, Any], reward: float | None, terminated: bool, truncated: bool
    ) -> DialogObservation:
        answered = reward is not None
        return DialogObservation(
            text=observation["text"],
            tokens=np.asarray(observation["tokens"]).tolist(),
            turn=int(info["turn"]),
            reward=reward,
            done=bool(terminated or truncated),
            terminated=bool(terminated),
            truncated=bool(truncated),
            truncated_by=str(info.get("truncated_by", "")),
            answer=str(info["answer"]) if answered else "",
            answer_reward=float(info["answer_reward"]) if answered else None,
            answer_correct=bool(info["answer_correct"]) if answered else None,
            dialogue={k: _plain(v) for k, v in info["dialogue"].items()},
        )
