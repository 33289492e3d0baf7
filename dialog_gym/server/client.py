"""``DialogEnvClient``: OpenEnv's own WebSocket client, typed for a dialog-gym server.

    with DialogEnvClient(base_url="http://127.0.0.1:8000").sync() as env:
        result = env.reset(seed=0)
        result = env.step(DialogAction(reply="jeff"))
        result.observation.answer_correct, result.reward, result.done

Each connection is one session with its own env on the server.
"""

from __future__ import annotations

from typing import Any

from openenv.core import EnvClient
from openenv.core.client_types import StepResult

from dialog_gym.server.environment import DialogAction, DialogObservation, DialogState

__all__ = ["DialogEnvClient"]


class DialogEnvClient(EnvClient[DialogAction, DialogObservation, DialogState]):
    """An OpenEnv client of ``dialog-gym serve``: ``reset(seed=..., index=...)`` and ``step(DialogAction)``."""

    def _step_payload(self, action: DialogAction) -> dict[str, Any]:
        return action.model_dump(exclude={"metadata"})

    def _parse_result(self, payload: dict[str, Any]) -> StepResult[DialogObservation]:
        observation = DialogObservation(**payload["observation"], reward=payload.get("reward"), done=payload["done"])
        return StepResult(observation=observation, reward=payload.get("reward"), done=payload["done"])

    def _parse_state(self, payload: dict[str, Any]) -> DialogState:
        return DialogState(**payload)
