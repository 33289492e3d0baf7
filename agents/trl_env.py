"""TRL's ``GRPOTrainer`` on a multi-turn dialog_gym env, through its ``environment_factory``.

TRL (>= 1.16) plays an environment as tools: it calls ``reset(**row)`` once per rollout and
appends the returned text to the prompt's last user message, exposes every other public method
as a tool (its schema read from the type hints and the Google-style docstring), runs the tool
calls it parses out of each generated segment, appends the results as ``tool`` messages and
generates again, until a segment holds no tool call. ``get_reward()`` scores a finished rollout.

- ``DialogToolEnv`` holds one turn-level env (``Name-Turn-vN``). Its one tool, ``reply(text)``,
  sends a whole reply and returns the user's next turn; ``get_reward`` is the episode's return;
- ``chat_tokenizer`` is ``agents.trl_grpo.word_tokenizer`` plus the two things TRL's tool loop
  needs: a chat template that renders a call to ``reply`` as the reply's words and ``<eos>``, and a
  ``response_template`` that parses the words between ``<agent>`` and ``<eos>`` back into that
  call. The rendered conversation is then token for token the env's own dialogue, so the
  model TRL trains reads what ``agents.trl_grpo.env_policy`` shows it when ``dialog_gym.evaluate``
  scores it;
- ``episode_dataset`` names one episode per row, so rollouts are deterministic and the
  ``num_generations`` completions of a group play the same episode;
- ``grpo_settings`` are the ``GRPOConfig`` fields the env fixes.

A segment parses as a call only when the text before it ends in ``<agent>``: the user's turn
ends so, while the end of an episode (the env writes nothing after the last reply) and a
refused reply do not, so TRL's next segment holds no call and the rollout stops there. TRL
always generates that one segment more after a tool result; the env never sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from transformers import PreTrainedTokenizerFast

from agents.trl_grpo import blocked_tokens, word_tokenizer
from dialog_gym.tokenizers import Tokenizer
from dialog_gym.turn import turn_id

if TYPE_CHECKING:
    from datasets import Dataset

REPLY_TOOL = "reply"
# A call to ``reply`` is written as the bare reply, as the env's dialogue writes an agent turn.
# Any other call is written out with its name and argument names: TRL's check that a template
# renders tool calls (``supports_tool_calling``) asks for both.
CHAT_TEMPLATE = """\
{%- set reply_tool = 'REPLY_TOOL' -%}
{%- for message in messages -%}
{%- if message.role == 'assistant' -%}
{%- if message.content %} {{ message.content }}{% endif -%}
{%- for call in message.tool_calls or [] -%}
{%- set function = call.function if call.function is defined else call -%}
{%- if function.name != reply_tool %} {{ function.name }}{% endif -%}
{%- for key, value in (function.arguments or {}).items() -%}
{%- if function.name != reply_tool or key != 'text' %} {{ key }}{% endif %} {{ value }}
{%- endfor -%}
{%- endfor %} {{ eos_token }}
{%- else %} {{ message.content }}
{%- endif -%}
{%- endfor -%}
""".replace("REPLY_TOOL", REPLY_TOOL)


def response_template(agent: str, eos: str) -> dict[str, Any]:
    """The ``transformers`` response template that reads ``agent WORDS eos`` as ``reply(text=WORDS)``.

    The parser starts after the prompt's last ``eos`` and drops text outside a call, so the user's
    turn, an episode's end and a refused reply never parse as calls.
    """
    call = {"type": "function", "function": {"name": REPLY_TOOL, "arguments": {"text": "{content}"}}}
    return {
        "defaults": {"role": "assistant"},
        "start_anchor": eos,
        "fields": {
            "tool_calls": {"open": agent, "close": eos, "repeats": True, "content": "text", "transform": call},
        },
    }


def chat_tokenizer(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    """``word_tokenizer(tokenizer)`` with the chat and response templates of TRL's tool loop."""
    hf = word_tokenizer(tokenizer)
    hf.chat_template = CHAT_TEMPLATE
    hf.response_template = response_template(tokenizer.id_to_token(tokenizer.agent_id), hf.eos_token)
    return hf


class DialogToolEnv:
    """One episode of a dialog_gym env at a time, as TRL's ``environment_factory`` builds it.

    ``reset`` starts episode ``index`` of the split (seeded with ``seed``, default ``index``) and
    returns the dialogue so far as text; ``reply`` plays one turn. A reply the env refuses
    (``gym.error.InvalidAction``: too long, EOS inside it) is not typed: the env is left as it
    was, the error comes back as the tool result, the rollout ends there and scores
    ``invalid_reply_reward`` on top of the turns before it (the token-level env, which cannot
    refuse, truncates the episode at an over-long answer).

    TRL takes every public method other than ``reset`` and ``get_reward`` for a tool, so ``reply``
    is the only other one.
    """

    def __init__(self, env_id: str, invalid_reply_reward: float = -1.0, **env_args: Any) -> None:
        self.env = gym.make(turn_id(env_id), **env_args)
        self.tokenizer = self.env.unwrapped.tokenizer
        self.invalid_reply_reward = float(invalid_reply_reward)
        self.episode_return, self.done, self.refused = 0.0, True, False
        self.info: dict[str, Any] = {}

    def reset(self, index: int | None = None, seed: int | None = None, **row: Any) -> str:
        """Start episode ``index`` of the split (or the env's next one); return the dialogue so far."""
        seed = index if seed is None else seed
        options = None if index is None else {"index": int(index)}
        observation, self.info = self.env.reset(seed=None if seed is None else int(seed), options=options)
        self.episode_return, self.done, self.refused = 0.0, False, False
        return observation["text"]

    def reply(self, text: str) -> str:
        """Say one reply to the user and hear the user's next turn.

        Args:
            text: The whole reply, words separated by spaces.

        Returns:
            The user's next turn, nothing once the episode is over, or why the reply was refused.
        """
        if self.done:
            return "the episode is over; a reply after its end is not played"
        unwrapped = self.env.unwrapped
        try:
            typed = unwrapped.reply_tokens(text)
        except gym.error.InvalidAction as error:
            self.episode_return += self.invalid_reply_reward
            self.done = self.refused = True
            return str(error)
        start = len(unwrapped.history()) + len(typed)
        _, reward, terminated, truncated, self.info = self.env.step(typed)
        self.episode_return += float(reward)
        self.done = bool(terminated or truncated)
        return self.tokenizer.decode(unwrapped.history()[start:])

    def get_reward(self) -> float:
        """The rollout's return: the env's rewards of its turns, plus the refused reply's score."""
        return self.episode_return


def environment_factory(
    env_id: str, env_args: dict[str, Any] | None = None, invalid_reply_reward: float = -1.0
) -> Callable[[], DialogToolEnv]:
    """What ``GRPOTrainer(environment_factory=...)`` takes: a maker of ``DialogToolEnv``s of ``env_id``."""
    return functools.partial(DialogToolEnv, env_id, invalid_reply_reward, **(env_args or {}))


def episode_dataset(size: int, start: int = 0) -> Dataset:
    """A ``datasets.Dataset`` of ``size`` rows, one per episode ``start, start + 1, ...``: an empty
    user message as ``prompt`` (``reset`` writes the dialogue into it) and the episode's ``index``."""
    from datasets import Dataset

    indices = list(range(start, start + size))
    return Dataset.from_dict({"prompt": [[{"role": "user", "content": ""}]] * size, "index": indices})


def grpo_settings(env_id: str, env_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``GRPOConfig`` fields the env fixes: room for a whole dialogue after its opening, and
    generation kept to the tokens the env takes (so no segment writes ``<agent>`` or ``<user>``).

    Each segment may run to ``max_completion_length`` new tokens before TRL cuts the rollout to it, so
    the model needs positions for the opening plus twice ``max_completion_length``. Do not cap a
    segment with ``max_new_tokens``: a segment cut before its ``<eos>`` would leave the call open
    for the next one to continue."""
    env_args = env_args or {}
    env = gym.make(env_id, **env_args)
    length = env.unwrapped.full_dialogue_len
    env.close()
    return {"max_completion_length": length, "generation_kwargs": {"bad_words_ids": blocked_tokens(env_id, env_args)}}
