"""dialog_gym: token-level Gymnasium environments for dialogue and question answering.

``import dialog_gym`` registers every env id, after which ``gym.make("DialogQA-v0")`` and
``gym.make_vec("DialogQA-v0", num_envs=N)`` (the native vector env) work.
"""

from gymnasium.envs.registration import register

from dialog_gym.env import DialogEnv
from dialog_gym.evaluation import OracleAgent, RandomAgent, evaluate
from dialog_gym.options import EnvOptions
from dialog_gym.references import REFERENCE_SCORES, REWARD_THRESHOLDS
from dialog_gym.rewards import Reward, register_reward_prefix
from dialog_gym.vector import DialogVectorEnv

__all__ = [
    "DialogEnv",
    "DialogVectorEnv",
    "EnvOptions",
    "OracleAgent",
    "RandomAgent",
    "Reward",
    "evaluate",
    "register_reward_prefix",
    "ENV_IDS",
    "ENV_SUMMARIES",
    "REFERENCE_SCORES",
]
__version__ = "0.1.0"

ENV_SUMMARIES = {
    "DialogQA-v0": "conversational QA over generated micro-worlds, with follow-up questions (or your JSONL data)",
    "DialogQA-Toy-v0": "a seeded question -> answer lookup over a small vocabulary; the optimum is known",
    "Tutor-v0": "arithmetic and word problems at levels 1-5 (or a curriculum), answered digit by digit",
    "Conversation-v0": "the next utterance of real conversations from chatterbot-corpus, in English or Chinese",
    "TwentyQuestions-v0": "find the hidden animal with yes/no questions answered by the env, then guess",
    "CustomerService-v0": "book the table a simulated customer wants, asking for the details it has not given",
}
ENV_IDS = tuple(ENV_SUMMARIES)

ENTRY_POINTS = {
    "DialogQA-v0": "dialog_qa",
    "DialogQA-Toy-v0": "dialog_qa_toy",
    "Tutor-v0": "tutor",
    "Conversation-v0": "conversation",
    "TwentyQuestions-v0": "twenty_questions",
    "CustomerService-v0": "customer_service",
}

for _env_id, _function in ENTRY_POINTS.items():
    register(
        id=_env_id,
        entry_point=f"dialog_gym.envs:{_function}",
        vector_entry_point=f"dialog_gym.envs:{_function}_vector",
        reward_threshold=REWARD_THRESHOLDS[_env_id],
    )
