"""dialog_gym: token-level Gymnasium environments for dialogue and question answering.

``import dialog_gym`` registers every env id of ``dialog_gym.envs.ENVS``, after which
``gym.make("DialogQA-v0")`` and ``gym.make_vec("DialogQA-v0", num_envs=N)`` (the native vector
env) work, and the turn-level twin of each (``TURN_ENV_IDS``: ``gym.make("DialogQA-Turn-v0")``,
one whole reply per step, see ``dialog_gym.turn``).
"""

from gymnasium.envs.registration import register

from dialog_gym.env import DialogEnv
from dialog_gym.envs import ENVS
from dialog_gym.evaluation import OracleAgent, RandomAgent, evaluate
from dialog_gym.options import EnvOptions
from dialog_gym.references import REFERENCE_SCORES, REWARD_THRESHOLDS, check_references
from dialog_gym.rewards import Reward, register_reward_prefix
from dialog_gym.turn import DialogTurnEnv, turn_id
from dialog_gym.vector import DialogVectorEnv, group_seeds

__all__ = [
    "DialogEnv",
    "DialogTurnEnv",
    "DialogVectorEnv",
    "EnvOptions",
    "OracleAgent",
    "RandomAgent",
    "Reward",
    "evaluate",
    "group_seeds",
    "register_reward_prefix",
    "ENV_IDS",
    "TURN_ENV_IDS",
    "turn_id",
    "ENV_SUMMARIES",
    "REFERENCE_SCORES",
]
__version__ = "0.1.0"

ENV_IDS = tuple(entry.id for entry in ENVS)
TURN_ENV_IDS = tuple(turn_id(env_id) for env_id in ENV_IDS)
ENV_SUMMARIES = {entry.id: entry.summary for entry in ENVS}
check_references(ENV_IDS)

for _entry in ENVS:
    register(
        id=_entry.id,
        entry_point="dialog_gym.envs:make_env",
        vector_entry_point="dialog_gym.envs:make_vector_env",
        kwargs={"env_id": _entry.id},
        reward_threshold=REWARD_THRESHOLDS.get(_entry.id),
    )
    register(
        id=turn_id(_entry.id),
        entry_point="dialog_gym.turn:make_turn_env",
        vector_entry_point="dialog_gym.turn:make_turn_vector_env",
        kwargs={"env_id": turn_id(_entry.id)},
        reward_threshold=REWARD_THRESHOLDS.get(_entry.id),
    )
