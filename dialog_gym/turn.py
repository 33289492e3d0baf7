"""``DialogTurnEnv``: the turn-level view of a token-level env (one whole reply per step).

It holds a ``DialogEnv`` of the same task and types each reply into it token by token, so the
reward, termination and ``info`` of a turn are exactly what the token-level env returns when the
same reply is typed there: there is one task and one kernel, not a second implementation. Every
registered id ``Name-vN`` has a turn-level twin ``Name-Turn-vN`` (``turn_id``), so a researcher can
train per-token and per-turn credit on the same problem, and text-in text-out systems (OpenEnv,
TRL, LLM agents) can play it.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv
from gymnasium.vector.utils import batch_space

from dialog_gym.env import DialogAPI, DialogEnv
from dialog_gym.options import RENDER_MODES
from dialog_gym.tokenizers import Tokenizer

__all__ = ["DialogTurnEnv", "DialogueText", "ReplyText", "token_id_of", "turn_id"]


def turn_id(env_id: str) -> str:
    """The id of the turn-level twin of ``env_id``: ``"DialogQA-v0"`` -> ``"DialogQA-Turn-v0"``."""
    name, dash, version = env_id.rpartition("-v")
    if not dash or not version.isdigit():
        raise ValueError(f"env ids end in -vN (e.g. 'DialogQA-v0'), got {env_id!r}")
    return f"{name}-Turn-v{version}"


def token_id_of(env_id: str) -> str:
    """The token-level id of a turn-level id: ``"DialogQA-Turn-v0"`` -> ``"DialogQA-v0"``."""
    name, dash, version = env_id.rpartition("-Turn-v")
    if not dash or not version.isdigit():
        raise ValueError(f"turn-level ids end in -Turn-vN (e.g. 'DialogQA-Turn-v0'), got {env_id!r}")
    return f"{name}-v{version}"


@functools.lru_cache(maxsize=16)
def _vocabulary_text(tokenizer: Tokenizer) -> tuple[int, str]:
    """The most characters one token writes (a separating space included) and every character the
    vocabulary's tokens hold. A byte-level vocabulary writes a token's bytes in as many characters
    or fewer, so the longest token string bounds the text of any token."""
    tokens = [tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size)]
    charset = sorted(set("".join(tokens)) | {" "})
    return max(map(len, tokens)) + 1, "".join(charset)


class DialogueText(spaces.Text):
    """Text a tokenizer writes from at most ``max_tokens`` tokens.

    ``contains`` checks the type and the length: a byte-level vocabulary writes characters that
    no single token shows, so the characters themselves are not checked. ``sample`` decodes random
    tokens of ``sample_ids``.
    """

    def __init__(self, tokenizer: Tokenizer, max_tokens: int, sample_ids: np.ndarray, seed: int | None = None) -> None:
        chars_per_token, charset = _vocabulary_text(tokenizer)
        super().__init__(max_length=max(1, max_tokens * chars_per_token), min_length=0, charset=charset, seed=seed)
        self.tokenizer, self.max_tokens, self.sample_ids = tokenizer, int(max_tokens), np.asarray(sample_ids)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is not None or probability is not None:
            raise NotImplementedError(f"{type(self).__name__}.sample takes no mask or probability")
        n = int(self.np_random.integers(0, self.max_tokens + 1))
        return self.tokenizer.decode(self.np_random.choice(self.sample_ids, n))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_tokens={self.max_tokens}, max_length={self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            type(other) is type(self)
            and other.tokenizer == self.tokenizer
            and other.max_tokens == self.max_tokens
            and np.array_equal(other.sample_ids, self.sample_ids)
        )


class ReplyText(DialogueText):
    """A reply: text the tokenizer encodes in at most ``max_tokens`` tokens (the answer limit)."""

    def contains(self, x: Any) -> bool:
        return super().contains(x) and len(self.tokenizer.encode(x)) <= self.max_tokens

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        text = super().sample(mask, probability)
        for _ in range(8):  # a byte-level vocabulary may re-encode a decoded text in more tokens
            if self.contains(text):
                return text
            text = self.tokenizer.decode(self.tokenizer.encode(text)[: self.max_tokens - 1])
        return ""


@batch_space.register(DialogueText)
def _batch_dialogue_text(space: DialogueText, n: int = 1) -> spaces.Tuple:
    """A batch of ``n`` copies that keep their class (Gymnasium's own rule would make plain ``Text``)."""
    return spaces.Tuple([copy.deepcopy(space) for _ in range(n)])


class DialogTurnEnv(gym.Env, DialogAPI):
    """A dialogue or QA task in which the agent sends one whole reply per step.

    ## Description
    The turn-level view of the token-level env of the same id (see ``DialogEnv`` for the tasks):
    the same episodes, the same rewards, the same ends; only the step is a whole reply instead of
    one token. Each step types the reply's tokens into the token-level env, with EOS after them.

    ## Action Space
    ``ReplyText``: the reply as text, which the tokenizer encodes in at most ``max_answer_tokens``
    tokens; or the reply as a sequence of token ids (a list or a 1-D integer array), which may end
    with EOS. A reply of fewer than ``max_answer_tokens`` tokens gets EOS after it; one of exactly
    ``max_answer_tokens`` tokens without EOS is cut at the token limit, as in the token-level env
    (truncated). Longer replies, ids out of range and tokens after EOS are refused before anything
    is typed.

    ## Observation Space
    ``Dict(text=DialogueText, tokens=MultiDiscrete([V] * max_len))``: the whole dialogue so far as
    text (markers such as ``<user>`` included) and, as token ids, the token-level env's observation
    at the same point (the last ``max_len`` tokens, left-padded).

    ## Rewards
    The sum of the token-level env's rewards over the reply's tokens (the answer's score, plus the
    per-token shaping terms when ``shaping`` is set).

    ## Starting State, Episode End, Info
    Those of the token-level env: ``reset(seed=s)`` plays the episode that ``DialogEnv`` plays with
    the same seed, and every step returns the ``info`` of the reply's last token.

    ## Arguments
    Those of the token-level id: ``gym.make("DialogQA-Turn-v0", n_people=2, reward="exact")``.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 1}

    def __init__(self, env: DialogEnv, render_mode: str | None = None) -> None:
        """The turn-level view of ``env``, a ``DialogEnv`` built without a render mode."""
        if not isinstance(env, DialogEnv):
            raise TypeError(f"DialogTurnEnv wraps a dialog_gym.DialogEnv, got {type(env).__name__}")
        if env.render_mode is not None:
            raise ValueError("give the render mode to DialogTurnEnv, not to the token-level env it wraps")
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode must be one of {list(RENDER_MODES)} or None, got {render_mode!r}")
        self.token_env, self.kernel, self.task = env, env.kernel, env.task
        self.tokenizer = env.tokenizer
        self.render_mode = render_mode
        words = np.flatnonzero(env.action_masks() & (np.arange(env.action_space.n) != self.tokenizer.eos_id))
        self.observation_space = spaces.Dict(
            text=DialogueText(self.tokenizer, env.full_dialogue_len, words), tokens=env.observation_space
        )
        self.action_space = ReplyText(self.tokenizer, env.max_answer_tokens, words)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        tokens, info = self.token_env.reset(seed=seed, options=options)
        self._started = True
        if self.render_mode == "human":
            self.render()
        return self._observation(tokens), info

    def step(self, action: str | Sequence[int] | np.ndarray):
        env = self.token_env
        if not self._started:
            raise gym.error.ResetNeeded("step() was called before reset(); call reset() first")
        if self.kernel.done.item(0):
            raise gym.error.ResetNeeded("step() was called after the episode ended; call reset() to start a new one")
        typed = self.reply_tokens(action)
        saved = self.kernel.save_answer()
        reward = 0.0
        try:
            for token in typed:
                tokens, token_reward, terminated, truncated, info = env.step(token)
                reward += token_reward
        except BaseException:
            self.kernel.restore_answer(saved)  # the reply never half-happens
            raise
        assert info["answer_done"], "a checked reply ends its answer on its last token"
        if self.render_mode == "human":
            self.render()
        return self._observation(tokens), reward, terminated, truncated, info

    def reply_tokens(self, action: str | Sequence[int] | np.ndarray) -> list[int]:
        """The tokens that ``action`` types (its ids, then EOS unless it fills the answer limit), or a
        one-line error naming what is wrong with it."""
        vocab, eos, limit = self.tokenizer.vocab_size, self.tokenizer.eos_id, self.max_answer_tokens
        if isinstance(action, str):
            ids = self.tokenizer.encode(action)
        elif isinstance(action, (list, tuple, np.ndarray)):
            array = np.asarray(action)
            if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
                raise gym.error.InvalidAction(
                    f"a reply as token ids must be a 1-D sequence of integers, got {type(action).__name__} of "
                    f"shape {array.shape} and dtype {array.dtype}"
                )
            if array.size and (array.min() < 0 or array.max() >= vocab):
                bad = int(array[(array < 0) | (array >= vocab)][0])
                raise gym.error.InvalidAction(f"reply token {bad} is out of range: expected ids in [0, {vocab})")
            ids = array.astype(np.int64).tolist()
        else:
            raise gym.error.InvalidAction(
                f"a reply must be text (str) or a sequence of token ids, got {type(action).__name__}"
            )
        if eos in ids[:-1]:
            extra = len(ids) - 1 - ids.index(eos)
            raise gym.error.InvalidAction(
                f"the reply has {extra} token(s) after its end-of-turn token (id {eos}); send one reply per step"
            )
        words = ids[:-1] if ids and ids[-1] == eos else ids
        if len(words) > limit:
            raise gym.error.InvalidAction(
                f"the reply is {len(words)} tokens long; an answer has at most max_answer_tokens={limit} tokens "
                "(EOS included): shorten it, or make the env with a larger max_answer_tokens"
            )
        return words if len(words) == limit else [*words, eos]

    def expert_reply(self) -> list[int]:
        """The reference's reply to the current turn as token ids (without EOS): the task's answer, or
        the scripted expert's next utterance in an interactive task."""
        return self.kernel.reference(0).tolist()

    @property
    def turn(self) -> int:
        """The open turn: how many answers of the episode have ended."""
        return self.kernel.turn.item()

    def window_after(self, typed: Sequence[int] = ()) -> np.ndarray:
        """(max_len,) the token-level observation once the tokens ``typed`` of the open reply are in,
        without stepping: what a token-level agent reads before it chooses the next token."""
        window = self.kernel.obs[0]
        return np.concatenate([window, np.asarray(typed, np.int64)])[len(typed) :]

    def text(self) -> str:
        """The whole dialogue so far, as the observation's ``text`` shows it."""
        return self.tokenizer.decode(self.kernel.history(0))

    def _observation(self, tokens: np.ndarray) -> dict[str, Any]:
        return {"text": self.text(), "tokens": tokens}

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'human' to gym.make")
            return None
        text = self.text() if self._started else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text


def make_turn_env(env_id: str, render_mode: str | None = None, **kwargs: Any) -> DialogTurnEnv:
    """The turn-level env ``env_id`` (``Name-Turn-vN``); the entry point ``gym.make`` calls for it."""
    from dialog_gym.envs import make_env  # envs registers this module's entry points

    return DialogTurnEnv(make_env(token_id_of(env_id), **kwargs), render_mode=render_mode)


def make_turn_vector_env(env_id: str, num_envs: int = 1, **kwargs: Any) -> SyncVectorEnv:
    """``num_envs`` turn-level envs stepped one after another (replies differ in length, so rows share no
    token steps); row ``i`` of ``reset(seed=s)`` plays the episodes of a single env seeded ``s + i``."""
    kwargs.pop("max_episode_steps", None)
    if isinstance(num_envs, (bool, np.bool_)) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    return SyncVectorEnv([functools.partial(make_turn_env, env_id, **kwargs) for _ in range(int(num_envs))])
