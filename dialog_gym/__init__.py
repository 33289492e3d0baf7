"""dialog_gym: token-level Gymnasium environments for dialogue and question answering.

``import dialog_gym`` registers every env id of ``dialog_gym.envs.ENVS``, after which
``gym.make("DialogQA-v0")`` and ``gym.make_vec("DialogQA-v0", num_envs=N)`` (the native vector
env) work.
"""

from gymnasium.envs.registration import register

from dialog_gym.env import DialogEnv
from dialog_gym.envs import ENVS
from dialog_gym.evaluation import OracleAgent, RandomAgent, evaluate
from dialog_gym.options import EnvOptions
from dialog_gym.references import REFERENCE_SCORES, REWARD_THRESHOLDS, check_references
from dialog_gym.rewards import Reward, register_reward_prefix
from dialog_gym.vector import DialogVectorEnv, group_seeds

__all__ = [
    "DialogEnv",
    "DialogVectorEnv",
    "EnvOptions",
    "OracleAgent",
    "RandomAgent",
    "Reward",
    "evaluate",
    "group_seeds",
    "register_reward_prefix",
    "ENV_IDS",
    "ENV_SUMMARIES",
    "REFERENCE_SCORES",
]
__version__ = "0.1.0"

ENV_IDS = tuple(entry.id for entry in ENVS)
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
