"""The server app: OpenEnv's routes for the turn-level env, stateful HTTP sessions, and a web page.

``create_dialog_app(env_id)`` is openenv-core's FastAPI app (``/reset``, ``/step``, ``/state``,
``/schema``, ``/health``, ``/ws`` for its WebSocket client, where each connection is a session)
with these routes added:

- ``POST /sessions`` (body ``{"seed": s}`` or ``{"index": i}``, both optional) opens a session, resets
  its env and returns ``{"session_id", "observation", "reward", "done"}``;
- ``POST /sessions/{id}/reset``, ``POST /sessions/{id}/step`` (body ``{"action": {"reply": ...}}``),
  ``GET /sessions/{id}/state``, ``DELETE /sessions/{id}``;
- ``POST /sessions/{id}/agent``: the server's agent's reply to the open turn (without sending it);
- ``POST /chats`` (body ``{"episode": i}``) and ``POST /chats/{id}`` (body ``{"line": "..."}``): a free
  chat in which the person asks their own questions about a test episode (``dialog-gym chat`` in
  the page), when the server has a chat to offer;
- ``GET /transcripts``: episodes the agent played (``dialog-gym ui RUN_DIR`` fills them);
- ``GET /``: the web page (``page.html``), which uses only the routes above.

Every refusal is a 4xx with one line in ``detail``: 400 malformed JSON, 404 unknown session, 409 a
step after the end (or before a reset), 422 a bad reply or field, 429 no session free. One session's
bad request never touches another's env.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import gymnasium as gym
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from openenv.core.env_server import create_app
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocketDisconnect

from dialog_gym.server.environment import DialogAction, DialogObservation, DialogServerEnv
from dialog_gym.server.sessions import SessionNotFound, Sessions, SessionsFull
from dialog_gym.turn import DialogTurnEnv

__all__ = ["ChatFactory", "LineChat", "ReplyAgent", "create_dialog_app"]


class ReplyAgent(Protocol):
    """Whatever answers for the agent on the web page: the reply to ``env``'s open turn."""

    def __call__(self, env: DialogTurnEnv) -> str | list[int]: ...


class LineChat(Protocol):
    """A chat that answers each line a person types, writing its output lines (``agents.chat.ChatSession``)."""

    def handle(self, line: str) -> bool:
        """Act on one line; False when the chat is over."""
        ...


ChatFactory = Callable[[int | None, Callable[[str], None]], LineChat]
"""``(episode, write) -> chat`` about test episode ``episode`` (None: any), writing its lines with ``write``."""


@dataclass
class _Chat:
    chat: LineChat
    lines: list[str]  # written since the last request

    def drain(self) -> list[str]:
        lines, self.lines[:] = list(self.lines), []
        return lines


class ChatOpen(BaseModel):
    model_config = ConfigDict(extra="forbid")
    episode: int | None = Field(default=None, ge=0)


class ChatLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line: str = Field(max_length=2000)


class ResetBody(BaseModel):
    """How a session's episode is chosen: drawn with ``seed``, or episode ``index`` of the split."""

    model_config = ConfigDict(extra="forbid")
    seed: int | None = Field(default=None, ge=0)
    index: int | None = Field(default=None, ge=0)


class StepBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: DialogAction


class _QuietDisconnects:
    """ASGI middleware that drops ``WebSocketDisconnect`` at the end of a WebSocket session: OpenEnv's
    handler closes the socket after the client has already closed it, which raises that instead of
    the ``RuntimeError`` it expects, and uvicorn would log a traceback for every session that ends."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await self.app(scope, receive, send)
        except WebSocketDisconnect:
            if scope["type"] != "websocket":
                raise


def _response(observation: DialogObservation, **extra: Any) -> dict[str, Any]:
    """OpenEnv's reset/step response: the observation's fields, with ``reward`` and ``done`` beside them."""
    fields = observation.model_dump(exclude={"reward", "done", "metadata"})
    return {**extra, "observation": fields, "reward": observation.reward, "done": observation.done}


def _one_line(errors: list[dict[str, Any]]) -> str:
    """Pydantic's list of errors as one line: ``body.action.reply: Input should be a valid string; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', e)}" for e in errors)


def _install_error_handlers(app: FastAPI) -> None:
    def refuse(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message.splitlines()[0] if message else ""}, status_code=status)

    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = list(error.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            where = next(e for e in errors if e.get("type") == "json_invalid")
            return refuse(400, f"malformed JSON: {where.get('ctx', {}).get('error', 'invalid')}; send a JSON object")
        return refuse(422, f"invalid request: {_one_line(errors)}")

    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail
        text = _one_line(detail) if isinstance(detail, list) else str(detail)
        return refuse(error.status_code, text)

    handlers: dict[type[Exception], Any] = {
        RequestValidationError: invalid_request,
        HTTPException: http_error,
        gym.error.InvalidAction: lambda request, error: refuse(422, str(error)),
        ValueError: lambda request, error: refuse(422, str(error)),  # a reset option out of range
        gym.error.ResetNeeded: lambda request, error: refuse(409, str(error)),
        SessionNotFound: lambda request, error: refuse(404, str(error)),
        SessionsFull: lambda request, error: refuse(429, str(error)),
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)


def create_dialog_app(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    *,
    max_sessions: int = 64,
    idle_timeout_s: float = 600.0,
    agent: ReplyAgent | None = None,
    transcripts: list[dict[str, Any]] | None = None,
    chat: ChatFactory | None = None,
) -> FastAPI:
    """The server of ``env_id``'s turn-level env, built with ``env_kwargs``, holding at most
    ``max_sessions`` HTTP sessions and as many WebSocket sessions at once."""
    env_kwargs = dict(env_kwargs or {})
    probe = DialogServerEnv(env_id, env_kwargs)  # a bad id or argument fails here, not at the first request

    def make_env() -> DialogServerEnv:
        return DialogServerEnv(env_id, env_kwargs)

    app = create_app(make_env, DialogAction, DialogObservation, env_name=probe.env_id, max_concurrent_envs=max_sessions)
    _install_error_handlers(app)
    app.add_middleware(_QuietDisconnects)
    sessions: Sessions[DialogServerEnv] = Sessions(max_sessions, idle_timeout_s)
    chats: Sessions[_Chat] = Sessions(max_sessions, idle_timeout_s, route="chats")
    app.state.sessions = sessions
    page = resources.files("dialog_gym.server").joinpath("page.html").read_text(encoding="utf-8")
    info = {
        "env_id": probe.env_id,
        "env_kwargs": env_kwargs,
        "agent": agent is not None,
        "max_answer_tokens": probe.env.max_answer_tokens,
        "transcripts": len(transcripts or []),
        "chat": chat is not None,
    }

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def web_page() -> str:
        return page

    @app.get("/info")
    def server_info() -> dict[str, Any]:
        return info

    @app.post("/sessions")
    def open_session(body: ResetBody | None = None) -> dict[str, Any]:
        session = sessions.open(make_env)
        try:
            with session.lock:
                observation = session.item.reset(**(body or ResetBody()).model_dump())
        except BaseException:
            sessions.close(session.id)
            raise
        return _response(observation, session_id=session.id)

    @app.post("/sessions/{session_id}/reset")
    def reset_session(session_id: str, body: ResetBody | None = None) -> dict[str, Any]:
        session = sessions.get(session_id)
        with session.lock:
            return _response(session.item.reset(**(body or ResetBody()).model_dump()))

    @app.post("/sessions/{session_id}/step")
    def step_session(session_id: str, body: StepBody) -> dict[str, Any]:
        session = sessions.get(session_id)
        with session.lock:
            return _response(session.item.step(body.action))

    @app.post("/sessions/{session_id}/agent")
    def agent_reply(session_id: str) -> dict[str, Any]:
        session = sessions.get(session_id)
        if agent is None:
            raise HTTPException(
                404, "this server has no agent: start it with dialog-gym ui RUN_DIR to chat with a policy"
            )
        with session.lock:
            env = session.item.env
            if not session.item.started or session.item.state.done:
                raise gym.error.ResetNeeded("the episode is over; reset the session for a new one")
            reply = agent(env)
            ids = env.tokenizer.encode(reply) if isinstance(reply, str) else [int(i) for i in reply]
            return {"reply": env.tokenizer.decode([i for i in ids if i != env.tokenizer.eos_id]), "ids": ids}

    @app.get("/sessions/{session_id}/state")
    def session_state(session_id: str) -> dict[str, Any]:
        session = sessions.get(session_id)
        with session.lock:
            return session.item.state.model_dump()

    @app.delete("/sessions/{session_id}")
    def close_session(session_id: str) -> dict[str, Any]:
        sessions.close(session_id)
        return {"closed": session_id}

    @app.post("/chats")
    def open_chat(body: ChatOpen | None = None) -> dict[str, Any]:
        if chat is None:
            raise HTTPException(
                404, "this server has no chat: start it with dialog-gym ui RUN_DIR to ask a policy questions"
            )
        lines: list[str] = []
        held = _Chat(chat((body or ChatOpen()).episode, lines.append), lines)
        session = chats.open(lambda: held)
        return {"chat_id": session.id, "lines": held.drain()}

    @app.post("/chats/{chat_id}")
    def chat_line(chat_id: str, body: ChatLine) -> dict[str, Any]:
        session = chats.get(chat_id)
        with session.lock:
            going = session.item.chat.handle(body.line)
            lines = session.item.drain()
        if not going:
            chats.close(chat_id)
        return {"lines": lines, "open": going}

    @app.delete("/chats/{chat_id}")
    def close_chat(chat_id: str) -> dict[str, Any]:
        chats.close(chat_id)
        return {"closed": chat_id}

    @app.get("/transcripts")
    def list_transcripts() -> list[dict[str, Any]]:
        return transcripts or []

    return app
