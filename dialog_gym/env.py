"""``DialogEnv``: one dialogue episode at a time, one token per step (a Gymnasium ``Env``)."""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dialog_gym.demonstrations import Demonstrations, Preferences, make_demonstrations, task_preferences
from dialog_gym.kernel import DialogueKernel
from dialog_gym.options import RENDER_MODES, EnvOptions, UnsupportedRenderMode
from dialog_gym.single_kernel import AnswerEnd, SingleKernel
from dialog_gym.tasks.base import Task

__all__ = ["DialogAPI", "DialogEnv", "RENDER_MODES", "UnsupportedRenderMode", "check_action", "reset_index"]
KNOWN_TEXTS = 1 << 14  # most decoded texts an env remembers for its infos


class DialogAPI:
    """What ``DialogEnv`` and ``DialogVectorEnv`` tell about the dialogues they run (read-only),
    so that agents need not reach into the step kernel."""

    kernel: DialogueKernel

    @property
    def options(self) -> EnvOptions:
        """The options the env was built with."""
        return self.kernel.options

    @property
    def split(self) -> str:
        """The split whose episodes the env plays."""
        return self.kernel.split

    @property
    def max_len(self) -> int:
        """Tokens in one observation (the window over the dialogue)."""
        return self.kernel.max_len

    @property
    def max_answer_tokens(self) -> int:
        """Most tokens of one answer, EOS included."""
        return self.kernel.max_answer_tokens

    @property
    def full_dialogue_len(self) -> int:
        """Most tokens a whole dialogue can have; a window of ``max_len >= full_dialogue_len`` never drops any."""
        return self.kernel.full_dialogue_len

    @property
    def reward_name(self) -> str:
        """What scores the answers: a reward name, ``"custom"`` or ``"the task's own"``."""
        return self.kernel.scorer.name

    def history(self, row: int = 0) -> np.ndarray:
        """Every token of ``row``'s dialogue so far, oldest first (not cut to ``max_len``)."""
        rows = self.kernel.num_envs
        if isinstance(row, (bool, np.bool_)) or not isinstance(row, (int, np.integer)) or not 0 <= row < rows:
            raise ValueError(f"row must be an integer in [0, {rows}), got {row!r}")
        return self.kernel.history(int(row))

    def demonstrations(self, n: int, seed: int = 0, noise: float | None = None) -> Demonstrations:
        """``n`` demonstrations from the training split, ``noise`` (default ``demo_noise``) of them imperfect."""
        return make_demonstrations(self.kernel, n, seed=seed, noise=self.options.demo_noise if noise is None else noise)

    def preferences(self, n: int, seed: int = 0, split: str = "train") -> Preferences:
        """Up to ``n`` preference pairs of ``split`` (reference answer over a wrong one), for a reward model."""
        return task_preferences(self.kernel, n, seed=seed, split=split)


class DialogEnv(gym.Env, DialogAPI):
    """A dialogue or QA task in which the agent answers one token per step.

    ## Description
    The observation is the dialogue so far: context, the user's questions and the agent's own
    answers, as token ids. Each step the agent emits one token; EOS ends its answer. The next
    question is then appended, and after the last answer the episode ends. The registered id
    sets which task supplies the episodes (generated micro-worlds, a toy lookup table,
    arithmetic tutoring, real conversations, a user's JSONL file); see ``dialog_gym.tasks``.

    ## Action Space
    ``Discrete(V)``: a token id of the task's tokenizer (V = ``tokenizer.vocab_size``). Special
    tokens other than EOS are allowed but never useful; ``info["action_mask"]`` (and
    ``action_masks()``, for sb3-contrib's ``MaskablePPO``) marks the tokens worth emitting.

    ## Observation Space
    ``MultiDiscrete([V] * max_len)`` of int64: the last ``max_len`` tokens of the dialogue,
    left-padded with ``pad_id`` so the newest token is last. The oldest tokens are dropped when
    the dialogue outgrows the window.

    ## Rewards
    Sparse by default: when an answer ends (EOS or the token limit) it is scored against the
    reference by ``reward``: ``"keyword"`` (+1 if it contains the reference keyword, else -1),
    ``"exact"`` (1 or 0), ``"f1"`` (token F1), ``"match"`` (fraction of reference positions right,
    EOS included), ``"digits"`` (digits right, aligned from the last), ``"model:DIR"`` (a learned
    reward model) or a function ``fn(response, reference, keywords) -> float`` of text. An answer
    is *correct* when its reward is at least ``success_reward`` (for a learned reward: when the
    task's own reward is). With ``shaping=c`` every answer
    token also earns ``+c/(n+1)`` if it is the reference's token at that position (EOS after the
    n reference tokens) and ``-c/(n+1)`` otherwise.

    ## Starting State
    ``reset`` draws the next episode of the split from the env's seeded stream, or episode
    ``options["index"]`` of the split.

    Interactive tasks (``TwentyQuestions-v0``, ``CustomerService-v0``) score each turn themselves
    and write the user's next turn from the agent's answer.

    ## Episode End
    *Terminated* when the last answer ends with EOS (for an interactive task: after its final
    move, a guess or a booking); *truncated* when an answer reaches ``max_answer_tokens`` without
    EOS (``info["truncated_by"] == "max_answer_tokens"``) or an interactive task runs out of turns
    (``"max_turns"``).

    ## Info
    Every step and every reset returns the same keys with the same types, so learners that stack
    infos into arrays (Tianshou's buffers) find no gaps:

    * ``action_mask`` (int8, V): tokens worth emitting; ``expert_action`` (int): the reference's
      next token; ``turn`` (int); ``reference`` (str): the current reference answer.
    * ``answer_done`` (bool): an answer ended on this step; then ``answer`` (str, special
      tokens dropped), ``answer_reward`` (float) and ``answer_correct`` (bool) describe it,
      otherwise they are ``""``, ``0.0`` and ``False``.
    * ``episode_done`` (bool): the episode ended (terminated or truncated); ``truncated_by``
      (str): ``"max_answer_tokens"`` or ``"max_turns"`` when truncated, else ``""``.
    * ``dialogue``: the episode so far, final when ``episode_done``: ``return`` (float),
      ``length``, ``answers``, ``correct``, ``questions``, ``answer_tokens`` (ints) and
      ``success`` (bool). Not ``episode``, which Gymnasium's and SB3's episode-statistics
      wrappers add.

    ## Arguments
    ``DialogEnv(task, options)`` or ``DialogEnv(task, split=..., reward=..., ...)``: the fields of
    ``EnvOptions`` (``split``, ``reward``, ``shaping``, ``success_reward``, ``max_answer_tokens``,
    ``max_len``, ``demo_noise``, ``render_mode``), each documented there.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 4}

    def __init__(self, task: Task, options: EnvOptions | None = None, **settings: Any) -> None:
        """``options`` (default ``EnvOptions()``) with ``settings`` (``split=``, ``reward=``, ...) replacing its fields."""
        self.kernel = SingleKernel(task, EnvOptions.build(options, **settings))
        self.task = task
        self.tokenizer = task.tokenizer
        self.render_mode = self.options.render_mode
        vocab = self.tokenizer.vocab_size
        self.observation_space = spaces.MultiDiscrete(np.full(self.kernel.max_len, vocab), dtype=np.int64)
        self.action_space = spaces.Discrete(vocab)
        self._action_mask = self.kernel.action_mask.astype(np.int8)
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        index = reset_index(options, self.task, self.split)
        super().reset(seed=seed)
        if seed is not None or not self._started:
            self.kernel.seed_rows(np.array([0]), np.array([self.np_random.integers(2**63)], np.uint64))
        self.kernel.reset_rows(np.array([0]), None if index is None else np.array([index], np.uint64))
        self._started = True
        if self.render_mode == "human":
            self.render()
        return self.kernel.obs[0].copy(), self._info(None)

    def step(self, action):
        if not self._started:
            raise gym.error.ResetNeeded("step() was called before reset(); call reset() first")
        kernel = self.kernel
        if kernel.done.item(0):
            raise gym.error.ResetNeeded("step() was called after the episode ended; call reset() to start a new one")
        token = check_action(action, self.action_space.n)
        reward = kernel.append_token(token)  # the cheap paths: a token inside an answer, or one ending it
        if reward is not None:
            info = self._inside_answer_info()
            terminated = truncated = False
        else:
            end = kernel.finish_answer(token)
            if end is None:  # an interactive task: the kernel's general step
                outcome = kernel.step(np.array([token]))
                end = AnswerEnd(
                    outcome.reward.item(),
                    outcome.answer_reward.item(),
                    outcome.answer_correct.item(),
                    outcome.terminated.item(),
                    outcome.truncated.item(),
                    outcome.out_of_turns.item(),
                )
            info = self._info(end)
            reward, terminated, truncated = end.reward, end.terminated, end.truncated
        if self.render_mode == "human":
            self.render()
        return kernel.obs[0].copy(), reward, terminated, truncated, info

    def _info(self, end: AnswerEnd | None) -> dict[str, Any]:
        """The info after ``reset`` (``end`` None) or a step that ended an answer; it also caches what
        stays fixed within an answer, so that ``_inside_answer_info`` decodes nothing."""
        kernel = self.kernel
        reference = kernel.reference(0)
        self._turn = kernel.turn.item()
        self._reference_text = self._text(reference, skip_special=False)
        self._expert_ids = [*reference.tolist(), self.tokenizer.eos_id]
        stats = kernel.row_stats(0)
        self._answer_stats = (stats["answers"], stats["correct"], stats["questions"], stats["success"])
        self._answer_tokens = stats["answer_tokens"]
        info = self._inside_answer_info()
        if end is None:
            return info
        episode_done = end.terminated or end.truncated
        finished = self._turn if episode_done else self._turn - 1  # the turn has moved on unless the episode ended
        answer = kernel.answers[0, finished, : kernel.answer_len[0, finished]]
        info["answer"] = self._text(answer, skip_special=True)
        info["answer_done"] = True
        info["answer_reward"] = end.score
        info["answer_correct"] = end.correct
        info["episode_done"] = episode_done
        if end.truncated:
            info["truncated_by"] = "max_turns" if end.out_of_turns else "max_answer_tokens"
        return info

    def _inside_answer_info(self) -> dict[str, Any]:
        """The info of a step that ended no answer, from what ``_info`` cached and two counters."""
        kernel = self.kernel
        expert = self._expert_ids
        answers, correct, questions, success = self._answer_stats
        return {
            "action_mask": self._action_mask.copy(),  # a new array every step, as Gymnasium's checker asks
            "expert_action": expert[min(kernel.pos.item(), len(expert) - 1)],
            "turn": self._turn,
            "reference": self._reference_text,
            "answer": "",
            "answer_done": False,
            "answer_reward": 0.0,
            "answer_correct": False,
            "episode_done": False,
            "truncated_by": "",
            "dialogue": {
                "return": kernel.episode_return.item(),
                "length": kernel.episode_length.item(),
                "answers": answers,
                "correct": correct,
                "questions": questions,
                "success": success,
                "answer_tokens": self._answer_tokens,
            },
        }

    def _text(self, ids: np.ndarray, skip_special: bool) -> str:
        """``tokenizer.decode(ids)``, remembered: references and good answers recur across episodes."""
        key = (ids.tobytes(), skip_special)
        text = self._decoded.get(key)
        if text is None:
            if len(self._decoded) >= KNOWN_TEXTS:
                self._decoded.clear()
            text = self._decoded[key] = self.tokenizer.decode(ids, skip_special=skip_special)
        return text

    @functools.cached_property
    def _decoded(self) -> dict[tuple[bytes, bool], str]:
        return {}

    def action_masks(self) -> np.ndarray:
        """Tokens worth emitting (all but the special tokens other than EOS), for ``MaskablePPO``."""
        return self.kernel.action_mask.copy()

    def agent_tokens(self) -> np.ndarray:
        """(max_len,) bool: the observation's positions that hold the agent's own tokens, so a
        learner can tell them from the user's (e.g. a simulated customer's) and mask them."""
        return self.kernel.agent_tokens()[0]

    def render(self) -> str | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'human' to gym.make")
            return None
        text = self.tokenizer.decode(self.kernel.history(0)) if self._started else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text


def check_action(action: Any, vocab_size: int) -> int:
    """The token id of a single action, or a one-line error naming what is wrong with it."""
    if type(action) is int and 0 <= action < vocab_size:  # the common case, checked first
        return action
    if isinstance(action, np.ndarray):
        if action.shape != ():
            raise gym.error.InvalidAction(
                f"action must be a single token id, got an array of shape {action.shape}; pass one integer"
            )
        action = action[()]
    if isinstance(action, (bool, np.bool_)) or not isinstance(action, (int, np.integer)):
        raise gym.error.InvalidAction(
            f"action must be an integer token id in [0, {vocab_size}), got {action!r} ({type(action).__name__})"
        )
    if not 0 <= action < vocab_size:
        raise gym.error.InvalidAction(f"action {int(action)} is out of range: expected a token id in [0, {vocab_size})")
    return int(action)


def reset_index(
    options: dict[str, Any] | None, task: Task, split: str, allowed: tuple[str, ...] = ("index",)
) -> int | None:
    """The episode index asked for by ``reset(options={"index": k})``, checked against the split;
    ``allowed`` names the option keys the env understands (a vector env also takes ``group_size``)."""
    if options is None:
        return None
    if not isinstance(options, dict):
        raise TypeError(f"reset options must be a dict such as {{'index': 3}}, got {type(options).__name__}")
    unknown = set(options) - set(allowed)
    if unknown:
        if "group_size" in unknown:
            raise ValueError(
                "a single env plays one episode at a time, so it has no group_size; group episodes with the "
                "vector env (gym.make_vec(id, num_envs=N).reset(seed=s, options={'group_size': G})) or give "
                "Gymnasium's vector env the seeds dialog_gym.group_seeds(s, N, G)"
            )
        expected = " or ".join(repr(key) for key in allowed)
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; the options are {expected}")
    if "index" not in options:
        return None
    return check_index(options["index"], task.num_examples(split), split)


def check_index(index: Any, size: int | None, split: str) -> int:
    """``index`` as an episode number of a split holding ``size`` episodes (None: unbounded, 64-bit numbers)."""
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)) or index < 0:
        shown = f"an array of shape {index.shape}" if isinstance(index, np.ndarray) else repr(index)
        raise ValueError(f"options['index'] must be a non-negative integer, got {shown}")
    if size is not None and index >= size:
        raise ValueError(f"options['index']={index} is out of range: the {split!r} split holds {size} episodes")
    if index >= 2**64:
        raise ValueError(f"options['index']={index} is out of range: episode numbers are below 2**64")
    return int(index)
