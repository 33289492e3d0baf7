"""Twenty questions over a table of animals: the interactive task behind ``TwentyQuestions-v0``.

Each episode shows ``n_candidates`` animals and hides one of them. The agent asks yes/no
questions about attributes ("is it furry ?") and the env, playing the user, answers from the
knowledge table ("<user> yes . <agent>"); the agent ends the game with a guess ("guess owl").
A right guess earns +1, a wrong one -1, every question costs ``question_cost`` and an utterance
that is neither a question nor a guess costs as much and gets "what ?" back. A move counts as
correct when it is the right guess or a question that rules out an animal still possible.

The reference answer of every turn is a scripted expert's move given the dialogue so far: the
question that splits the animals still possible most evenly, or the guess once one is left.
Candidate sets belong to the test split exactly when a hash of the set says so, so test games
are played over combinations of animals never seen together in training.
"""

from __future__ import annotations

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import EpisodeLimits, Episodes
from dialog_gym.tasks.arguments import check_int, check_number
from dialog_gym.tasks.base import InteractiveTask, Reply, check_split, keys_in_split
from dialog_gym.tokenizers import WordTokenizer

ATTRIBUTES = (
    "furry",
    "feathered",
    "scaly",
    "aquatic",
    "flying",
    "large",
    "domestic",
    "carnivorous",
    "striped",
    "nocturnal",
    "fast",
)
ANIMALS = {
    "cat": "furry domestic carnivorous nocturnal",
    "dog": "furry domestic carnivorous",
    "cow": "furry large domestic",
    "horse": "furry large domestic fast",
    "tiger": "furry large carnivorous striped fast",
    "lion": "furry large carnivorous fast",
    "zebra": "furry large striped fast",
    "mouse": "furry nocturnal",
    "bat": "furry flying nocturnal",
    "owl": "feathered flying carnivorous nocturnal",
    "eagle": "feathered flying carnivorous large fast",
    "chicken": "feathered domestic",
    "penguin": "feathered aquatic",
    "duck": "feathered flying aquatic domestic",
    "shark": "scaly aquatic large carnivorous fast",
    "goldfish": "scaly aquatic domestic",
    "snake": "scaly carnivorous",
    "crocodile": "scaly aquatic large carnivorous",
    "lizard": "scaly",
    "frog": "aquatic nocturnal",
    "whale": "aquatic large",
    "dolphin": "aquatic large fast",
    "bee": "flying striped",
    "wolf": "furry carnivorous nocturnal fast",
    "rabbit": "furry domestic fast",
}
TABLE = np.array([[a in ANIMALS[name].split() for a in ATTRIBUTES] for name in ANIMALS])  # (animals, attributes)
NAMES = tuple(ANIMALS)
OPENING = "i am thinking of one of these animals :"
RULES = "ask yes or no questions , then guess ."
TEST_HASH_MODULUS = 5
CAST_STREAM, HIDDEN_STREAM = range(2)


class TwentyQuestionsTask(InteractiveTask):
    """Find the hidden animal with yes/no questions; see the module docstring."""

    default_reward = "exact"  # how demonstrations are judged: the expert's move or not; play is scored by respond()
    filler_ids: tuple[int, ...] = ()

    def __init__(self, n_candidates: int = 8, max_questions: int = 10, question_cost: float = 0.05) -> None:
        most = len(NAMES) - 1  # with every animal a candidate there would be one set, in one split only
        n_candidates = check_int("n_candidates", n_candidates, 2, most)
        max_questions = check_int(
            "max_questions", max_questions, n_candidates - 1, 64, f"enough to tell {n_candidates} animals apart"
        )
        question_cost = check_number("question_cost", question_cost, 0.0, 1.0, open_high=True)
        self.n_candidates, self.max_questions, self.question_cost = n_candidates, max_questions, question_cost
        words = [OPENING, RULES, "is it ?", "guess", "yes no what . ,", "ask me", *NAMES, *ATTRIBUTES]
        self.tokenizer = WordTokenizer.from_corpus(words)
        tok = self.tokenizer
        self._id = {token: i for i, token in enumerate(tok.tokens)}
        self._names = np.array([self._id[n] for n in NAMES])
        self._attributes = np.array([self._id[a] for a in ATTRIBUTES])
        self._animal_of = np.full(tok.vocab_size, -1)
        self._animal_of[self._names] = np.arange(len(NAMES))
        self._attribute_of = np.full(tok.vocab_size, -1)
        self._attribute_of[self._attributes] = np.arange(len(ATTRIBUTES))
        self.opening_len = 1 + len(tok.encode(OPENING)) + 2 * n_candidates + len(tok.encode(RULES)) + 1 + 4
        self.limits = EpisodeLimits(
            max_turns=max_questions + 1,
            max_segment_len=self.opening_len,
            max_dialogue_len=self.opening_len + max_questions * 4,
            max_question_len=4,
            max_reference_len=4,
            max_keywords=1,
            max_keyword_len=4,
        )

    def num_examples(self, split: str) -> int | None:
        check_split(split)
        return None

    # -- games ----------------------------------------------------------------------------------

    def _in_test(self, cast: np.ndarray) -> np.ndarray:
        return rs.hash_rows(np.sort(cast, axis=1)) % np.uint64(TEST_HASH_MODULUS) == 0

    def games(self, split: str, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The candidates (B, K) and the hidden animal (B,) of each episode, as indices into ``NAMES``."""
        keys = keys_in_split(index, split, lambda candidates: self._in_test(self._cast(candidates)))
        cast = self._cast(keys)
        hidden = cast[
            np.arange(len(keys)),
            np.minimum(
                (rs.uniform(keys, HIDDEN_STREAM, 1)[:, 0] * self.n_candidates).astype(np.int64), self.n_candidates - 1
            ),
        ]
        return cast, hidden

    def _cast(self, keys: np.ndarray) -> np.ndarray:
        """``n_candidates`` distinct animals per key: the first K of a random permutation."""
        return np.argsort(rs.uniform(keys, CAST_STREAM, len(NAMES)), axis=1)[:, : self.n_candidates]

    # -- the expert and the user ----------------------------------------------------------------

    def expert_move(self, possible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The expert's utterance given the animals still possible (B, animals) bool: (B, 4) ids, lengths.

        One animal left: "guess NAME". Otherwise "is it ATTRIBUTE ?" for the attribute whose yes
        and no answers split the possible animals most evenly (the first such attribute).
        """
        yes = possible.astype(np.int64) @ TABLE.astype(np.int64)  # (B, attributes)
        balance = np.minimum(yes, possible.sum(1, keepdims=True) - yes)
        attribute = balance.argmax(1)
        tok, b = self.tokenizer, len(possible)
        tokens = np.full((b, 4), tok.pad_id, np.int64)
        guessing = possible.sum(1) == 1
        tokens[:, 0] = np.where(guessing, self._id["guess"], self._id["is"])
        tokens[:, 1] = np.where(guessing, self._names[possible.argmax(1)], self._id["it"])
        tokens[:, 2] = np.where(guessing, tok.pad_id, self._attributes[attribute])
        tokens[:, 3] = np.where(guessing, tok.pad_id, self._id["?"])
        return tokens, np.where(guessing, 2, 4)

    def _parse(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(attribute asked or -1, animal guessed or -1) of each utterance; both -1: not understood."""
        t = np.concatenate([tokens, np.full((len(tokens), max(0, 4 - tokens.shape[1])), self.tokenizer.pad_id)], 1)[
            :, :4
        ]
        question = (
            (lengths == 4) & (t[:, 0] == self._id["is"]) & (t[:, 1] == self._id["it"]) & (t[:, 3] == self._id["?"])
        )
        guess = (lengths == 2) & (t[:, 0] == self._id["guess"])
        attribute = np.where(question, self._attribute_of[t[:, 2]], -1)
        animal = np.where(guess, self._animal_of[t[:, 1]], -1)
        return attribute, animal

    def _user_line(self, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``<user> WORD . <agent>`` per row (WORD a token id), or ``<user> what ? <agent>`` where WORD is -1."""
        tok = self.tokenizer
        line = np.full((len(words), 4), tok.pad_id, np.int64)
        line[:, 0], line[:, 3] = tok.user_id, tok.agent_id
        line[:, 1] = np.where(words >= 0, words, self._id["what"])
        line[:, 2] = np.where(words >= 0, self._id["."], self._id["?"])
        return line, np.full(len(words), 4)

    def _answer_word(self, hidden: np.ndarray, attribute: np.ndarray) -> np.ndarray:
        """The token of "yes" or "no" for each question, -1 where nothing was asked."""
        truth = TABLE[hidden, np.maximum(attribute, 0)]
        return np.where(attribute >= 0, np.where(truth, self._id["yes"], self._id["no"]), -1)

    def respond(
        self, split: str, index: np.ndarray, answers: np.ndarray, answer_len: np.ndarray, turn: np.ndarray
    ) -> Reply:
        """Score the agent's latest utterance, answer it as the user, and give the expert's next move."""
        cast, hidden = self.games(split, index)
        rows = np.arange(len(index))
        possible = np.zeros((len(index), len(NAMES)), bool)
        possible[rows[:, None], cast] = True
        for t in range(int(turn.max())):  # earlier questions narrow what the expert considers possible
            attribute, _ = self._parse(answers[:, t], answer_len[:, t])
            asked = (attribute >= 0) & (t < turn)
            same = TABLE[:, np.maximum(attribute, 0)].T == TABLE[hidden, np.maximum(attribute, 0)][:, None]
            possible &= ~asked[:, None] | same
        attribute, animal = self._parse(answers[rows, turn], answer_len[rows, turn])
        guessed, asked = animal >= 0, attribute >= 0
        right = guessed & (animal == hidden)
        reward = np.where(guessed, np.where(right, 1.0, -1.0), -self.question_cost)
        same = TABLE[:, np.maximum(attribute, 0)].T == TABLE[hidden, np.maximum(attribute, 0)][:, None]
        before = possible.sum(1)
        possible &= ~asked[:, None] | same
        informative = asked & (possible.sum(1) < before)  # a good question rules out an animal still possible
        segment, segment_len = self._user_line(self._answer_word(hidden, attribute))
        reference, reference_len = self.expert_move(possible)
        return Reply(reward, informative | right, guessed, right, segment, segment_len, reference, reference_len)

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        """Each game played by the expert: the opening, the user's replies, the expert's moves."""
        check_split(split)
        index = np.asarray(index, np.uint64)
        cast, hidden = self.games(split, index)
        b, tok, rows = len(index), self.tokenizer, np.arange(len(index))
        episodes = Episodes.empty(b, self.limits, tok.pad_id)
        listing = np.full((b, 2 * self.n_candidates), self._id[","])
        listing[:, 0::2] = self._names[cast]
        listing[:, -1] = self._id["."]
        opening = np.concatenate(
            [
                np.full((b, 1), tok.bos_id),
                np.tile(tok.encode(OPENING), (b, 1)),
                listing,
                np.tile(tok.encode(RULES), (b, 1)),
                np.full((b, 1), tok.sep_id),
                np.tile([tok.user_id, self._id["ask"], self._id["me"], tok.agent_id], (b, 1)),
            ],
            axis=1,
        )
        episodes.segments[:, 0, : opening.shape[1]] = opening
        episodes.segment_len[:, 0] = opening.shape[1]
        possible = np.zeros((b, len(NAMES)), bool)
        possible[rows[:, None], cast] = True
        playing = np.ones(b, bool)
        for t in range(self.limits.max_turns):
            move, move_len = self.expert_move(possible)
            episodes.references[:, t, :4] = np.where(playing[:, None], move, tok.pad_id)
            episodes.reference_len[:, t] = np.where(playing, move_len, 0)
            attribute, animal = self._parse(move, move_len)
            episodes.n_turns += playing
            playing &= animal < 0
            if t + 1 < self.limits.max_turns:
                line, line_len = self._user_line(self._answer_word(hidden, attribute))
                episodes.segments[:, t + 1, :4] = np.where(playing[:, None], line, tok.pad_id)
                episodes.segment_len[:, t + 1] = np.where(playing, line_len, 0)
            same = TABLE[:, np.maximum(attribute, 0)].T == TABLE[hidden, np.maximum(attribute, 0)][:, None]
            possible &= (attribute < 0)[:, None] | same
        episodes.keywords[:, :, 0, :] = episodes.references
        episodes.keyword_len[:, :, 0] = episodes.reference_len
        episodes.index[:] = index
        return episodes
