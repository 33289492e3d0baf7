"""Real human conversations from ``chatterbot-corpus``: the task behind ``Conversation-v0``.

The corpus (Gunther Cox, BSD-3-Clause, installed from PyPI with this package and never downloaded
at run time) holds short conversations in YAML files by language and category: greetings, trivia
questions, small talk about science, history, food and more. A conversation ``u0 u1 u2 ...``
alternates between the user and the agent; the agent must say the next utterance. Each
conversation is played twice when it is long enough, once with the agent speaking ``u1, u3, ...``
and once speaking ``u2, u4, ...`` (``u0`` then joins the context, which names the category), so every response in the corpus is
asked for. English is word-level; Chinese is character-level.

A whole conversation goes to ``test`` by a stable hash of its text (one in five), so no test
conversation is ever trained on (a stock reply such as "yes" can still occur in both).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from dialog_gym.jsonl import brief
from dialog_gym.tasks.arguments import check_int
from dialog_gym.tasks.dataset import MAX_ANSWER_TOKENS, MAX_TURNS, Example, ExampleTask, Turn
from dialog_gym.tokenizers import CharTokenizer, WordTokenizer

LANGUAGES = {"en": ("english", "word"), "zh": ("chinese", "char")}
TEST_HASH_MODULUS = 5


def corpus_directory(language: str) -> Path:
    """Where the installed ``chatterbot-corpus`` keeps the YAML files of ``language``."""
    if not isinstance(language, str) or language not in LANGUAGES:
        raise ValueError(f"unknown language {brief(language)}; expected one of {sorted(LANGUAGES)}")
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "Conversation-v0 reads the chatterbot-corpus package; install it with pip install chatterbot-corpus"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data" / LANGUAGES[language][0]


def load_conversations(language: str = "en", categories: str | list[str] | None = None) -> dict[str, list[list[str]]]:
    """Every conversation of the chosen categories, by category, as lists of utterances."""
    import yaml

    files = {path.stem: path for path in sorted(corpus_directory(language).glob("*.yml"))}
    chosen = sorted(files) if categories is None else [categories] if isinstance(categories, str) else list(categories)
    unknown = [c for c in chosen if c not in files]
    if unknown:
        raise ValueError(f"unknown categories {unknown} for language {language!r}; expected some of {sorted(files)}")
    out = {}
    for category in chosen:
        # The C loader when libyaml is present: the same safe subset of YAML, read about ten times faster.
        data = yaml.load(
            files[category].read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
        # Entries that are not lists of utterances (the corpus has one such slip) are left out.
        out[category] = [[str(u).strip() for u in c] for c in data.get("conversations") or [] if isinstance(c, list)]
    return out


def _check_categories(categories: object) -> str | list[str] | None:
    """``categories`` if it is None, one name or a non-empty list of names; else a one-line error."""
    if categories is None or isinstance(categories, str):
        return categories
    if not isinstance(categories, (list, tuple)) or not categories:
        raise ValueError(f"categories must be None, a name or a non-empty list of names, got {brief(categories)}")
    bad = [c for c in categories if not isinstance(c, str)]
    if bad:
        raise ValueError(
            f"categories must be names (strings), got {brief(categories)} holding {brief(bad[0])} "
            f"({type(bad[0]).__name__})"
        )
    return list(categories)


def _split_of(conversation: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(conversation, ensure_ascii=False).encode("utf-8")).digest()
    return "test" if int.from_bytes(digest[:8], "little") % TEST_HASH_MODULUS == 0 else "train"


class ConversationTask(ExampleTask):
    """The next utterance of a real conversation; ``language`` ``"en"`` or ``"zh"``.

    Conversations are cut before the first utterance longer than ``max_utterance_tokens`` tokens,
    and longer ones are played ``max_turns`` agent turns at a time, so observations stay short.
    """

    default_reward = "f1"

    def __init__(
        self,
        language: str = "en",
        categories: str | list[str] | None = None,
        max_turns: int = 4,
        max_utterance_tokens: int | None = None,
    ) -> None:
        if not isinstance(language, str) or language not in LANGUAGES:
            raise ValueError(f"unknown language {brief(language)}; expected one of {sorted(LANGUAGES)}")
        categories = _check_categories(categories)
        max_turns = check_int("max_turns", max_turns, 1, MAX_TURNS)
        tokenizer_kind = LANGUAGES[language][1]
        if max_utterance_tokens is None:
            max_utterance_tokens = 24 if tokenizer_kind == "word" else 40
        max_utterance_tokens = check_int("max_utterance_tokens", max_utterance_tokens, 1, MAX_ANSWER_TOKENS)
        self.language, self.categories = language, categories
        pieces = (WordTokenizer if tokenizer_kind == "word" else CharTokenizer).pieces
        examples = []
        for category, conversations in load_conversations(language, categories).items():
            for number, conversation in enumerate(conversations):
                kept = []
                for utterance in conversation:
                    if not pieces(utterance) or len(pieces(utterance)) > max_utterance_tokens:
                        break
                    kept.append(utterance)
                split = _split_of(conversation)
                for first in (
                    (0, 1) if len(kept) > 2 else (0,)
                ):  # the agent speaks kept[first + 1], kept[first + 3], ...
                    pairs = [(kept[i], kept[i + 1]) for i in range(first, len(kept) - 1, 2)]
                    context = f"{category} : {kept[0]}" if first else category
                    for start in range(0, len(pairs), max_turns):
                        turns = tuple(Turn(q, a, (a,)) for q, a in pairs[start : start + max_turns])
                        examples.append(Example(context=context, turns=turns, split=split, line=number + 1))
        if not examples:
            raise ValueError(
                f"no conversation of {categories} has an utterance pair within {max_utterance_tokens} tokens"
            )
        super().__init__(examples, tokenizer_kind, source=f"chatterbot-corpus ({language})")
