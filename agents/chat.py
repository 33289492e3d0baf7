"""Talking to a trained policy about one of the env's episodes: what ``dialog-gym chat`` runs.

A person types questions about the episode's context and the policy answers greedily, one token
at a time, until EOS or the env's answer limit. The session shows what the policy can read: the
context, the episode's own questions (the phrasing the policy learned), a warning when a question
holds words outside the task's vocabulary or is phrased as the task never asks it at that turn,
and, on request, the task's reference answer. A dialogue never runs past the most questions the
task asks (``limits.max_turns``): the policy has never seen a longer one, so the next question
starts a new dialogue about the same context.

Text is read the way the env writes it: by the task's own tokenizer, lower-cased when the task's
text is, then (for an env in a Hugging Face vocabulary) re-written token by token as the env does.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from dialog_gym.env import DialogEnv
from dialog_gym.episodes import Episodes
from dialog_gym.tasks.base import InteractiveTask, Task
from dialog_gym.tasks.retokenized import RetokenizedTask
from dialog_gym.tokenizers import Tokenizer, VocabTokenizer

PHRASING_SAMPLE = 2048  # episodes per split read to learn the task's phrasings
HELP = (
    "Type a question about the context, or a command:\n"
    "  /ask     ask the episode's own next question\n"
    "  /answer  the task's reference answer to the last question\n"
    "  /new     a new episode (new context)\n"
    "  /help    this list\n"
    "  /quit    leave (so do an empty line and the end of input)"
)


@dataclass
class ChatEpisode:
    """One episode of the task in the task's own vocabulary: the context and the scripted turns."""

    index: int
    """Position of the episode in its split."""
    context: list[int]
    """The task's ids before the first question (``<bos>`` ... ``<sep>``)."""
    questions: list[str]
    """The user's questions, in order, as the task writes them."""
    references: list[str]
    """The reference answer to each question."""


class Phrasings:
    """The questions a task asks at each turn, learned from a sample of its episodes.

    A question is checked against them only where they are known to be complete: every episode was
    read (a small dataset), or the sample repeats its questions (fewer distinct ones than a quarter
    of those read), the sign that generated questions come from templates the sample has covered.
    """

    def __init__(self, task: Task) -> None:
        tokenizer = task.tokenizer
        asked: list[list[tuple[int, ...]]] = [[] for _ in range(task.limits.max_turns)]
        read_all = True  # every episode of both splits was read
        for split in ("train", "test"):
            size = task.num_examples(split)
            n = PHRASING_SAMPLE if size is None else min(size, PHRASING_SAMPLE)
            read_all = read_all and n == size
            if n == 0:
                continue
            episodes = task.episodes(split, np.arange(n, dtype=np.uint64))
            for turn, questions in enumerate(asked):
                rows = episodes.n_turns > turn
                lengths = episodes.segment_len[rows, turn].tolist()
                for segment, length in zip(episodes.segments[rows, turn].tolist(), lengths):
                    segment = segment[:length]
                    questions.append(tuple(segment[question_start(segment, tokenizer) :] if turn == 0 else segment))
        self.by_turn = [{tokenizer.decode(q, skip_special=True) for q in set(questions)} for questions in asked]
        self.complete = [
            0 < len(seen) and (read_all or len(seen) <= len(questions) / 4)
            for seen, questions in zip(self.by_turn, asked)
        ]
        everything = tokenizer.decode(list(range(tokenizer.vocab_size)))
        self.lower_case = everything == everything.lower()
        """No token of the task's vocabulary has a capital letter, so a person's capitals are lowered."""

    def problem(self, question: str, turn: int) -> str | None:
        """Why ``question`` (as the task's tokenizer reads it) is not one the task asks as question ``turn + 1``."""
        if not self.complete[turn] or question in self.by_turn[turn]:
            return None
        elsewhere = [t + 1 for t, seen in enumerate(self.by_turn) if question in seen]
        example = difflib.get_close_matches(question, sorted(self.by_turn[turn]), n=1, cutoff=0.0)[0]
        where = f"asks it only as question {_numbers(elsewhere)}" if elsewhere else "never phrases a question this way"
        return f"the task {where}; as question {turn + 1} it asks e.g. {example!r}, so the agent may not understand it"


def read_episode(task: Task, episodes: Episodes, row: int) -> ChatEpisode:
    """Row ``row`` of a batch of the task's episodes: its context and its questions and answers as text."""
    tokenizer = task.tokenizer
    questions, references = [], []
    context: list[int] = []
    for turn in range(int(episodes.n_turns[row])):
        segment = [int(i) for i in episodes.segments[row, turn, : episodes.segment_len[row, turn]]]
        if turn == 0:
            start = question_start(segment, tokenizer)
            context, segment = segment[:start], segment[start:]
        questions.append(tokenizer.decode(segment, skip_special=True))
        references.append(
            tokenizer.decode(episodes.references[row, turn, : episodes.reference_len[row, turn]], skip_special=True)
        )
    return ChatEpisode(int(episodes.index[row]), context, questions, references)


def question_start(segment: list[int], tokenizer: Tokenizer) -> int:
    """Where the first question begins in an opening segment: at its ``<user>`` marker, else after
    ``<sep>``, else after ``<bos>`` (a task without markers opens with the question)."""
    for marker in (tokenizer.user_id, tokenizer.sep_id):
        if marker is not None and marker in segment:
            return len(segment) - segment[::-1].index(marker) - (marker == tokenizer.user_id)
    return int(bool(segment) and segment[0] == tokenizer.bos_id)


def _numbers(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else ", ".join(map(str, values[:-1])) + f" or {values[-1]}"


@torch.no_grad()
def generate_answer(policy: torch.nn.Module, dialogue: list[int], eos_id: int, max_tokens: int) -> list[int]:
    """The policy's most likely answer after ``dialogue``: up to ``max_tokens`` ids, EOS (if reached) last."""
    policy.eval()
    device = next(policy.parameters()).device
    answer: list[int] = []
    while len(answer) < max_tokens and (not answer or answer[-1] != eos_id):
        window = (dialogue + answer)[-policy.config.context_len :]
        logits, _ = policy(torch.tensor([window], device=device))  # (1, T, V)
        answer.append(int(logits[0, -1].argmax()))
    return answer


class ChatSession:
    """The state of a chat: the episode, the dialogue so far (env ids) and whether it follows the script."""

    def __init__(
        self, policy: torch.nn.Module, env: gym.Env, write: Callable[[str], None], episode: int | None, seed: int
    ) -> None:
        self.env = env.unwrapped
        if not isinstance(self.env, DialogEnv):
            raise TypeError(
                f"chat talks to dialog_gym's token envs (DialogEnv), got {type(self.env).__name__}; "
                "make the env with one of dialog_gym.ENV_IDS"
            )
        task = self.env.task
        self.native = task.native if isinstance(task, RetokenizedTask) else task
        if not self.supports(env):
            raise ValueError(
                f"chat supports tasks whose user turns are written in advance (DialogQA-style question answering); "
                f"{type(self.native).__name__} plays the user itself; watch the agent with dialog-gym evaluate instead"
            )
        if policy.config.vocab_size != self.env.action_space.n:
            raise ValueError(
                f"the policy has a {policy.config.vocab_size}-token vocabulary but the env has "
                f"{self.env.action_space.n} actions; chat with the env the policy was trained on"
            )
        self.size = size = self.native.num_examples(self.env.split)
        if episode is None:
            episode = int(np.random.default_rng(seed).integers(size or 2**31))
        if isinstance(episode, bool) or not isinstance(episode, (int, np.integer)) or episode < 0:
            raise ValueError(f"episode must be a non-negative integer, got {episode!r}")
        if size is not None and episode >= size:
            raise ValueError(f"episode {episode} is out of range: the {self.env.split!r} split holds {size} episodes")
        self.policy, self.write = policy, write
        self.tokenizer = self.native.tokenizer
        self.max_turns = task.limits.max_turns
        self.max_answer_tokens = self.env.unwrapped.max_answer_tokens
        self.phrasings = Phrasings(self.native)
        self.open_episode(int(episode))

    @staticmethod
    def supports(env: gym.Env) -> bool:
        """Whether a chat can serve ``env``: a dialog_gym token env whose user turns are written in
        advance (an interactive task plays the user itself)."""
        task = env.unwrapped.task if isinstance(env.unwrapped, DialogEnv) else None
        native = task.native if isinstance(task, RetokenizedTask) else task
        return native is not None and not isinstance(native, InteractiveTask)

    # -- episodes and dialogues -----------------------------------------------------------------

    def open_episode(self, index: int) -> None:
        episodes = self.native.episodes(self.env.split, np.array([index], np.uint64))
        self.episode = read_episode(self.native, episodes, 0)
        e = self.episode
        self.write(f"Episode {e.index} of the {self.env.split} split (/new for another).")
        self.write(f"Context: {self.tokenizer.decode(e.context, skip_special=True) or '(none)'}")
        self.write(
            f"The agent learned questions phrased like this episode's own ({len(e.questions)} here, "
            f"at most {self.max_turns} per dialogue):"
        )
        for turn, question in enumerate(e.questions):
            self.write(f"  {turn + 1}. {question}")
        self.write("Ask a question, or /ask, /answer, /new, /help, /quit.")
        self.new_dialogue()

    def new_dialogue(self) -> None:
        self.dialogue = self.to_env_ids(self.episode.context)
        self.turn = 0  # questions asked in this dialogue
        self.on_script = True  # every question so far is the episode's own
        self.last: tuple[int, bool, str] | None = None  # (turn, on script, the agent's answer) of the last question
        self.ended = False  # the last answer reached the env's limit, which ends an episode

    def to_env_ids(self, ids: list[int]) -> list[int]:
        """The task's ids as the env's (the same unless the env speaks a Hugging Face vocabulary)."""
        task = self.env.task
        if not isinstance(task, RetokenizedTask) or not ids:
            return list(ids)
        out, lengths = task.to_ids(np.array([ids]), np.array([len(ids)]), len(ids) * task.pieces.shape[1])
        return [int(i) for i in out[0, : lengths[0]]]

    # -- reading a question ---------------------------------------------------------------------

    def read(self, text: str) -> tuple[list[int], list[str]]:
        """The task's ids of a typed question and the pieces its vocabulary lacks."""
        if self.phrasings.lower_case:
            text = text.lower()
        tokenizer = self.tokenizer
        pieces = tokenizer.pieces(text) if isinstance(tokenizer, VocabTokenizer) else text.split()
        ids, unknown = [], []
        for piece in pieces:
            token = tokenizer.token_to_id(piece)
            if token is None:
                unknown.append(piece)
                token = tokenizer.unk_id
            if token is not None:
                ids.append(token)
        return ids, unknown

    def restart_if_over(self) -> None:
        """Start a new dialogue about the same context when the env would have ended this one."""
        if self.turn < self.max_turns and not self.ended:
            return
        why = (
            "the last answer reached the env's answer limit, which ends an episode"
            if self.ended
            else f"the task asks at most {self.max_turns} question{'s' * (self.max_turns > 1)} per dialogue "
            "and the agent has never seen more"
        )
        self.write(f"({why}; starting a new dialogue about the same context)")
        self.new_dialogue()

    def ask(self, text: str) -> None:
        self.restart_if_over()
        ids, unknown = self.read(text)
        if unknown:
            lost = "reads as <unk>" if self.tokenizer.unk_id is not None else "is left out"
            self.write(f"(not in the task's vocabulary, so it {lost}: {', '.join(repr(p) for p in unknown)})")
        if not ids:
            self.write("(nothing of the question is left to ask)")
            return
        question = self.tokenizer.decode(ids)
        if not unknown and question != text.strip():
            self.write(f"(read as: {question})")
        problem = None if unknown else self.phrasings.problem(question, self.turn)  # an <unk> is never asked
        if problem:
            self.write(f"({problem})")
        script = self.episode.questions
        self.on_script = self.on_script and self.turn < len(script) and question == script[self.turn]
        self.answer(ids)

    def answer(self, question: list[int]) -> None:
        tokenizer, eos = self.tokenizer, self.env.tokenizer.eos_id
        markers = [tokenizer.user_id, *question, tokenizer.agent_id]
        self.dialogue += self.to_env_ids([token for token in markers if token is not None])
        if len(self.dialogue) >= self.policy.config.context_len:
            self.write(f"(the dialogue outgrew the {self.policy.config.context_len} tokens the agent reads)")
        answer = generate_answer(self.policy, self.dialogue, eos, self.max_answer_tokens)
        self.dialogue += answer
        text = self.env.tokenizer.decode([token for token in answer if token != eos], skip_special=True).strip()
        self.write(f"agent: {text}")
        if answer[-1] != eos:
            self.write(f"(cut at the env's limit of {self.max_answer_tokens} tokens: the agent did not end its answer)")
            self.ended = True
        self.last = (self.turn, self.on_script, text)
        self.turn += 1

    # -- commands -------------------------------------------------------------------------------

    def show_reference(self) -> None:
        script, refs = self.episode.questions, self.episode.references
        if self.last is None:
            self.write(f"(no question asked yet; /ask asks the episode's question 1, {script[0]!r})")
            return
        turn, on_script, said = self.last
        if turn >= len(script):
            self.write(
                f"(this episode asks only {len(script)} questions; the task has no reference for question {turn + 1})"
            )
        elif on_script:
            self.write(f"reference: {refs[turn]}  (the agent said: {said})")
        else:
            self.write(
                f"(the episode's question {turn + 1} is {script[turn]!r}, whose reference is {refs[turn]!r}; this "
                "dialogue left the episode's questions, so the task has no reference for yours)"
            )

    def ask_scripted(self) -> None:
        self.restart_if_over()
        script = self.episode.questions
        if not self.on_script:
            self.write("(this dialogue left the episode's questions; starting a new dialogue to ask them)")
            self.new_dialogue()
        elif self.turn >= len(script):
            self.write(f"(this episode asks only {len(script)} questions; starting a new dialogue to ask them again)")
            self.new_dialogue()
        self.write(f"you (the episode's question {self.turn + 1}): {script[self.turn]}")
        self.ask(script[self.turn])

    def handle(self, line: str) -> bool:
        """Act on one line the person typed; False when the chat is over."""
        text = line.strip()
        if not text or text == "/quit":
            return False
        if text == "/help":
            self.write(HELP)
        elif text == "/answer":
            self.show_reference()
        elif text == "/ask":
            self.ask_scripted()
        elif text == "/new":
            self.open_episode(self.episode.index + 1 if self.size is None else (self.episode.index + 1) % self.size)
        elif text.startswith("/"):
            self.write(f"(unknown command {text.split()[0]!r}; /help lists the commands)")
        else:
            self.ask(text)
        return True


def chat(
    policy: torch.nn.Module,
    env: gym.Env,
    lines: Iterable[str],
    write: Callable[[str], None] = print,
    *,
    episode: int | None = None,
    seed: int = 0,
) -> ChatSession:
    """Chat with ``policy`` about episode ``episode`` of the env's split (by default one drawn with ``seed``).

    ``lines`` are what the person types (``terminal_lines()`` in a terminal, a list in a test);
    ``write`` gets every line of output. Returns the session (its ``dialogue`` holds the env ids the
    policy read). Raises ValueError/TypeError for an env chat cannot serve.
    """
    session = ChatSession(policy, env, write, episode, seed)
    for line in lines:
        if not session.handle(line):
            break
    return session


def terminal_lines(prompt: str = "you> ") -> Iterator[str]:
    """Lines typed at a prompt, until the end of input (Ctrl-D)."""
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return
