"""Stateful HTTP sessions: each holds its own env (or chat) behind a lock, up to a bounded number at once.

OpenEnv's own HTTP ``/reset`` and ``/step`` build a fresh env per request (its WebSocket keeps one
per connection), so a plain HTTP client or a web page could not hold an episode across requests.
``Sessions`` gives each ``POST /sessions`` an id and an env; a session idle for longer than
``idle_timeout_s`` is closed when room is needed, so abandoned browser tabs cannot fill the server.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["Session", "SessionNotFound", "Sessions", "SessionsFull"]

T = TypeVar("T")


class SessionNotFound(LookupError):
    """No open session has this id (never opened, closed, or closed for idling)."""


class SessionsFull(RuntimeError):
    """Every session slot is taken by a session that is still in use."""


@dataclass
class Session(Generic[T]):
    """What one client holds (an env, a chat); ``lock`` keeps its requests one at a time."""

    id: str
    item: T
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)


class Sessions(Generic[T]):
    """At most ``capacity`` open sessions, reached under ``/ROUTE/ID`` (``route`` names them in errors)."""

    def __init__(self, capacity: int, idle_timeout_s: float, route: str = "sessions") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"the session capacity must be a positive integer, got {capacity!r}")
        if not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive, got {idle_timeout_s!r}")
        self.capacity, self.idle_timeout_s, self.route = capacity, float(idle_timeout_s), route
        self._sessions: dict[str, Session[T]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def open(self, make: Callable[[], T]) -> Session[T]:
        """A new session holding ``make()``, or ``SessionsFull`` when every slot is in use."""
        with self._lock:
            if len(self._sessions) >= self.capacity:
                now = time.monotonic()
                idle = [s for s in self._sessions.values() if now - s.last_used > self.idle_timeout_s]
                for session in idle:
                    del self._sessions[session.id]
                if len(self._sessions) >= self.capacity:
                    raise SessionsFull(
                        f"all {self.capacity} sessions are in use; close one (DELETE /{self.route}/ID), wait "
                        f"{self.idle_timeout_s:g} s for an idle one to expire, or start the server with a larger "
                        "--max-sessions"
                    )
            session = Session(secrets.token_hex(8), make())
            self._sessions[session.id] = session
            return session

    def get(self, session_id: str) -> Session[T]:
        """The open session ``session_id``, marked as used now."""
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise SessionNotFound(
                    f"no open session {session_id!r}: open one with POST /{self.route} (sessions idle for "
                    f"{self.idle_timeout_s:g} s may be closed)"
                )
            session.last_used = time.monotonic()
            return session

    def close(self, session_id: str) -> None:
        """Close ``session_id`` (``SessionNotFound`` if it is not open)."""
        with self._lock:
            if self._sessions.pop(session_id, None) is None:
                raise SessionNotFound(f"no open session {session_id!r} to close")
