"""The registered env ids: one table row per id, and the two entry points every id shares.

``gym.make(env_id, **kwargs)`` calls ``make_env(env_id, **kwargs)``: the keywords named by
``EnvOptions`` (split, reward, ...) configure the env, the others build the row's task (e.g.
``n_people``, ``vocab_size``, ``dataset``). Every env also takes ``tokenizer=``: a Hugging Face
tokenizer (or a local directory holding one) makes its vocabulary the action space, and with
``chat_template=True`` the dialogue is written in that tokenizer's chat template.
``gym.make_vec(env_id, num_envs=N, ...)`` calls ``make_vector_env`` the same way.

A new env is a task module (a class following ``dialog_gym.tasks.base.Task``) plus one row of
``ENVS``; ``import dialog_gym`` registers every row.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from dialog_gym.env import DialogEnv
from dialog_gym.hf_tokenizer import as_hf_tokenizer, is_hf_tokenizer
from dialog_gym.options import EnvOptions
from dialog_gym.tasks.arguments import check_flag
from dialog_gym.tasks.base import Task
from dialog_gym.tasks.conversation import ConversationTask
from dialog_gym.tasks.customer_service import CustomerServiceTask
from dialog_gym.tasks.dataset import JsonlTask
from dialog_gym.tasks.microworld import MicroWorldTask
from dialog_gym.tasks.retokenized import RetokenizedTask
from dialog_gym.tasks.toy import ToyLookupTask
from dialog_gym.tasks.tutor import TutorTask
from dialog_gym.tasks.twenty_questions import TwentyQuestionsTask
from dialog_gym.vector import DialogVectorEnv


def dialog_qa_task(dataset: str | None = None, tokenizer: str | None = None, **world: Any) -> Task:
    """The DialogQA task: generated micro-worlds (``world``: ``MicroWorldTask``'s arguments), or the
    episodes of a JSONL ``dataset`` read with ``tokenizer`` ("word", "char")."""
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


@dataclass(frozen=True)
class EnvEntry:
    """One registered env id."""

    id: str
    """The Gymnasium id, ``Name-vN``."""
    task: Callable[..., Task]
    """Builds the task from the keywords of ``gym.make`` that are not env options."""
    summary: str
    """One line saying what the env is, for listings."""
    doc: str
    """The env's own part of Gymnasium's env template (Description, Rewards, Episode End, Arguments);
    spaces, the starting state and the info keys are ``DialogEnv``'s."""
    task_kwargs_go_to: Callable[..., Any] | None = None
    """Where ``task`` passes its ``**kwargs``, so that their names are known (DialogQA-v0: MicroWorldTask)."""

    @property
    def task_parameters(self) -> tuple[str, ...]:
        """The keywords the task takes (``tokenizer`` and ``chat_template`` too: every env takes a Hugging
        Face tokenizer and can write its dialogue in that tokenizer's chat template)."""
        names = ["tokenizer", "chat_template"]
        for source in (self.task, self.task_kwargs_go_to):
            if source is not None:
                for parameter in inspect.signature(source).parameters.values():
                    if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                        names.append(parameter.name)
        return tuple(dict.fromkeys(names))


ENVS: tuple[EnvEntry, ...] = (
    EnvEntry(
        id="DialogQA-v0",
        task=dialog_qa_task,
        task_kwargs_go_to=MicroWorldTask,
        summary="conversational QA over generated micro-worlds, with follow-up questions (or your JSONL data)",
        doc="""\
## Description
Each episode draws a small world (people, places, objects) and states it as context ("mary is in
the kitchen . the ball is in the garden . mary went to the garden . mary picked up the ball ."); the
user then asks one to three questions in turn, follow-ups referring back with a pronoun ("and where
is she now ?"). Answers are one or two words ("the garden"). Test worlds never occur in training.
``dataset=PATH`` plays the dialogues of a JSONL file instead.

## Rewards
``"keyword"`` by default: +1 when the answer contains the reference keyword, else -1.

## Arguments
``n_people=1``, ``n_places=4``, ``n_objects=1``, ``n_events=4``, ``min_turns=1``, ``max_turns=3``;
or ``dataset`` (a JSONL file) with ``tokenizer`` ("word" or "char"); plus the env options.
""",
    ),
    EnvEntry(
        id="DialogQA-Toy-v0",
        task=ToyLookupTask,
        summary="a seeded question -> answer lookup over a small vocabulary; the optimum is known",
        doc="""\
## Description
An episode shows ``question <agent>``; each of ``n_questions`` questions of ``question_len``
tokens has a fixed answer of ``answer_len`` tokens from a table seeded by ``table_seed``. The
optimum is known (every answer right); both splits ask the same table.

## Rewards
``"match"`` by default: the fraction of the reference's positions (EOS included) answered right.

## Arguments
``vocab_size=16``, ``n_questions`` (32, or every question when fewer exist; 0: all), ``question_len=2``,
``answer_len=3``, ``table_seed=0``, plus the env options.
""",
    ),
    EnvEntry(
        id="Tutor-v0",
        task=TutorTask,
        summary="arithmetic and word problems at levels 1-5 (or a curriculum), answered digit by digit",
        doc="""\
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
``max_level=5``), plus the env options.
""",
    ),
    EnvEntry(
        id="Conversation-v0",
        task=ConversationTask,
        summary="the next utterance of real conversations from chatterbot-corpus, in English or Chinese",
        doc="""\
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
characters), plus the env options.
""",
    ),
    EnvEntry(
        id="TwentyQuestions-v0",
        task=TwentyQuestionsTask,
        summary="find the hidden animal with yes/no questions answered by the env, then guess",
        doc="""\
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
``n_candidates=8`` (2 to 24), ``max_questions=10``, ``question_cost=0.05``, plus the env
options. ``info["expert_action"]`` follows a scripted expert that halves the possible
animals with each question.
""",
    ),
    EnvEntry(
        id="CustomerService-v0",
        task=CustomerServiceTask,
        summary="book the table a simulated customer wants, asking for the details it has not given",
        doc="""\
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
``reveal=0.5``, ``max_turns=8``, ``turn_cost=0.05``, plus the env options.
``info["expert_action"]`` follows a scripted agent that asks for each missing slot in turn.
""",
    ),
)
ENTRIES = {entry.id: entry for entry in ENVS}


def make_env(env_id: str, **kwargs: Any) -> DialogEnv:
    """The env ``env_id`` (a row of ``ENVS``); the entry point ``gym.make`` calls for every id."""
    options, task = _build(env_id, kwargs)
    return DialogEnv(task, options)


def make_vector_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> DialogVectorEnv:
    """The native vector env of ``env_id``; the entry point ``gym.make_vec`` calls for every id."""
    kwargs.pop("max_episode_steps", None)  # gym.make_vec forwards the spec's (unset) step limit
    options, task = _build(env_id, kwargs)
    return DialogVectorEnv(task, num_envs, options)


def _build(env_id: str, kwargs: dict[str, Any]) -> tuple[EnvOptions, Task]:
    """Split ``gym.make``'s keywords into env options and task arguments, then build both."""
    if env_id not in ENTRIES:
        raise ValueError(f"unknown env id {env_id!r}; the registered ids are {list(ENTRIES)}")
    entry = ENTRIES[env_id]
    option_names, task_names = EnvOptions.names(), entry.task_parameters
    unknown = sorted(set(kwargs) - set(option_names) - set(task_names))
    if unknown:
        raise TypeError(
            f"{env_id} got unknown argument(s) {unknown}; its task takes {list(task_names)} and every env takes "
            f"{list(option_names)}"
        )
    options = EnvOptions(**{key: kwargs.pop(key) for key in option_names if key in kwargs})
    return options, _task(entry, kwargs)


def _task(entry: EnvEntry, task_args: dict[str, Any]) -> Task:
    """Build the task; a Hugging Face ``tokenizer=`` (object or local directory) re-writes it in that vocabulary,
    framed by the tokenizer's chat template with ``chat_template=True``."""
    tokenizer = task_args.pop("tokenizer", None)
    chat_template = check_flag("chat_template", task_args.pop("chat_template", False))
    if is_hf_tokenizer(tokenizer):
        return RetokenizedTask(entry.task(**task_args), as_hf_tokenizer(tokenizer, chat_template))
    if chat_template:
        raise ValueError(
            f"chat_template=True needs a Hugging Face tokenizer that has a chat template (tokenizer=DIR), got "
            f"tokenizer={tokenizer!r}"
        )
    if tokenizer is None:
        return entry.task(**task_args)
    if "tokenizer" not in inspect.signature(entry.task).parameters:
        raise ValueError(
            f"{entry.id} takes tokenizer= only as a Hugging Face tokenizer (an object or a local directory), "
            f"got {tokenizer!r}"
        )
    return entry.task(tokenizer=tokenizer, **task_args)
