"""Transcripts: whole episodes played by an agent, turn by turn, for the web page to browse."""

from __future__ import annotations

from typing import Any

from dialog_gym.server.environment import DialogAction, DialogServerEnv

__all__ = ["play_transcript"]


def _new_text(before: str, after: str) -> str:
    """What a step added to the dialogue's text (all of it if the text was rewritten)."""
    return after[len(before) :] if after.startswith(before) else after


def play_transcript(env: DialogServerEnv, agent: Any, index: int) -> dict[str, Any]:
    """Episode ``index`` of ``env``'s split played by ``agent`` (a ``ReplyAgent``): the opening text, and
    for each turn the reply, its reward, whether it was right, the reference and the text that followed."""
    observation = env.reset(index=index)
    opening, turns = observation.text, []
    while not observation.done:
        before = observation.text
        observation = env.step(DialogAction(reply=agent(env.env)))
        turns.append(
            {
                "reply": observation.answer,
                "reward": observation.reward,
                "correct": observation.answer_correct,
                "reference": observation.reference,
                "text": _new_text(before, observation.text),
            }
        )
    summary = observation.dialogue
    return {
        "index": index,
        "opening": opening,
        "turns": turns,
        "return": float(summary["return"]),
        "success": bool(summary["success"]),
        "truncated_by": observation.truncated_by,
    }
