"""dialog-gym's tasks served over HTTP and WebSocket with openenv-core (``pip install dialog-gym[serve]``).

- ``environment``: ``DialogServerEnv``, the turn-level env as an OpenEnv ``Environment``, with its
  typed ``DialogAction``, ``DialogObservation`` and ``DialogState``;
- ``sessions``: stateful HTTP sessions, bounded in number;
- ``app``: ``create_dialog_app``, OpenEnv's FastAPI app plus the session routes and the web page;
- ``client``: ``DialogEnvClient``, OpenEnv's WebSocket client for it;
- ``transcripts``: whole episodes an agent played, for the page to browse.

``dialog-gym serve --env ID`` runs it; ``dialog-gym ui RUN_DIR`` runs it with a trained policy.
"""

try:
    import openenv.core  # noqa: F401  (the optional dependency, named in the error below)
except ImportError as error:
    raise ImportError("dialog_gym.server needs openenv-core: pip install 'dialog-gym[serve]'") from error

from dialog_gym.server.app import ReplyAgent, create_dialog_app
from dialog_gym.server.client import DialogEnvClient
from dialog_gym.server.environment import DialogAction, DialogObservation, DialogServerEnv, DialogState
from dialog_gym.server.transcripts import play_transcript

__all__ = [
    "DialogAction",
    "DialogEnvClient",
    "DialogObservation",
    "DialogServerEnv",
    "DialogState",
    "ReplyAgent",
    "create_dialog_app",
    "play_transcript",
]
