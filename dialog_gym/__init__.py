"""dialog_gym: token-level Gymnasium environments for dialogue and question answering.

``import dialog_gym`` registers every env id, after which ``gym.make("DialogQA-v0")`` and
``gym.make_vec("DialogQA-v0", num_envs=N)`` (the native vector env) work.
"""

from gymnasium.envs.registration import register

from dialog_gym.env import DialogEnv
from dialog_gym.evaluation import OracleAgent, RandomAgent, evaluate
from dialog_gym.references import REFERENCE_SCORES, REWARD_THRESHOLDS
from dialog_gym.vector import DialogVectorEnv

__all__ = [
    "DialogEnv", "DialogVectorEnv", "OracleAgent", "RandomAgent", "evaluate", "ENV_IDS", "ENV_SUMMARIES",
    "REFERENCE_SCORES",
]  # fmt: skip
__version__ = "0.1.0"

ENV_SUMMARIES = {
    "DialogQA-v0": "conversational QA over generated micro-worlds, with follow-up questions (or your JSONL data)",
    "DialogQA-Toy-v0": "a seeded question -> answer lookup over a small vocabulary; the optimum is known",
}
ENV_IDS = tuple(ENV_SUMMARIES)

register(
    id="DialogQA-v0",
    entry_point="dialog_gym.envs:dialog_qa",
    vector_entry_point="dialog_gym.envs:dialog_qa_vector",
    reward_threshold=REWARD_THRESHOLDS["DialogQA-v0"],
)
register(
    id="DialogQA-Toy-v0",
    entry_point="dialog_gym.envs:dialog_qa_toy",
    vector_entry_point="dialog_gym.envs:dialog_qa_toy_vector",
    reward_threshold=REWARD_THRESHOLDS["DialogQA-Toy-v0"],
)
