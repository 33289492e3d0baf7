import json
import os
import pickle
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dialog_gym.tokenizers import (
    SPECIAL_TOKENS,
    CharTokenizer,
    Tokenizer,
    VocabTokenizer,
    WordTokenizer,
    load_tokenizer,
)

CHINESE = "我喜欢学习中文。你呢？"
MIXED = "Hello 👋🏽 world! 我爱 🐍 Python，café\tnaïve 👨‍👩‍👧"
CLASSES = [WordTokenizer, CharTokenizer]


@pytest.mark.parametrize("cls", CLASSES)
def test_specials_take_ids_0_to_6(cls: type[VocabTokenizer]) -> None:
    tok = cls.from_corpus(["some text"])
    assert tok.tokens[: len(SPECIAL_TOKENS)] == list(SPECIAL_TOKENS)
    ids = (tok.pad_id, tok.bos_id, tok.eos_id, tok.sep_id, tok.unk_id, tok.user_id, tok.agent_id)
    assert ids == tuple(range(7))
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == list(range(7))
    assert [tok.id_to_token(i) for i in range(7)] == list(SPECIAL_TOKENS)
    assert isinstance(tok, Tokenizer)


def test_word_normalize_splits_words_and_punctuation() -> None:
    assert WordTokenizer.normalize("  Hello,   WORLD!!  ") == "hello , world ! !"
    assert WordTokenizer.normalize("ｆｕｌｌ－ｗｉｄｔｈ") == "ｆｕｌｌ － ｗｉｄｔｈ"  # full width is kept as written
    assert WordTokenizer.normalize("") == ""


@pytest.mark.parametrize("text", ["The cat sat. The DOG didn't!", CHINESE, MIXED])
def test_word_round_trip(text: str) -> None:
    tok = WordTokenizer.from_corpus([text])
    ids = tok.encode(text)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == WordTokenizer.normalize(text)
    assert tok.decode(np.array(ids, dtype=np.int64)) == WordTokenizer.normalize(text)


def test_char_normalize_collapses_whitespace_and_keeps_case() -> None:
    assert CharTokenizer.normalize("  Hi \t\n  There  ") == "Hi There"
    assert CharTokenizer.normalize("ｆｕｌｌ，ｏｋ？") == "ｆｕｌｌ，ｏｋ？"  # full width is kept as written
    assert CharTokenizer.normalize("\u3000中\u00a0文\n") == "中 文"


@pytest.mark.parametrize("text", ["Hello, World!", CHINESE, MIXED])
def test_char_round_trip(text: str) -> None:
    tok = CharTokenizer.from_corpus([text])
    ids = tok.encode(text)
    assert len(ids) == len(CharTokenizer.normalize(text))
    assert tok.unk_id not in ids
    assert tok.decode(ids) == CharTokenizer.normalize(text)


def test_chinese_char_tokenizer_has_one_id_per_character() -> None:
    tok = CharTokenizer.from_corpus([CHINESE])
    assert [tok.id_to_token(i) for i in tok.encode(CHINESE)] == list("我喜欢学习中文。你呢？")
    assert tok.decode(tok.encode("我学中文")) == "我学中文"


def test_unknown_pieces_map_to_unk() -> None:
    word = WordTokenizer.from_corpus(["the cat sat"])
    the, sat = word.token_to_id("the"), word.token_to_id("sat")
    assert word.encode("the zebra sat") == [the, word.unk_id, sat]
    assert word.decode(word.encode("the zebra")) == "the <unk>"
    char = CharTokenizer.from_corpus(["abc"])
    assert char.encode("aXc") == [char.token_to_id("a"), char.unk_id, char.token_to_id("c")]
    assert char.encode("🐍") == [char.unk_id]
    assert word.token_to_id("zebra") is None


def test_decode_skip_special_drops_specials() -> None:
    tok = WordTokenizer.from_corpus(["hello world"])
    hello, world = tok.encode("hello world")
    ids = [tok.pad_id, tok.pad_id, tok.bos_id, tok.user_id, hello]
    ids += [tok.sep_id, tok.agent_id, world, tok.eos_id]
    assert tok.decode(ids, skip_special=True) == "hello world"
    assert tok.decode(ids) == "<pad> <pad> <bos> <user> hello <sep> <agent> world <eos>"
    char = CharTokenizer.from_corpus(["ab"])
    assert char.decode([char.bos_id, *char.encode("ab"), char.eos_id], skip_special=True) == "ab"
    assert char.decode([char.bos_id, *char.encode("ab")]) == "<bos>ab"


def test_decode_rejects_bad_ids() -> None:
    tok = CharTokenizer.from_corpus(["ab"])
    with pytest.raises(ValueError, match="token id 9 is out of range"):
        tok.decode([0, 9])
    with pytest.raises(ValueError, match="token id -1"):
        tok.decode([-1])
    with pytest.raises(TypeError, match="integers"):
        tok.decode([1.0])
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="out of range"):
        tok.id_to_token(tok.vocab_size)
    assert tok.decode([]) == ""


def test_from_corpus_orders_by_count_then_alphabetically() -> None:
    tok = WordTokenizer.from_corpus(["b a c c", "c a d"], extra_tokens=["<ans>", "<ans>", "c"])
    assert tok.tokens == [*SPECIAL_TOKENS, "<ans>", "c", "a", "b", "d"]
    char = CharTokenizer.from_corpus(["zzyyyx"])
    assert char.tokens[7:] == ["y", "z", "x"]


def test_from_corpus_is_deterministic() -> None:
    corpus = ["the quick brown fox", "jumps over the lazy dog", "The end."]
    assert WordTokenizer.from_corpus(corpus) == WordTokenizer.from_corpus(list(reversed(corpus)))
    assert CharTokenizer.from_corpus(corpus) == CharTokenizer.from_corpus(iter(corpus))


def test_from_corpus_min_count_and_max_size() -> None:
    corpus = ["a a a b b c"]
    assert WordTokenizer.from_corpus(corpus, min_count=2).tokens[7:] == ["a", "b"]
    capped = WordTokenizer.from_corpus(corpus, max_size=8)
    assert capped.tokens[7:] == ["a"] and capped.vocab_size == 8
    assert WordTokenizer.from_corpus(corpus, max_size=7).vocab_size == 7
    assert WordTokenizer.from_corpus(corpus, max_size=100).vocab_size == 10


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"min_count": 0}, "min_count must be an integer >= 1"),
        ({"min_count": 1.5}, "min_count"),
        ({"max_size": 6}, "max_size must be None or an integer >= 7"),
        ({"max_size": 8, "extra_tokens": ["<x>", "<y>"]}, "an integer >= 9"),
        ({"max_size": "10"}, "max_size"),
        ({"extra_tokens": "<x>"}, "extra_tokens must be an iterable of strings"),
        ({"extra_tokens": [""]}, "empty"),
    ],
)
def test_from_corpus_rejects_bad_arguments(cls: type[VocabTokenizer], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls.from_corpus(["a b"], **kwargs)


def test_from_corpus_rejects_bad_texts() -> None:
    with pytest.raises(ValueError, match="got the str"):
        WordTokenizer.from_corpus("a single string")
    with pytest.raises(ValueError, match=r"texts\[1\] is int"):
        CharTokenizer.from_corpus(["ok", 3])  # type: ignore[list-item]  # deliberate bad input
    with pytest.raises(ValueError, match="whitespace"):
        WordTokenizer.from_corpus(["a"], extra_tokens=["two words"])


def test_constructor_validates_tokens() -> None:
    with pytest.raises(ValueError, match="expected the specials"):
        WordTokenizer(["a", "b"])
    with pytest.raises(ValueError, match="appears twice"):
        CharTokenizer([*SPECIAL_TOKENS, "a", "a"])
    with pytest.raises(TypeError, match="base class"):
        VocabTokenizer(list(SPECIAL_TOKENS))


@pytest.mark.parametrize("cls", CLASSES)
def test_save_load_round_trip(cls: type[VocabTokenizer], tmp_path) -> None:
    tok = cls.from_corpus([CHINESE, MIXED], extra_tokens=["<ans>"])
    path = tmp_path / "tok.json"
    tok.save(path)
    loaded = load_tokenizer(path)
    assert type(loaded) is cls
    assert loaded == tok and hash(loaded) == hash(tok)
    assert loaded.encode(MIXED) == tok.encode(MIXED)
    assert json.loads(path.read_text(encoding="utf-8"))["type"] == cls.kind
    assert os.listdir(tmp_path) == ["tok.json"]  # no temp file left behind
    tok.save(str(path))  # overwrite in place
    assert load_tokenizer(str(path)) == tok


def test_equality_needs_same_type_and_tokens() -> None:
    word = WordTokenizer.from_corpus(["a b"])
    char = CharTokenizer(word.tokens)
    assert word != char
    assert word != WordTokenizer.from_corpus(["a c"])
    assert word == WordTokenizer(word.tokens)


def test_tokens_property_is_a_copy() -> None:
    tok = WordTokenizer.from_corpus(["a b"])
    tok.tokens.append("c")
    assert tok.vocab_size == 9 and tok.token_to_id("c") is None


@pytest.mark.parametrize("cls", CLASSES)
def test_pickle_round_trip(cls: type[VocabTokenizer]) -> None:
    tok = cls.from_corpus([MIXED])
    clone = pickle.loads(pickle.dumps(tok))
    assert clone == tok and type(clone) is cls
    assert clone.decode(clone.encode(MIXED)) == tok.decode(tok.encode(MIXED))


def test_repr_names_class_and_size() -> None:
    tok = WordTokenizer.from_corpus(["one two three four five six seven eight nine ten"])
    assert re.fullmatch(r"WordTokenizer\(vocab_size=17, learned=\[.*, \.\.\.\]\)", repr(tok))


_SPECIALS = list(SPECIAL_TOKENS)
_BAD_FILES = {
    "not_json": ("{not json", "not valid JSON"),
    "not_utf8": (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    "top_level_list": (json.dumps(_SPECIALS), "top level is list"),
    "missing_type": (json.dumps({"tokens": _SPECIALS}), "'type' is None; expected one of"),
    "wrong_type": (json.dumps({"type": "bpe", "tokens": _SPECIALS}), "'type' is 'bpe'"),
    "list_type": (json.dumps({"type": ["word"], "tokens": _SPECIALS}), "'type' is \\['word'\\]"),
    "missing_tokens": (json.dumps({"type": "word"}), "no 'tokens' key"),
    "tokens_not_list": (json.dumps({"type": "word", "tokens": "abc"}), "tokens is str; expected"),
    "token_not_str": (json.dumps({"type": "char", "tokens": [*_SPECIALS, 5]}), "token 7 is 5"),
    "duplicate": (json.dumps({"type": "char", "tokens": [*_SPECIALS, "a", "a"]}), "appears twice"),
    "specials_order": (
        json.dumps({"type": "word", "tokens": ["<bos>", "<pad>", *_SPECIALS[2:]]}),
        "expected the specials",
    ),
    "specials_missing": (json.dumps({"type": "word", "tokens": ["a"]}), "expected the specials"),
    "word_with_space": (json.dumps({"type": "word", "tokens": [*_SPECIALS, "a b"]}), "whitespace"),
}


@pytest.mark.parametrize("case", sorted(_BAD_FILES))
def test_load_rejects_bad_file(case: str, tmp_path) -> None:
    content, match = _BAD_FILES[case]
    path = tmp_path / f"{case}.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as excinfo:
        load_tokenizer(path)
    message = str(excinfo.value)
    assert str(path) in message and "expected" in message
    assert "\n" not in message


def test_load_missing_file_names_it(tmp_path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_tokenizer(path)


@given(st.text())
def test_char_round_trip_property(text: str) -> None:
    tok = CharTokenizer.from_corpus([text])
    assert tok.decode(tok.encode(text)) == CharTokenizer.normalize(text)
    assert tok.unk_id not in tok.encode(text)


@given(st.text())
def test_word_round_trip_property(text: str) -> None:
    tok = WordTokenizer.from_corpus([text])
    assert tok.decode(tok.encode(text)) == WordTokenizer.normalize(text)
    assert tok.unk_id not in tok.encode(text)


@given(st.lists(st.text(max_size=20), max_size=5), st.lists(st.integers(0, 40), max_size=30))
def test_skip_special_property(texts: list[str], ids: list[int]) -> None:
    tok = CharTokenizer.from_corpus(texts)
    ids = [i % tok.vocab_size for i in ids]
    kept = [i for i in ids if i >= len(SPECIAL_TOKENS)]
    assert tok.decode(ids, skip_special=True) == tok.decode(kept)


# -- text is kept as written ----------------------------------------------------------------------

FULL_WIDTH = "小红在哪里？她说：“你好，ｏｋ！”"


def test_chinese_text_round_trips_exactly_through_the_char_tokenizer() -> None:
    tok = CharTokenizer.from_corpus([FULL_WIDTH])
    assert tok.decode(tok.encode("小红在哪里？")) == "小红在哪里？"
    assert tok.decode(tok.encode(FULL_WIDTH)) == FULL_WIDTH
    assert tok.token_to_id("？") is not None and tok.token_to_id("?") is None


def test_the_word_tokenizer_keeps_full_width_punctuation() -> None:
    tok = WordTokenizer.from_corpus([FULL_WIDTH])
    assert tok.decode(tok.encode("小红在哪里？")) == "小红在哪里 ？"
    assert "?" not in tok.tokens


def test_chinese_conversations_are_shown_as_written() -> None:
    import gymnasium as gym

    import dialog_gym  # noqa: F401

    env = gym.make("Conversation-v0", language="zh")
    tok = env.unwrapped.tokenizer
    assert tok.token_to_id("？") is not None
    turns = [t for e in env.unwrapped.task.examples["train"] for t in e.turns]
    asked = next(t.question for t in turns if "？" in t.question)
    assert tok.decode(tok.encode(asked)) == " ".join(asked.split())


# -- bad tokenizer input --------------------------------------------------------------------------


def test_texts_with_a_lone_surrogate_are_refused() -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] holds the lone surrogate '\\ud800' at character 2"):
        CharTokenizer.from_corpus(["ok", "ab\ud800"])
    with pytest.raises(ValueError, match="token 7 '\\\\udc00' holds a lone surrogate"):
        WordTokenizer([*SPECIAL_TOKENS, "\udc00"])


@pytest.mark.parametrize(
    "content,match",
    [
        ('{"type": "word", "type": "char", "tokens": []}', "key 'type' appears twice"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        (json.dumps({"type": "char", "tokens": [*SPECIAL_TOKENS, "\ud800"]}), "lone surrogate"),
    ],
    ids=["duplicate_key", "deep", "surrogate"],
)
def test_load_rejects_what_json_lets_through(tmp_path, content: str, match: str) -> None:
    path = tmp_path / "tok.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match) as excinfo:
        load_tokenizer(path)
    assert str(path) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_load_names_a_directory_and_a_non_path(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        load_tokenizer(tmp_path)
    with pytest.raises(TypeError, match=r"got 3 \(int\)"):
        load_tokenizer(3)  # type: ignore[arg-type]  # deliberate bad input


# -- Hugging Face tokenizer directories -----------------------------------------------------------


def _hf_dir(tmp_path, files: dict[str, str]):
    directory = tmp_path / "tok"
    directory.mkdir()
    for name, content in files.items():
        (directory / name).write_text(content, encoding="utf-8")
    return directory


def _tokenizer_without_tokens(tmp_path):
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models
    from transformers import PreTrainedTokenizerFast

    directory = tmp_path / "no_tokens"
    PreTrainedTokenizerFast(tokenizer_object=RustTokenizer(models.BPE()), eos_token="<eos>").save_pretrained(directory)
    return directory


@pytest.mark.parametrize(
    "files,match",
    [
        ({}, "holds no tokenizer files"),
        ({"tokenizer.json": "{not json"}, r"tokenizer\.json: not valid JSON"),
        ({"tokenizer_config.json": "[" * 100_000 + "]" * 100_000}, r"tokenizer_config\.json: nested too deeply"),
        ({"tokenizer.json": "[1, 2]"}, r"tokenizer\.json holds a JSON list; expected an object"),
        ({"tokenizer.json": '{"a": 1}'}, "cannot be loaded by AutoTokenizer"),
        ({"tokenizer.json": b"\xff\xfe".decode("latin-1")}, "not UTF-8 text|not valid JSON"),
    ],
    ids=["empty", "not_json", "deep", "list", "wrong_schema", "not_utf8"],
)
def test_bad_hf_tokenizer_directories_are_refused_in_one_line(tmp_path, files: dict, match: str) -> None:
    pytest.importorskip("transformers")
    from dialog_gym.hf_tokenizer import as_hf_tokenizer

    directory = _hf_dir(tmp_path, files)
    with pytest.raises(ValueError, match=match) as excinfo:
        as_hf_tokenizer(str(directory))
    assert str(directory) in str(excinfo.value) and "\n" not in str(excinfo.value)


def test_an_hf_tokenizer_without_a_token_to_spell_text_is_refused(tmp_path) -> None:
    pytest.importorskip("transformers")
    import gymnasium as gym

    import dialog_gym  # noqa: F401

    directory = _tokenizer_without_tokens(tmp_path)
    with pytest.raises(ValueError, match=r"holds 1 token\(s\), none of which spells text") as excinfo:
        gym.make("DialogQA-v0", tokenizer=str(directory))
    assert str(directory) in str(excinfo.value) and "\n" not in str(excinfo.value)
