"""Conversational QA over generated micro-worlds: the task behind ``DialogQA-v0``.

Each episode draws a small world (people, places, objects), states it as context ("mary is in the
kitchen . the ball is in the garden . mary went to the garden . mary picked up the ball ."), and
then a user asks one to three questions in turn. Follow-up questions refer back with a pronoun
("who has the ball ?" -> "mary"; "and where is she now ?" -> "the garden"), so the agent must
track both the world and the conversation. Answers are one or two words ("mary", "the garden",
"nothing"); their keyword is the content word ("garden").

Everything is generated with counter-based random numbers over whole batches: episode ``k`` of a
split is a pure function of ``k``. Every sentence of a kind has the same number of tokens, so a
batch of episodes is assembled by writing columns of a template, with no per-episode Python. A
world belongs to the ``test`` split exactly when a hash of its facts falls in a fixed fifth of the
hash range, so no test world ever occurs in ``train``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dialog_gym import random_streams as rs
from dialog_gym.episodes import EpisodeLimits, Episodes
from dialog_gym.tasks.arguments import check_int
from dialog_gym.tasks.base import check_split
from dialog_gym.tokenizers import WordTokenizer

FEMALE = ("mary", "sandra", "julie", "emma", "lucy", "anna", "sofia", "nina", "olga", "rita", "kate", "zoe")
MALE = ("john", "daniel", "fred", "bill", "tom", "jeff", "max", "omar", "paul", "sam", "leo", "ivan")
PLACES = (
    "kitchen",
    "garden",
    "office",
    "bedroom",
    "hallway",
    "bathroom",
    "cellar",
    "attic",
    "garage",
    "library",
    "park",
    "school",
)
OBJECTS = ("apple", "ball", "book", "key", "cup", "phone", "hat", "box", "pen", "lamp", "coin", "map")
MOVE_VERBS = ("went", "moved", "walked", "ran", "travelled", "journeyed")
NOBODY, NOTHING = "nobody", "nothing"
FILLER = "the answer is"
TEMPLATE_WORDS = "the is in to and where who has what holding now picked up put down she he it . ?"

# Question kinds. A question about a person or an object sets the "focus" that follow-ups refer to.
WHERE_PERSON, WHERE_OBJECT, WHO_HAS, HOLDING = range(4)
OTHER_KIND = np.array([HOLDING, WHO_HAS, WHERE_OBJECT, WHERE_PERSON])  # the other question about the same focus
MOVE, TAKE, DROP = range(3)
TEST_HASH_MODULUS = 5  # one world in five belongs to the test split
CAST_STREAM, WORLD_STREAM, DIALOGUE_STREAM, VERB_STREAM = range(4)
FIRST_QUESTION_LEN, FOLLOW_UP_LEN = 7, 8  # tokens, with the <user> and <agent> markers


def world_corpus() -> list[str]:
    """Every word the generator can write, for building the word-level tokenizer."""
    return [*FEMALE, *MALE, *PLACES, *OBJECTS, *MOVE_VERBS, NOBODY, NOTHING, FILLER, TEMPLATE_WORDS]


@dataclass
class _World:
    """The facts of B worlds, as indices (people, places and objects into the module's lists)."""

    people: np.ndarray  # (B, nP) into FEMALE + MALE
    places: np.ndarray  # (B, nL) into PLACES
    objects: np.ndarray  # (B, nO) into OBJECTS
    person_at: np.ndarray  # (B, nP) initial place of each person (local index)
    object_at: np.ndarray  # (B, nO) initial place of each object (local index)
    event_kind: np.ndarray  # (B, E) MOVE, TAKE or DROP
    event_person: np.ndarray  # (B, E) local person index
    event_arg: np.ndarray  # (B, E) destination place (MOVE) or object (TAKE, DROP), local index
    final_person_at: np.ndarray  # (B, nP)
    final_object_at: np.ndarray  # (B, nO) where each object lies, or its holder's place
    holder: np.ndarray  # (B, nO) local person index or -1
    held: np.ndarray  # (B, nP) local object index or -1

    def facts(self) -> np.ndarray:
        """Everything that defines the world (not how it is worded), one row per world."""
        return np.concatenate(
            [
                self.people,
                self.places,
                self.objects,
                self.person_at,
                self.object_at,
                self.event_kind,
                self.event_person,
                self.event_arg,
            ],
            axis=1,
        )


class MicroWorldTask:
    """Generated conversational QA; see the module docstring. Sizes are constructor arguments.

    The default world (one person, one object, four places, four events) is what a small
    Transformer learns in minutes on a CPU. Every extra person or object adds a binding problem
    (whose place is which), which small models take far longer to learn; see the README.
    """

    default_reward = "keyword"

    def __init__(
        self,
        n_people: int = 1,
        n_places: int = 4,
        n_objects: int = 1,
        n_events: int = 4,
        min_turns: int = 1,
        max_turns: int = 3,
    ) -> None:
        n_people = check_int("n_people", n_people, 1, len(FEMALE) + len(MALE))
        n_places = check_int("n_places", n_places, 2, len(PLACES))
        n_objects = check_int("n_objects", n_objects, 1, len(OBJECTS))
        n_events = check_int("n_events", n_events, 0, 64)
        min_turns = check_int("min_turns", min_turns, 1, 16)
        max_turns = check_int("max_turns", max_turns, min_turns, 16)
        self.n_people, self.n_places, self.n_objects, self.n_events = n_people, n_places, n_objects, n_events
        self.min_turns, self.max_turns = min_turns, max_turns
        self.tokenizer = WordTokenizer.from_corpus(world_corpus())
        self.filler_ids = tuple(self.tokenizer.encode(FILLER))
        self._id = {token: i for i, token in enumerate(self.tokenizer.tokens)}
        self._people = self._ids(FEMALE + MALE)
        self._places = self._ids(PLACES)
        self._objects = self._ids(OBJECTS)
        self._move_verbs = self._ids(MOVE_VERBS)
        self.context_len = 6 * n_people + 7 * n_objects + 6 * n_events
        opening = 2 + self.context_len + FIRST_QUESTION_LEN
        self.limits = EpisodeLimits(
            max_turns=max_turns,
            max_segment_len=max(opening, FOLLOW_UP_LEN),
            max_dialogue_len=opening + (max_turns - 1) * FOLLOW_UP_LEN,
            max_question_len=max(FIRST_QUESTION_LEN, FOLLOW_UP_LEN),
            max_reference_len=2,
            max_keywords=1,
            max_keyword_len=1,
        )

    def _ids(self, words: tuple[str, ...]) -> np.ndarray:
        return np.array([self._id[w] for w in words], np.int64)

    def num_examples(self, split: str) -> int | None:
        check_split(split)
        return None

    # -- worlds ---------------------------------------------------------------------------------

    def _draw_cast(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dice = rs.Dice(keys, CAST_STREAM, self.n_people + self.n_places + self.n_objects)
        return (
            dice.distinct(len(self._people), self.n_people),
            dice.distinct(len(self._places), self.n_places),
            dice.distinct(len(self._objects), self.n_objects),
        )

    def _cast_in_test(self, people: np.ndarray, places: np.ndarray, objects: np.ndarray) -> np.ndarray:
        """Whether a cast (who, where and what, as sets) belongs to the test split."""
        cast = np.concatenate([np.sort(people, 1), np.sort(places, 1), np.sort(objects, 1)], axis=1)
        return rs.hash_rows(cast) % np.uint64(TEST_HASH_MODULUS) == 0

    def _worlds(self, split: str, index: np.ndarray) -> tuple[_World, np.ndarray]:
        """The world of each episode index, drawn from the first candidate whose cast lies in the split.

        The split is decided by a hash of the cast (the sets of people, places and objects), so a
        test world shares no cast, and hence no world, with any train world. Only the cheap cast
        is redrawn until it lands in the split; the rest of the world is drawn once.
        """
        want_test = split == "test"
        keys = np.empty(len(index), np.uint64)
        pending = np.arange(len(index))
        attempt = np.zeros(len(index), np.uint64)
        while len(pending):
            candidates = rs.episode_index(index[pending], attempt[pending])
            accepted = self._cast_in_test(*self._draw_cast(candidates)) == want_test
            keys[pending[accepted]] = candidates[accepted]
            pending = pending[~accepted]
            attempt[pending] += np.uint64(1)
        return self._draw_world(keys), keys

    def _draw_world(self, keys: np.ndarray) -> _World:
        b, n_p, n_l, n_o, n_e = len(keys), self.n_people, self.n_places, self.n_objects, self.n_events
        people, places, objects = self._draw_cast(keys)
        dice = rs.Dice(keys, WORLD_STREAM, n_p + n_o + n_e * (3 + n_o))
        rows = np.arange(b)
        person_at = dice.integers(n_p, n_l)
        object_at = dice.integers(n_o, n_l)
        world = _World(
            people=people,
            places=places,
            objects=objects,
            person_at=person_at,
            object_at=object_at,
            event_kind=np.zeros((b, n_e), np.int64),
            event_person=dice.integers(n_e, n_p),
            event_arg=np.zeros((b, n_e), np.int64),
            final_person_at=person_at.copy(),
            final_object_at=object_at.copy(),
            holder=np.full((b, n_o), -1),
            held=np.full((b, n_p), -1),
        )
        wants_move = dice.uniform(n_e) < 0.5
        step_away = 1 + dice.integers(n_e, n_l - 1)
        loc, obj_loc, holder, held = world.final_person_at, world.final_object_at, world.holder, world.held
        for e in range(n_e):
            person = world.event_person[:, e]
            here = loc[rows, person]
            holding = held[rows, person]
            # One object at a time: a person with full hands drops, one with free hands picks up
            # an unheld object in the same place, and anyone may walk to another place.
            pick = dice.pick((holder < 0) & (obj_loc == here[:, None]))
            drop = ~wants_move[:, e] & (holding >= 0)
            take = ~wants_move[:, e] & (holding < 0) & (pick >= 0)
            move = ~(drop | take)
            destination = (here + step_away[:, e]) % n_l
            world.event_kind[:, e] = np.where(move, MOVE, np.where(take, TAKE, DROP))
            world.event_arg[:, e] = np.where(move, destination, np.where(take, pick, holding))
            loc[rows, person] = np.where(move, destination, here)
            taken = np.flatnonzero(take)
            holder[taken, pick[taken]] = person[taken]
            held[taken, person[taken]] = pick[taken]
            dropped = np.flatnonzero(drop)
            holder[dropped, holding[dropped]] = -1
            obj_loc[dropped, holding[dropped]] = here[dropped]
            held[dropped, person[dropped]] = -1
        carried = holder >= 0
        obj_loc[carried] = np.take_along_axis(loc, np.maximum(holder, 0), axis=1)[carried]
        return world

    def world_facts(self, split: str, index: np.ndarray) -> np.ndarray:
        """Everything that defines each episode's world, one row per episode (for checking splits)."""
        world, _ = self._worlds(check_split(split), np.asarray(index, np.uint64))
        return world.facts()

    # -- episodes -------------------------------------------------------------------------------

    def episodes(self, split: str, index: np.ndarray) -> Episodes:
        check_split(split)
        index = np.asarray(index, np.uint64)
        world, keys = self._worlds(split, index)
        b, w = len(index), self._id
        names = self._people[world.people]  # (B, nP) token ids
        places = self._places[world.places]  # (B, nL)
        things = self._objects[world.objects]  # (B, nO)

        # Context: where everyone and everything starts, then the events in order.
        person_lines = _columns(
            b, self.n_people, names, w["is"], w["in"], w["the"], np.take_along_axis(places, world.person_at, 1), w["."]
        )
        object_lines = _columns(
            b,
            self.n_objects,
            w["the"],
            things,
            w["is"],
            w["in"],
            w["the"],
            np.take_along_axis(places, world.object_at, 1),
            w["."],
        )
        kind, moving = world.event_kind, world.event_kind == MOVE
        verb = self._move_verbs[rs.Dice(keys, VERB_STREAM, self.n_events).integers(self.n_events, len(MOVE_VERBS))]
        event_lines = _columns(
            b,
            self.n_events,
            np.take_along_axis(names, world.event_person, 1),
            np.where(moving, verb, np.where(kind == TAKE, w["picked"], w["put"])),
            np.where(moving, w["to"], np.where(kind == TAKE, w["up"], w["down"])),
            w["the"],
            np.where(
                moving,
                np.take_along_axis(places, np.where(moving, world.event_arg, 0), 1),
                np.take_along_axis(things, np.where(moving, 0, world.event_arg), 1),
            ),
            w["."],
        )
        questions, answers, keywords, n_turns = self._dialogue(keys, world, names, places, things)

        episodes = Episodes.empty(b, self.limits, self.tokenizer.pad_id)
        opening = episodes.segments[:, 0]
        opening[:, 0] = w["<bos>"]
        opening[:, 1 : 1 + self.context_len] = np.concatenate([person_lines, object_lines, event_lines], axis=1)
        opening[:, 1 + self.context_len] = w["<sep>"]
        opening[:, 2 + self.context_len : 2 + self.context_len + FIRST_QUESTION_LEN] = questions[0]
        episodes.segment_len[:, 0] = 2 + self.context_len + FIRST_QUESTION_LEN
        for t in range(1, self.max_turns):
            episodes.segments[:, t, :FOLLOW_UP_LEN] = questions[t]
            episodes.segment_len[:, t] = FOLLOW_UP_LEN
        episodes.references[:] = answers
        episodes.reference_len[:] = np.where(answers[:, :, 0] == w["the"], 2, 1)
        episodes.keywords[:, :, 0, 0] = keywords
        episodes.keyword_len[:] = 1
        beyond = np.arange(self.max_turns)[None, :] >= n_turns[:, None]
        for lengths in (episodes.segment_len, episodes.reference_len, episodes.keyword_len[:, :, 0]):
            lengths[beyond] = 0
        episodes.n_turns[:] = n_turns
        episodes.index[:] = index
        return episodes

    def _dialogue(self, keys, world, names, places, things):
        """Question lines (T arrays of (B, length)), answers (B, T, 2), keywords (B, T), turns (B,)."""
        b, w, n_t = len(keys), self._id, self.max_turns
        rows = np.arange(b)
        dice = rs.Dice(keys, DIALOGUE_STREAM, 4 + n_t)
        n_turns = self.min_turns + dice.integers(1, self.max_turns - self.min_turns + 1)[:, 0]
        kind = dice.integers(1, 4)[:, 0]
        person = dice.integers(1, self.n_people)[:, 0]
        thing = dice.integers(1, self.n_objects)[:, 0]
        follow = dice.integers(n_t, 2)
        about_person = (kind == WHERE_PERSON) | (kind == HOLDING)
        person_place = np.take_along_axis(places, world.final_person_at, 1)  # (B, nP)
        object_place = np.take_along_axis(places, world.final_object_at, 1)  # (B, nO)
        female = world.people < len(FEMALE)
        the, user, agent = w["the"], w["<user>"], w["<agent>"]
        questions, answers, keywords = [], np.full((b, n_t, 2), self.tokenizer.pad_id), np.zeros((b, n_t), np.int64)
        for t in range(n_t):
            holder = world.holder[rows, thing]
            held = world.held[rows, person]
            # (article or pad, content word) for each kind of question
            choices = [
                (the, person_place[rows, person]),
                (the, object_place[rows, thing]),
                (-1, np.where(holder >= 0, names[rows, np.maximum(holder, 0)], w[NOBODY])),
                (np.where(held >= 0, the, -1), np.where(held >= 0, things[rows, np.maximum(held, 0)], w[NOTHING])),
            ]
            article = np.choose(kind, [np.broadcast_to(c[0], (b,)) for c in choices])
            content = np.choose(kind, [c[1] for c in choices])
            answers[:, t, 0] = np.where(article >= 0, article, content)
            answers[:, t, 1] = np.where(article >= 0, content, self.tokenizer.pad_id)
            keywords[:, t] = content
            if t == 0:
                name, obj = names[rows, person], things[rows, thing]
                lines = [
                    (user, w["where"], w["is"], name, w["now"], w["?"], agent),
                    (user, w["where"], w["is"], the, obj, w["?"], agent),
                    (user, w["who"], w["has"], the, obj, w["?"], agent),
                    (user, w["what"], w["is"], name, w["holding"], w["?"], agent),
                ]
            else:
                pronoun = np.where(about_person, np.where(female[rows, person], w["she"], w["he"]), w["it"])
                lines = [
                    (user, w["and"], w["where"], w["is"], pronoun, w["now"], w["?"], agent),
                    (user, w["and"], w["where"], w["is"], pronoun, w["now"], w["?"], agent),
                    (user, w["and"], w["who"], w["has"], w["it"], w["now"], w["?"], agent),
                    (user, w["and"], w["what"], w["is"], pronoun, w["holding"], w["?"], agent),
                ]
            questions.append(np.choose(kind[:, None], [_columns(b, 1, *line) for line in lines]))
            # The answer's person or object becomes the focus of the next question. If the focus
            # did not change, the next question asks the other thing about it.
            to_holder = (kind == WHO_HAS) & (holder >= 0)
            to_held = (kind == HOLDING) & (held >= 0)
            person = np.where(to_holder, holder, person)
            thing = np.where(to_held, held, thing)
            about_person = (about_person | to_holder) & ~to_held
            fresh_kind = np.where(
                about_person,
                np.where(follow[:, t] == 0, WHERE_PERSON, HOLDING),
                np.where(follow[:, t] == 0, WHERE_OBJECT, WHO_HAS),
            )
            kind = np.where(to_holder | to_held, fresh_kind, OTHER_KIND[kind])
        return questions, answers, keywords, n_turns


def _columns(batch: int, lines: int, *columns: int | np.ndarray) -> np.ndarray:
    """Lay out ``lines`` sentences per row, column by column: (B, lines * len(columns)) token ids.

    Each column is a token id shared by every sentence or a (B, lines) array of ids.
    """
    out = np.empty((batch, lines, len(columns)), np.int64)
    for c, column in enumerate(columns):
        out[:, :, c] = np.reshape(column, (batch, lines)) if np.ndim(column) == 1 and lines == 1 else column
    return out.reshape(batch, lines * len(columns))
