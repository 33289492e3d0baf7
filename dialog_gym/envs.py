"""Entry points of the registered env ids: build the task, then the single or the vector env.

Constructor arguments go to the task (e.g. ``n_people``, ``vocab_size``, ``dataset``) or to the
env (``ENV_ARGS``: split, reward, ...); ``gym.make`` and ``gym.make_vec`` pass them through. Every
env also takes ``tokenizer=``: a Hugging Face tokenizer (or a local directory holding one) makes its
vocabulary the action space.
"""

from __future__ import annotations

from typing import Any, Callable

from dialog_gym.env import DialogEnv
from dialog_gym.hf_tokenizer import as_hf_tokenizer, is_hf_tokenizer
from dialog_gym.tasks.base import Task
from dialog_gym.tasks.conversation import ConversationTask
from dialog_gym.tasks.customer_service import CustomerServiceTask
from dialog_gym.tasks.dataset import JsonlTask
from dialog_gym.tasks.microworld import MicroWorldTask
from dialog_gym.tasks.retokenized import RetokenizedTask
from dialog_gym.tasks.toy import ToyLookupTask
from dialog_gym.tasks.tutor import TutorTask
from dialog_gym.tasks.twenty_questions import TwentyQuestionsTask
from dialog_gym.tokenizers import Tokenizer
from dialog_gym.vector import DialogVectorEnv

ENV_ARGS = ("split", "reward", "shaping", "success_reward", "max_answer_tokens", "max_len", "demo_noise", "render_mode")


def dialog_qa_task(dataset: str | None = None, tokenizer: str | Tokenizer | None = None, **world: Any) -> Task:
    """The DialogQA task: generated micro-worlds, or the episodes of a JSONL ``dataset``."""
    if dataset is not None:
        if world:
            raise ValueError(f"{sorted(world)} configure generated worlds; they cannot be combined with dataset=")
        return JsonlTask(dataset, tokenizer="word" if tokenizer is None else tokenizer)
    if tokenizer is not None:
        raise ValueError(
            f"tokenizer= applies to dataset= files (got {tokenizer!r}); generated worlds use their own word "
            "vocabulary or a Hugging Face tokenizer (an object or a local directory)"
        )
    return MicroWorldTask(**world)


def _split_args(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    env_args = {key: kwargs.pop(key) for key in ENV_ARGS if key in kwargs}
    kwargs.pop("max_episode_steps", None)  # gym.make_vec forwards the spec's (unset) step limit
    return env_args, kwargs


def _task(make_task: Callable[..., Task], task_args: dict[str, Any]) -> Task:
    """Build the task; a Hugging Face ``tokenizer=`` (object or local directory) re-writes it in that vocabulary."""
    if not is_hf_tokenizer(task_args.get("tokenizer")):
        return make_task(**task_args)
    tokenizer = as_hf_tokenizer(task_args.pop("tokenizer"))
    return RetokenizedTask(make_task(**task_args), tokenizer)


def _env(make_task: Callable[..., Task], kwargs: dict[str, Any]) -> DialogEnv:
    env_args, task_args = _split_args(kwargs)
    return DialogEnv(_task(make_task, task_args), **env_args)


def _vector_env(make_task: Callable[..., Task], num_envs: int, kwargs: dict[str, Any]) -> DialogVectorEnv:
    env_args, task_args = _split_args(kwargs)
    return DialogVectorEnv(_task(make_task, task_args), num_envs, **env_args)


def dialog_qa(**kwargs: Any) -> DialogEnv:
    """``DialogQA-v0``: conversational QA over generated micro-worlds (or a JSONL dataset)."""
    return _env(dialog_qa_task, kwargs)


def dialog_qa_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``DialogQA-v0``."""
    return _vector_env(dialog_qa_task, num_envs, kwargs)


def dialog_qa_toy(**kwargs: Any) -> DialogEnv:
    """``DialogQA-Toy-v0``: a seeded question -> answer lookup over a small vocabulary."""
    return _env(ToyLookupTask, kwargs)


def dialog_qa_toy_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``DialogQA-Toy-v0``."""
    return _vector_env(ToyLookupTask, num_envs, kwargs)


def tutor(**kwargs: Any) -> DialogEnv:
    """``Tutor-v0``: arithmetic and word problems at a chosen level, character by character.

    ## Description
    A tutoring session of ``problems`` problems ("<user>27+45=<agent>"); the agent writes the
    answer's digits and EOS. Levels 1-5: one-digit sums; two-digit sums and differences; times
    tables; three-digit sums and differences and two-digit times one-digit; word problems.
    Test problems (by operation and operands) never occur in training.

    ## Rewards
    ``"digits"`` by default: digits right, aligned from the last, over the longer of answer and
    reference (1 exactly when the answer is right); ``reward="exact"`` for all or nothing.

    ## Arguments
    ``level=1``, ``problems=1``, ``curriculum=False`` (raise the level by one whenever
    ``curriculum_threshold=0.9`` of the last ``curriculum_window=256`` answers were right, up to
    ``max_level=5``), plus the common env arguments (``split``, ``reward``, ``max_len``, ...).
    Spaces, episode end and info are ``DialogEnv``'s.
    """
    return _env(TutorTask, kwargs)


def tutor_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``Tutor-v0``."""
    return _vector_env(TutorTask, num_envs, kwargs)


def conversation(**kwargs: Any) -> DialogEnv:
    """``Conversation-v0``: say the next utterance of a real conversation (English or Chinese).

    ## Description
    Conversations from chatterbot-corpus (BSD-3-Clause): the context names the category (and
    any earlier utterance), the user speaks, the agent must say the corpus's next utterance;
    up to ``max_turns`` agent turns per episode. Whole conversations are split train/test.

    ## Rewards
    ``"f1"`` by default (token F1 with the reference utterance); ``"keyword"``, ``"exact"`` or
    ``"model:DIR"`` (a learned reward model) on request.

    ## Arguments
    ``language="en"`` (word-level) or ``"zh"`` (character-level), ``categories`` (file names of
    the corpus, default all), ``max_turns=4``, ``max_utterance_tokens`` (24 words / 40
    characters), plus the common env arguments. Spaces, episode end and info are ``DialogEnv``'s.
    """
    return _env(ConversationTask, kwargs)


def conversation_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``Conversation-v0``."""
    return _vector_env(ConversationTask, num_envs, kwargs)


def twenty_questions(**kwargs: Any) -> DialogEnv:
    """``TwentyQuestions-v0``: find the hidden animal with yes/no questions, then guess.

    ## Description
    The context lists ``n_candidates`` animals; one is hidden. The agent asks "is it ATTRIBUTE ?"
    (furry, feathered, scaly, aquatic, flying, large, domestic, carnivorous, striped, nocturnal,
    fast) and the env answers "yes ." or "no ." from its knowledge table; "guess NAME" ends the
    game. Anything else gets "what ?". Test games use sets of animals never shown in training.

    ## Rewards
    +1 for the right guess, -1 for a wrong one, ``-question_cost`` for every other turn. The
    task scores turns itself: ``reward=`` cannot replace it.

    ## Episode End
    Terminated by a guess; truncated when ``max_questions`` questions have been asked without
    one (``info["truncated_by"] == "max_turns"``) or an utterance runs past its token limit.

    ## Arguments
    ``n_candidates=8`` (2 to 24), ``max_questions=10``, ``question_cost=0.05``, plus the common env
    arguments. ``info["expert_action"]`` follows a scripted expert that halves the possible
    animals with each question.
    """
    return _env(TwentyQuestionsTask, kwargs)


def twenty_questions_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``TwentyQuestions-v0``."""
    return _vector_env(TwentyQuestionsTask, num_envs, kwargs)


def customer_service(**kwargs: Any) -> DialogEnv:
    """``CustomerService-v0``: book the table a simulated customer wants, asking for what is missing.

    ## Description
    The customer's hidden goal has a day, a time, a place and a party size; its opening request
    states each with chance ``reveal`` ("hi , can i book a table for four on friday ."). The agent
    asks "which day ?", "what time ?", "where ?" or "how many people ?" and the customer answers
    in one of several phrasings; anything else gets "sorry ?". The agent books with
    "book DAY TIME PLACE PEOPLE". Test goals never occur in training.

    ## Rewards
    +1 for a booking that matches the goal, -1 for one that does not, ``-turn_cost`` for every
    other turn. The task scores turns itself: ``reward=`` cannot replace it.

    ## Episode End
    Terminated by a booking; truncated after ``max_turns`` turns without one
    (``info["truncated_by"] == "max_turns"``) or when an utterance runs past its token limit.

    ## Arguments
    ``reveal=0.5``, ``max_turns=8``, ``turn_cost=0.05``, plus the common env arguments.
    ``info["expert_action"]`` follows a scripted agent that asks for each missing slot in turn.
    """
    return _env(CustomerServiceTask, kwargs)


def customer_service_vector(num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector version of ``CustomerService-v0``."""
    return _vector_env(CustomerServiceTask, num_envs, kwargs)
