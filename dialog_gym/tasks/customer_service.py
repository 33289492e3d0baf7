"""Booking a table with a simulated customer: the interactive task behind ``CustomerService-v0``.

The customer has a hidden goal with four slots (day, time, place, party size) drawn per episode.
Its opening request states a random part of it, worded from a seeded grammar ("hello , i would
like to book a table for four on friday ."). The agent asks for what is missing with the four
questions "which day ?", "what time ?", "where ?" and "how many people ?"; the customer answers in
one of several phrasings ("around seven ." / "at seven ." / "seven please ."). The agent ends the
episode by booking: "book" and four words, "book DAY TIME PLACE PEOPLE". Anything else gets
"sorry ?". A turn counts as correct when it asks for a slot not known yet or books the goal.

Reward: +1 for a booking that matches the goal, -1 for one that does not, and ``-turn_cost`` for
every other turn. The reference answer of every turn is a scripted agent's move given the dialogue
so far: ask the first slot the customer has not stated yet, or book once all are known. A goal
(the four values) belongs to the test split exactly when a hash of it says so.
"""

from __future__ import annotations

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import EpisodeLimits, Episodes, concat_ragged
from dialog_gym.tasks.arguments import check_int, check_number
from dialog_gym.tasks.base import InteractiveTask, Reply, check_split, keys_in_split
from dialog_gym.tokenizers import WordTokenizer

SLOTS = ("day", "time", "place", "people")
VALUES = {
    "day": ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
    "time": ("noon", "six", "seven", "eight", "nine"),
    "place": ("downtown", "harbour", "airport", "station", "campus", "museum", "market", "riverside"),
    "people": ("two", "three", "four", "five", "six", "seven", "eight"),
}
QUESTIONS = {"day": "which day ?", "time": "what time ?", "place": "where ?", "people": "how many people ?"}
# How the customer states a slot: in the opening request, and in answer to a question.
FRAGMENTS = {"day": "on {}", "time": "at {}", "place": "in {}", "people": "for {}"}
ANSWERS = {
    "day": ("on {} .", "{} please .", "let us say {} ."),
    "time": ("at {} .", "{} please .", "around {} ."),
    "place": ("in {} .", "the {} one .", "{} please ."),
    "people": ("for {} .", "{} people .", "we are {} ."),
}
GREETINGS = ("hello ,", "hi ,", "good evening ,")
LEADS = ("i would like to book a table", "can i book a table", "i want a table")
CONTEXT = "customer service : a customer wants to book a table ."
BOOK, SORRY = "book", "sorry ?"
TEST_HASH_MODULUS = 5
GOAL_STREAM, OPENING_STREAM, REPLY_STREAM = range(3)


def corpus() -> list[str]:
    """Every word the customer and the agent can say, for building the word tokenizer."""
    words = [CONTEXT, BOOK, SORRY, *QUESTIONS.values(), *GREETINGS, *LEADS, " ".join(FRAGMENTS.values()), "."]
    words += [answer.format("") for forms in ANSWERS.values() for answer in forms]
    return words + [value for values in VALUES.values() for value in values]


class CustomerServiceTask(InteractiveTask):
    """Book what the simulated customer wants; see the module docstring."""

    default_reward = "exact"  # how demonstrations are judged: the expert's move or not; play is scored by respond()
    filler_ids: tuple[int, ...] = ()

    def __init__(self, reveal: float = 0.5, max_turns: int = 8, turn_cost: float = 0.05) -> None:
        reveal = check_number("reveal", reveal, 0.0, 1.0, meaning="the chance the opening states a slot")
        max_turns = check_int("max_turns", max_turns, len(SLOTS) + 1, 64, "room to ask every slot and book")
        turn_cost = check_number("turn_cost", turn_cost, 0.0, 1.0, open_high=True)
        self.reveal, self.max_turns, self.turn_cost = reveal, max_turns, turn_cost
        self.tokenizer = WordTokenizer.from_corpus(corpus())
        tok = self.tokenizer
        self._id = {token: i for i, token in enumerate(tok.tokens)}
        self._values = [np.array([self._id[v] for v in VALUES[slot]]) for slot in SLOTS]
        self._value_of = np.full((len(SLOTS), tok.vocab_size), -1)  # token id -> value index, per slot
        for s, ids in enumerate(self._values):
            self._value_of[s, ids] = np.arange(len(ids))
        self._questions = [np.array(tok.encode(QUESTIONS[slot])) for slot in SLOTS]
        self._opening_parts = self._phrases([(g,) for g in GREETINGS]), self._phrases([(lead,) for lead in LEADS])
        context = [tok.bos_id, *tok.encode(CONTEXT), tok.sep_id, tok.user_id]
        self._context = np.array(context)
        longest_opening = (
            len(context) + max(len(tok.encode(g)) for g in GREETINGS) + max(len(tok.encode(x)) for x in LEADS)
        )
        longest_opening += 2 * len(SLOTS) + 2  # every fragment is two words; "." and <agent>
        longest_answer = max(len(tok.encode(a.format("x"))) for forms in ANSWERS.values() for a in forms)
        sorry = [tok.user_id, *tok.encode(SORRY), tok.agent_id]
        self._sorry_len = len(sorry)
        longest_answer = max(longest_answer, len(sorry) - 2)
        self.limits = EpisodeLimits(
            max_turns=max_turns,
            max_segment_len=max(longest_opening, longest_answer + 2),
            max_dialogue_len=longest_opening + (max_turns - 1) * (longest_answer + 2),
            max_question_len=longest_answer + 2,
            max_reference_len=1 + len(SLOTS),
            max_keywords=1,
            max_keyword_len=1 + len(SLOTS),
        )
        self._answer_table = self._answers()
        self._sorry = np.full(self.limits.max_question_len, tok.pad_id)
        self._sorry[: len(sorry)] = sorry

    def _phrases(self, texts: list[tuple[str, ...]]) -> list[np.ndarray]:
        return [np.array(self.tokenizer.encode(" ".join(t))) for t in texts]

    def num_examples(self, split: str) -> int | None:
        check_split(split)
        return None

    # -- goals ----------------------------------------------------------------------------------

    def _draw_goal(self, keys: np.ndarray) -> np.ndarray:
        draws = rs.uniform(keys, GOAL_STREAM, len(SLOTS))
        sizes = np.array([len(VALUES[slot]) for slot in SLOTS])
        return np.minimum((draws * sizes).astype(np.int64), sizes - 1)

    def _keys(self, split: str, index: np.ndarray) -> np.ndarray:
        """The key of each episode, redrawn until its goal lands in ``split``."""
        in_test = lambda k: rs.hash_rows(self._draw_goal(k)) % np.uint64(TEST_HASH_MODULUS) == 0  # noqa: E731
        return keys_in_split(index, split, in_test)

    # -- what the customer says -----------------------------------------------------------------

    def _opening(self, goal: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The opening segment (B, S), its lengths, and which slots it states (B, slots)."""
        tok, b = self.tokenizer, len(goal)
        stated = draws[:, : len(SLOTS)] < self.reveal
        greeting = np.minimum((draws[:, -2] * len(GREETINGS)).astype(np.int64), len(GREETINGS) - 1)
        lead = np.minimum((draws[:, -1] * len(LEADS)).astype(np.int64), len(LEADS) - 1)
        pieces = [(np.tile(self._context, (b, 1)), np.full(b, len(self._context)))]
        for choice, phrases in ((greeting, self._opening_parts[0]), (lead, self._opening_parts[1])):
            pieces.append(self._choose(choice, phrases))
        for s, slot in enumerate(SLOTS):
            fragment = np.stack([np.full(b, self._id[FRAGMENTS[slot].split()[0]]), self._values[s][goal[:, s]]], 1)
            pieces.append((fragment, np.where(stated[:, s], 2, 0)))
        pieces.append((np.tile([self._id["."], tok.agent_id], (b, 1)), np.full(b, 2)))
        tokens, lengths = concat_ragged(pieces, tok.pad_id)
        return tokens, lengths, stated

    def _choose(self, choice: np.ndarray, phrases: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Row ``i`` gets ``phrases[choice[i]]``: padded ids and lengths."""
        width = max(len(p) for p in phrases)
        table = np.full((len(phrases), width), self.tokenizer.pad_id)
        for i, p in enumerate(phrases):
            table[i, : len(p)] = p
        return table[choice], np.array([len(p) for p in phrases])[choice]

    def _answer(
        self, keys: np.ndarray, turn: np.ndarray, slot: np.ndarray, goal: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``<user> ... <agent>``: the slot's value in a seeded phrasing, or "sorry ?" where slot is -1."""
        salt = rs.splitmix64(np.asarray(turn, np.uint64))
        form = np.minimum((rs.uniform(keys ^ salt, REPLY_STREAM, 1)[:, 0] * 3).astype(np.int64), 2)
        value = goal[np.arange(len(slot)), np.maximum(slot, 0)]
        tokens, lengths = self._answer_table
        pick = (np.maximum(slot, 0), form, value)
        sorry = slot < 0
        return np.where(sorry[:, None], self._sorry, tokens[pick]), np.where(sorry, self._sorry_len, lengths[pick])

    def _answers(self) -> tuple[np.ndarray, np.ndarray]:
        """Every answer the customer can give, (slots, forms, values, width) ids and their lengths."""
        tok = self.tokenizer
        most = max(len(v) for v in VALUES.values())
        lines = {
            (s, f, v): [tok.user_id, *tok.encode(ANSWERS[slot][f].format(value)), tok.agent_id]
            for s, slot in enumerate(SLOTS)
            for f in range(3)
            for v, value in enumerate(VALUES[slot])
        }
        width = self.limits.max_question_len
        tokens = np.full((len(SLOTS), 3, most, width), tok.pad_id)
        lengths = np.zeros((len(SLOTS), 3, most), np.int64)
        for (s, f, v), ids in lines.items():
            tokens[s, f, v, : len(ids)], lengths[s, f, v] = ids, len(ids)
        return tokens, lengths

    # -- the scripted agent ---------------------------------------------------------------------

    def expert_move(self, known: np.ndarray, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ask the first slot not known yet, or book the goal: (B, 5) ids and lengths."""
        tok, b = self.tokenizer, len(known)
        width = 1 + len(SLOTS)
        out = np.full((b, width), tok.pad_id)
        missing = ~known.all(1)
        first = np.argmin(known, axis=1)
        for s in range(len(SLOTS)):
            asking = missing & (first == s)
            out[asking, : len(self._questions[s])] = self._questions[s]
        booking = ~missing
        out[booking, 0] = self._id[BOOK]
        for s in range(len(SLOTS)):
            out[booking, 1 + s] = self._values[s][goal[booking, s]]
        lengths = np.where(missing, np.array([len(q) for q in self._questions])[first], width)
        return out, lengths

    def _parse(self, tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slot asked or -1, booked values (B, slots) or -1 rows) of each utterance."""
        b, width = len(tokens), 1 + len(SLOTS)
        t = np.full((b, width), self.tokenizer.pad_id)
        t[:, : min(width, tokens.shape[1])] = tokens[:, :width]
        asked = np.full(b, -1)
        for s, question in enumerate(self._questions):
            match = (lengths == len(question)) & (t[:, : len(question)] == question).all(1)
            asked[match] = s
        booking = (lengths == width) & (t[:, 0] == self._id[BOOK])
        values = np.stack([self._value_of[s, t[:, 1 + s]] for s in range(len(SLOTS))], 1)
        booked = np.where(booking[:, None] & (values >= 0).all(1, keepdims=True), values, -1)
        return asked, booked

    def respond(
        self, split: str, index: np.ndarray, answers: np.ndarray, answer_len: np.ndarray, turn: np.ndarray
    ) -> Reply:
        """The customer's reaction to the agent's latest utterance, and the scripted agent's next move."""
        keys = self._keys(split, index)
        goal = self._draw_goal(keys)
        known = rs.uniform(keys, OPENING_STREAM, len(SLOTS) + 2)[:, : len(SLOTS)] < self.reveal
        rows = np.arange(len(index))
        for t in range(int(turn.max())):
            asked, _ = self._parse(answers[:, t], answer_len[:, t])
            known[rows[(asked >= 0) & (t < turn)], asked[(asked >= 0) & (t < turn)]] = True
        asked, booked = self._parse(answers[rows, turn], answer_len[rows, turn])
        booking = (answer_len[rows, turn] == 1 + len(SLOTS)) & (answers[rows, turn, 0] == self._id[BOOK])
        right = booking & (booked == goal).all(1)
        reward = np.where(booking, np.where(right, 1.0, -1.0), -self.turn_cost)
        new = (asked >= 0) & ~known[rows, np.maximum(asked, 0)]  # a good question asks for a missing slot
        known[rows[asked >= 0], asked[asked >= 0]] = True
        segment, segment_len = self._answer(keys, turn, asked, goal)
        reference, reference_len = self.expert_move(known, goal)
        return Reply(reward, new | right, booking, right, segment, segment_len, reference, reference_len)

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        """Each episode played by the scripted agent: opening, questions for missing slots, booking."""
        check_split(split)
        index = np.asarray(index, np.uint64)
        keys = self._keys(split, index)
        goal = self._draw_goal(keys)
        opening, opening_len, known = self._opening(goal, rs.uniform(keys, OPENING_STREAM, len(SLOTS) + 2))
        b, tok = len(index), self.tokenizer
        episodes = Episodes.empty(b, self.limits, tok.pad_id)
        episodes.segments[:, 0, : opening.shape[1]] = opening
        episodes.segment_len[:, 0] = opening_len
        playing = np.ones(b, bool)
        for t in range(self.max_turns):
            move, move_len = self.expert_move(known, goal)
            episodes.references[:, t, : move.shape[1]] = np.where(playing[:, None], move, tok.pad_id)
            episodes.reference_len[:, t] = np.where(playing, move_len, 0)
            episodes.n_turns += playing
            asked, _ = self._parse(move, move_len)
            playing &= asked >= 0
            if t + 1 < self.max_turns:
                line, line_len = self._answer(keys, np.full(b, t), asked, goal)
                episodes.segments[:, t + 1, : line.shape[1]] = np.where(playing[:, None], line, tok.pad_id)
                episodes.segment_len[:, t + 1] = np.where(playing, line_len, 0)
            known[np.flatnonzero(asked >= 0), asked[asked >= 0]] = True
        episodes.keywords[:, :, 0, :] = episodes.references
        episodes.keyword_len[:, :, 0] = episodes.reference_len
        episodes.index[:] = index
        return episodes
