"""The JSONL dataset path: ``gym.make("DialogQA-v0", dataset=path)``, ``read_jsonl`` and ``JsonlTask``."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym  # noqa: F401  (registers the env ids)
from dialog_gym import jsonl
from dialog_gym.demonstrations import read_preferences
from dialog_gym.tasks import dataset as dataset_module
from dialog_gym.tasks.dataset import DatasetError, JsonlTask, read_jsonl
from dialog_gym.tokenizers import CharTokenizer, WordTokenizer

SINGLE = [
    {
        "context": "Alice lives in Paris.",
        "question": "Where does Alice live?",
        "answer": "In Paris.",
        "keywords": ["Paris"],
        "split": "train",
    },
    {"context": "Bob owns a red car.", "question": "What colour is Bob's car?", "answer": "red", "split": "test"},
    {"context": "The sky is blue today.", "question": "What colour is the sky?", "answer": "blue", "split": "train"},
    {
        "context": "Carol reads books.",
        "question": "What does Carol read?",
        "answer": "she reads books",
        "keywords": ["books", "reads"],
        "split": "test",
    },
]
MULTI = [
    {
        "context": "Dave has two cats and a dog.",
        "split": "train",
        "turns": [
            {"question": "How many cats does Dave have?", "answer": "two cats", "keywords": ["two"]},
            {"question": "And what else?", "answer": "a dog"},
        ],
    },
    {
        "context": "Eve works in Rome as a baker.",
        "split": "test",
        "turns": [
            {"question": "Where does Eve work?", "answer": "in Rome", "keywords": ["Rome"]},
            {"question": "As what?", "answer": "a baker", "keywords": ["baker"]},
            {"question": "Who works in Rome?", "answer": "Eve"},
        ],
    },
    {
        "context": "Frank likes green tea.",
        "split": "train",
        "turns": [
            {"question": "What does Frank like?", "answer": "green tea"},
            {"question": "Which colour of tea?", "answer": "green"},
        ],
    },
]
CHINESE = [
    {
        "context": "小明住在北京。他喜欢猫。",
        "split": "train",
        "turns": [
            {"question": "小明住在哪里？", "answer": "北京", "keywords": ["北京"]},
            {"question": "他喜欢什么？", "answer": "他喜欢猫"},
        ],
    },
    {
        "context": "今天天气很好，我们去公园。",
        "split": "test",
        "turns": [
            {"question": "天气怎么样？", "answer": "很好"},
            {"question": "我们去哪里？", "answer": "去公园", "keywords": ["公园"]},
        ],
    },
]
CHINESE_SINGLE = [
    {
        "context": "小红有三本书。",
        "question": "小红有几本书？",
        "answer": "三本书",
        "keywords": ["三"],
        "split": "train",
    },
    {"context": "老师在教室里。", "question": "老师在哪里？", "answer": "在教室里", "split": "test"},
]
FILES = {
    "multi": MULTI,
    "single": SINGLE,
    "mixed": SINGLE + MULTI,
}


def write_jsonl(tmp_path: Path, lines: list[Any], name: str = "data.jsonl") -> Path:
    """Write one line per item: a dict as JSON, a string as it is."""
    path = tmp_path / name
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n" for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def make(path: Path, **kwargs: Any) -> gym.Env:
    return gym.make("DialogQA-v0", dataset=str(path), **kwargs)


def turns_of(record: dict) -> list[dict]:
    return record["turns"] if "turns" in record else [record]


def of_split(records: list[dict], split: str) -> list[dict]:
    return [r for r in records if r["split"] == split]


def opening(env: gym.Env, obs: np.ndarray) -> tuple[str, str]:
    """The context and first question of a reset observation ``<bos> c <sep> <user> q <agent>``."""
    tok = env.unwrapped.tokenizer
    ids = obs[obs != tok.pad_id].tolist()
    assert ids[0] == tok.bos_id and ids[-1] == tok.agent_id
    sep = ids.index(tok.sep_id)
    assert ids[sep + 1] == tok.user_id
    return tok.decode(ids[1:sep]), tok.decode(ids[sep + 2 : -1])


def last_question(env: gym.Env, obs: np.ndarray) -> str:
    """The newest question of an observation that ends ``<user> q <agent>``."""
    tok = env.unwrapped.tokenizer
    ids = obs.tolist()
    assert ids[-1] == tok.agent_id
    user = len(ids) - 1 - ids[::-1].index(tok.user_id)
    return tok.decode(ids[user + 1 : -1])


def play(env: gym.Env, info: dict, answers: list[str] | None = None) -> tuple[list[dict], dict]:
    """Answer every turn, with the reference (``expert_action``) or with ``answers``; return the
    infos of the steps that ended an answer, and the last info."""
    tok = env.unwrapped.tokenizer
    ended, done = [], False
    planned: list[int] = []
    while not done:
        if answers is None:
            action = info["expert_action"]
        else:
            if not planned:
                planned = [*tok.encode(answers[len(ended)]), tok.eos_id]
            action = planned.pop(0)
        _, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
        if info["answer_done"]:
            ended.append(info)
    assert not truncated
    return ended, info


# -- loading valid files --------------------------------------------------------------------------


def test_read_jsonl_parses_both_line_forms(tmp_path) -> None:
    path = write_jsonl(tmp_path, [SINGLE[0], "", "   ", MULTI[1]])
    single, multi = read_jsonl(path)
    assert (single.line, multi.line) == (1, 4)  # blank lines count towards line numbers
    assert single.context == SINGLE[0]["context"] and single.split == "train"
    assert [(t.question, t.answer, t.keywords) for t in single.turns] == [
        ("Where does Alice live?", "In Paris.", ("Paris",))
    ]
    assert multi.split == "test"
    assert [(t.question, t.answer) for t in multi.turns] == [(t["question"], t["answer"]) for t in MULTI[1]["turns"]]
    assert [t.keywords for t in multi.turns] == [("Rome",), ("baker",), ("Eve",)]


@pytest.mark.parametrize("records", list(FILES.values()), ids=list(FILES))
def test_file_loads_with_one_episode_per_line(tmp_path, records) -> None:
    env = make(write_jsonl(tmp_path, records))
    task = env.unwrapped.task
    assert isinstance(task, JsonlTask)
    for split in ("train", "test"):
        assert task.num_examples(split) == len(of_split(records, split))
    assert task.limits.max_turns == max(len(turns_of(r)) for r in records)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert info["turn"] == 0


@pytest.mark.parametrize("records", list(FILES.values()), ids=list(FILES))
def test_episode_text_matches_the_file(tmp_path, records) -> None:
    path = write_jsonl(tmp_path, records)
    for split in ("train", "test"):
        env = make(path, split=split)
        for k, record in enumerate(of_split(records, split)):
            obs, info = env.reset(options={"index": k})
            turns = turns_of(record)
            context, question = opening(env, obs)
            assert context == WordTokenizer.normalize(record["context"])
            assert question == WordTokenizer.normalize(turns[0]["question"])
            assert info["reference"] == WordTokenizer.normalize(turns[0]["answer"])
            for turn in turns[1:]:
                for _ in range(len(env.unwrapped.tokenizer.encode(info["reference"])) + 1):
                    obs, _, _, _, info = env.step(info["expert_action"])
                assert last_question(env, obs) == WordTokenizer.normalize(turn["question"])
                assert info["reference"] == WordTokenizer.normalize(turn["answer"])


def test_whole_multi_turn_dialogue_is_in_the_final_observation(tmp_path) -> None:
    env = make(write_jsonl(tmp_path, MULTI), split="test")
    tok = env.unwrapped.tokenizer
    record = of_split(MULTI, "test")[0]
    obs, info = env.reset(options={"index": 0})
    terminated = False
    while not terminated:
        obs, _, terminated, truncated, info = env.step(info["expert_action"])
        assert not truncated
    expected = [tok.bos_id, *tok.encode(record["context"]), tok.sep_id]
    for turn in record["turns"]:
        expected += [tok.user_id, *tok.encode(turn["question"]), tok.agent_id, *tok.encode(turn["answer"]), tok.eos_id]
    assert obs[obs != tok.pad_id].tolist() == expected
    assert info["dialogue"]["answers"] == len(record["turns"])


@pytest.mark.parametrize("records", list(FILES.values()), ids=list(FILES))
def test_oracle_succeeds_on_every_example_of_both_splits(tmp_path, records) -> None:
    path = write_jsonl(tmp_path, records)
    for split in ("train", "test"):
        env = make(path, split=split)
        for k, record in enumerate(of_split(records, split)):
            obs, info = env.reset(options={"index": k})
            ended, final = play(env, info)
            assert final["dialogue"]["success"] is True, (split, k)
            assert final["dialogue"]["questions"] == len(turns_of(record))
            assert [i["answer_reward"] for i in ended] == [1.0] * len(turns_of(record))


CHINESE_FILES = {"multi": CHINESE, "single": CHINESE_SINGLE}


@pytest.mark.parametrize("records", list(CHINESE_FILES.values()), ids=list(CHINESE_FILES))
def test_chinese_file_with_char_tokenizer(tmp_path, records) -> None:
    path = write_jsonl(tmp_path, records)
    env = make(path, tokenizer="char")
    tok = env.unwrapped.tokenizer
    assert isinstance(tok, CharTokenizer)
    texts = [r["context"] for r in records]
    texts += [t[field] for r in records for t in turns_of(r) for field in ("question", "answer")]
    for text in texts:
        ids = tok.encode(text)
        assert tok.unk_id not in ids
        assert tok.decode(ids) == CharTokenizer.normalize(text)
    for split in ("train", "test"):
        env = make(path, tokenizer="char", split=split)
        for k, record in enumerate(of_split(records, split)):
            obs, info = env.reset(options={"index": k})
            turns = turns_of(record)
            expected = (CharTokenizer.normalize(record["context"]), CharTokenizer.normalize(turns[0]["question"]))
            assert opening(env, obs) == expected
            assert info["reference"] == turns[0]["answer"]
            ended, final = play(env, info)
            assert final["dialogue"]["success"] is True
            assert final["reference"] == turns[-1]["answer"]


# -- keywords and the keyword reward --------------------------------------------------------------


def test_keywords_default_to_the_answer(tmp_path) -> None:
    examples = read_jsonl(write_jsonl(tmp_path, MULTI))
    for example, record in zip(examples, MULTI):
        for turn, raw in zip(example.turns, record["turns"]):
            assert turn.keywords == tuple(raw.get("keywords", [raw["answer"]]))


KEYWORD_FILE = [
    {
        "context": "Gina was born in Oslo. Her brother Hal was born in Bergen.",
        "split": "train",
        "turns": [
            {"question": "Where was Gina born?", "answer": "she was born in Oslo", "keywords": ["Oslo"]},
            {"question": "Where was Hal born?", "answer": "in Bergen"},
        ],
    },
]


@pytest.mark.parametrize("reward", [None, "keyword"])
def test_keyword_reward_is_plus_one_when_the_answer_holds_the_keyword(tmp_path, reward) -> None:
    path = write_jsonl(tmp_path, KEYWORD_FILE)
    kwargs = {} if reward is None else {"reward": reward}  # keyword is also the dataset's default
    env = make(path, **kwargs)

    def rewards(answers: list[str]) -> list[float]:
        obs, info = env.reset(options={"index": 0})
        ended, _ = play(env, info, answers)
        return [i["answer_reward"] for i in ended]

    assert rewards(["oslo", "in bergen"]) == [1.0, 1.0]  # the keyword alone is enough
    assert rewards(["gina was born in oslo", "hal was born in bergen"]) == [1.0, 1.0]
    assert rewards(["oslo in", "bergen in"]) == [1.0, -1.0]  # the default keyword is the answer "in Bergen"
    assert rewards(["bergen", "bergen"]) == [-1.0, -1.0]
    assert rewards(["born in", "in"]) == [-1.0, -1.0]


# -- malformed files ------------------------------------------------------------------------------

GOOD = {"context": "c", "question": "q", "answer": "a"}
BAD_LINES = {
    "not_json": ('{"context": "c", "question": "q"', "not valid JSON"),
    "array": ('["c", "q", "a"]', "expected a JSON object, got list"),
    "missing_answer": ({"context": "c", "question": "q"}, "missing field 'answer'"),
    "missing_context": ({"question": "q", "answer": "a"}, "missing field 'context'"),
    "question_not_string": ({"context": "c", "question": 5, "answer": "a"}, "'question' must be a non-empty string"),
    "blank_answer": ({"context": "c", "question": "q", "answer": "  "}, "'answer' must be a non-empty string"),
    "empty_turns": ({"context": "c", "turns": []}, "'turns' must be a non-empty list"),
    "turns_not_list": ({"context": "c", "turns": {"question": "q", "answer": "a"}}, "'turns' must be a non-empty list"),
    "turn_missing_answer": (
        {"context": "c", "turns": [{"question": "q", "answer": "a"}, {"question": "q"}]},
        "turn 1: missing field 'answer'",
    ),
    "question_and_turns": (
        {**GOOD, "turns": [{"question": "q", "answer": "a"}]},
        "either 'question'/'answer' or 'turns'",
    ),
    "bad_split": ({**GOOD, "split": "dev"}, "'split' must be one of ['train', 'test'], got 'dev'"),
    "keywords_not_list": ({**GOOD, "keywords": "a"}, "'keywords' must be a non-empty list of non-empty strings"),
    "keywords_empty": ({**GOOD, "keywords": []}, "'keywords' must be a non-empty list"),
    "keyword_not_string": ({**GOOD, "keywords": [3]}, "'keywords' must be a non-empty list of non-empty strings"),
}


@pytest.mark.parametrize(("bad", "problem"), list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_malformed_line_is_reported_with_file_line_and_problem(tmp_path, bad, problem) -> None:
    path = write_jsonl(tmp_path, [GOOD, "", bad, GOOD], name="my_data.jsonl")
    with pytest.raises(DatasetError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert "my_data.jsonl" in message
    assert "line 3:" in message
    assert problem in message
    assert isinstance(info.value, ValueError)


def test_malformed_line_is_reported_through_gym_make(tmp_path) -> None:
    path = write_jsonl(tmp_path, [GOOD, {"context": "c", "question": "q"}], name="broken.jsonl")
    with pytest.raises(
        ValueError, match=r"broken\.jsonl: 1 malformed line\(s\): line 2: missing field 'answer'"
    ) as info:
        make(path)
    assert "\n" not in str(info.value)


def test_keyword_missing_from_its_answer_is_reported(tmp_path) -> None:
    lines = [
        {"context": "c", "turns": [{"question": "q", "answer": "in Paris"}, {"question": "q", "answer": "x"}]},
        {
            "context": "c",
            "turns": [
                {"question": "q", "answer": "in Paris"},
                {"question": "q", "answer": "in Rome", "keywords": ["Rome", "London"]},
            ],
        },
    ]
    path = write_jsonl(tmp_path, lines, name="kw.jsonl")
    read_jsonl(path)  # the line is well-formed JSON: the check needs the tokenizer
    with pytest.raises(DatasetError) as info:
        JsonlTask(path)
    message = str(info.value)
    assert "kw.jsonl" in message
    assert "line 2: turn 1: keyword 'London' does not occur in the answer 'in Rome'" in message
    assert "Rome'" not in message.replace("answer 'in Rome'", "")  # the keyword that occurs is not reported
    with pytest.raises(ValueError, match="keyword 'London'"):
        make(path)


def test_keyword_split_across_tokens_is_not_in_the_answer(tmp_path) -> None:
    # "par" is a substring of "paris" but not one of its word tokens.
    turn = {"question": "q", "answer": "paris", "keywords": ["par"]}
    path = write_jsonl(tmp_path, [{"context": "c", "turns": [turn, turn]}])
    with pytest.raises(DatasetError, match="line 1: turn 0: keyword 'par' does not occur"):
        JsonlTask(path)


def test_three_bad_lines_among_good_ones_are_all_reported(tmp_path) -> None:
    lines = [GOOD, "not json", GOOD, {"context": "c"}, GOOD, "", {**GOOD, "split": "val"}, GOOD]
    path = write_jsonl(tmp_path, lines, name="three.jsonl")
    with pytest.raises(DatasetError) as info:
        read_jsonl(path)
    message = str(info.value)
    assert "three.jsonl" in message and "3 malformed line(s)" in message
    assert [int(n) for n in re.findall(r"\bline (\d+):", message)] == [2, 4, 7]
    assert "not valid JSON" in message and "missing field 'question'" in message and "'val'" in message


def test_missing_file(tmp_path) -> None:
    path = tmp_path / "nowhere.jsonl"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl.*does not exist"):
        read_jsonl(path)
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jsonl"):
        make(path)


@pytest.mark.parametrize("content", ["", "\n", "\n   \n\t\n"], ids=["empty", "newline", "blank_lines"])
def test_file_without_examples(tmp_path, content) -> None:
    path = tmp_path / "hollow.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DatasetError, match=r"hollow\.jsonl.*holds no examples"):
        read_jsonl(path)
    with pytest.raises(ValueError, match="holds no examples"):
        make(path)


# -- splits ---------------------------------------------------------------------------------------


def numbered(n: int) -> list[dict]:
    """``n`` distinct two-turn lines without a split field."""
    return [
        {
            "context": f"item {i} weighs {i % 7} kilos",
            "turns": [
                {"question": f"what does item {i} weigh ?", "answer": f"{i % 7} kilos"},
                {"question": "which item ?", "answer": f"item {i}"},
            ],
        }
        for i in range(n)
    ]


def split_contexts(task: JsonlTask) -> dict[str, list[str]]:
    return {split: [e.context for e in task.examples[split]] for split in ("train", "test")}


def test_split_without_split_fields_is_stable_and_one_in_five(tmp_path) -> None:
    records = numbered(200)
    path = write_jsonl(tmp_path, records)
    first = split_contexts(JsonlTask(path))
    assert first == split_contexts(JsonlTask(path))
    assert sorted(first["train"] + first["test"]) == sorted(r["context"] for r in records)
    assert 20 <= len(first["test"]) <= 60  # about 40 expected
    # The assignment follows each line's content, not its position in the file.
    shuffled = records[:]
    random.Random(0).shuffle(shuffled)
    again = split_contexts(JsonlTask(write_jsonl(tmp_path, shuffled, name="shuffled.jsonl")))
    assert {s: sorted(c) for s, c in again.items()} == {s: sorted(c) for s, c in first.items()}
    # Both splits play through the env.
    for split in ("train", "test"):
        env = make(path, split=split)
        obs, info = env.reset(options={"index": 0})
        _, final = play(env, info)
        assert final["dialogue"]["success"] is True


def test_explicit_split_fields_decide_the_split(tmp_path) -> None:
    task = JsonlTask(write_jsonl(tmp_path, MULTI))
    assert split_contexts(task) == {s: [r["context"] for r in of_split(MULTI, s)] for s in ("train", "test")}


def test_empty_split_is_refused(tmp_path) -> None:
    path = write_jsonl(tmp_path, [{**r, "split": "train"} for r in MULTI])
    make(path, split="train").reset(seed=0)
    with pytest.raises(ValueError, match="'test' split .* holds no episode"):
        make(path, split="test")


def test_reset_index_out_of_the_split_is_refused(tmp_path) -> None:
    env = make(write_jsonl(tmp_path, MULTI), split="test")
    with pytest.raises(ValueError, match="'test' split holds 1 episodes"):
        env.reset(options={"index": 1})


def test_dataset_cannot_be_combined_with_world_arguments(tmp_path) -> None:
    path = write_jsonl(tmp_path, MULTI)
    with pytest.raises(ValueError, match=r"n_people.*dataset="):
        make(path, n_people=4)


def test_unknown_tokenizer_name_is_refused(tmp_path) -> None:
    # Any other string names a Hugging Face tokenizer directory, which must exist.
    with pytest.raises(ValueError, match="tokenizer='bpe' is not a directory; pass 'word', 'char'"):
        make(write_jsonl(tmp_path, MULTI), tokenizer="bpe")


def test_a_byte_order_mark_is_accepted_and_bad_bytes_are_reported_by_line(tmp_path):
    good = '{"context": "Alice lives in Paris.", "question": "Where does Alice live?", "answer": "Paris"}\n'
    with_bom = tmp_path / "bom.jsonl"
    with_bom.write_bytes(b"\xef\xbb\xbf" + good.encode())
    gym.make("DialogQA-v0", dataset=str(with_bom)).reset(seed=0)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(good.encode() + '{"context": "caf\xe9"}\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"(?s)latin1.jsonl.*line 2: not UTF-8"):
        gym.make("DialogQA-v0", dataset=str(latin1))


# -- strict reading: what json lets through silently ----------------------------------------------

STRICT_LINES = {
    "misspelt_field": (
        '{"context": "c", "qustion": "q", "answer": "a"}',
        "unknown field 'qustion' (did you mean 'question'?); expected fields: answer, context, keywords, question, split",
    ),
    "misspelt_turn_field": (
        '{"context": "c", "turns": [{"question": "q", "answr": "a"}]}',
        "turn 0: unknown field 'answr' (did you mean 'answer'?)",
    ),
    "field_beside_turns": (
        '{"context": "c", "keywords": ["a"], "turns": [{"question": "q", "answer": "a"}]}',
        "unknown field 'keywords'; expected fields: context, split, turns",
    ),
    "duplicate_key": ('{"context": "c", "question": "q", "answer": "a", "answer": "b"}', "key 'answer' appears twice"),
    "lone_surrogate": (
        '{"context": "c\\ud800", "question": "q", "answer": "a"}',
        "field 'context' holds the lone surrogate '\\ud800' at character 1",
    ),
    "surrogate_in_a_turn": (
        '{"context": "c", "turns": [{"question": "q", "answer": "\\udfff"}]}',
        "field 'turns[0].answer' holds the lone surrogate",
    ),
    "deep_nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
    "nesting_json_reads": (
        '{"context": "c", "question": "q", "answer": "a", "keywords": ' + "[" * 40 + "]" * 40 + "}",
        "nested too deeply to read",
    ),
    "too_many_digits": ('{"context": ' + "9" * 5000 + "}", "not valid JSON"),
    "too_many_turns": (
        json.dumps({"context": "c", "turns": [{"question": "q", "answer": "a"}] * 65}),
        "'turns' holds 65 turns, more than 64",
    ),
}


@pytest.mark.parametrize(("bad", "problem"), list(STRICT_LINES.values()), ids=list(STRICT_LINES))
def test_what_json_lets_through_is_refused_in_one_line(tmp_path, bad, problem) -> None:
    path = write_jsonl(tmp_path, [GOOD, bad], name="strict.jsonl")
    with pytest.raises(DatasetError) as info:
        make(path)
    message = str(info.value)
    assert "strict.jsonl: 1 malformed line(s): line 2: " in message
    assert problem in message and "\n" not in message


def test_a_huge_line_is_refused_without_reading_it_whole(tmp_path) -> None:
    path = tmp_path / "huge.jsonl"
    context = "word " * 4_000_000  # 20 MB: a window of 4 million tokens
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "context": context}) + "\n" + json.dumps(GOOD))
    start = time.perf_counter()
    with pytest.raises(
        DatasetError, match=r"line 2: 20000\d+ bytes long, more than the 1048576 a line may hold"
    ) as info:
        make(path)
    assert time.perf_counter() - start < 1.0
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "record,problem",
    [
        ({**GOOD, "context": "w " * 5000}, "line 1: the context is 5000 tokens long, more than the 4096"),
        ({**GOOD, "question": "w " * 2000}, "line 1: turn 0: the question is 2000 tokens long, more than the 1024"),
        ({**GOOD, "answer": "w " * 1500, "keywords": ["w"]}, "turn 0: the answer is 1500 tokens long"),
        (
            {"context": "w " * 4000, "turns": [{"question": "q", "answer": "a " * 1000}] * 5},
            "line 1: the whole dialogue (context, questions and answers) is 9005 tokens long, more than the 8192",
        ),
    ],
    ids=["context", "question", "answer", "dialogue"],
)
def test_texts_longer_than_an_episode_can_show_are_named(tmp_path, record, problem) -> None:
    with pytest.raises(DatasetError, match=re.escape(problem)) as info:
        make(write_jsonl(tmp_path, [record]))
    assert "\n" not in str(info.value)


def test_an_episode_table_too_large_is_refused_before_it_is_allocated(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(dataset_module, "MAX_TABLE_CELLS", 100)
    with pytest.raises(
        DatasetError, match=r"3 examples padded to 3 turns of \d+ tokens need \d+ token slots, more than 100"
    ):
        make(write_jsonl(tmp_path, MULTI))


def test_file_size_and_line_count_are_bounded(tmp_path, monkeypatch) -> None:
    path = write_jsonl(tmp_path, [GOOD] * 5, name="five.jsonl")
    monkeypatch.setattr(jsonl, "MAX_LINES", 3)
    with pytest.raises(DatasetError, match=r"five\.jsonl' has more than 3 lines; split it"):
        make(path)
    monkeypatch.setattr(jsonl, "MAX_FILE_BYTES", 10)
    with pytest.raises(DatasetError, match=r"five\.jsonl' is \d+ bytes, more than the 10 read into memory"):
        make(path)


def test_a_directory_or_a_utf16_file_is_named(tmp_path) -> None:
    with pytest.raises(DatasetError, match=r"dataset '.*' is a directory; pass the path of a JSONL file"):
        make(tmp_path)
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text(json.dumps(GOOD) + "\n", encoding="utf-16")
    with pytest.raises(DatasetError, match=r"utf16\.jsonl' is UTF-16 text; save it as UTF-8"):
        make(utf16)


def test_a_tokenizer_that_is_neither_a_name_nor_a_tokenizer_is_named(tmp_path) -> None:
    with pytest.raises(TypeError, match=r"tokenizer must be 'word', 'char' or a Tokenizer object, got 3 \(int\)"):
        JsonlTask(write_jsonl(tmp_path, MULTI), tokenizer=3)


# -- preference files share the reader ------------------------------------------------------------

PAIR = {"context": "john has the ball .", "chosen": "john", "rejected": "nobody"}


@pytest.mark.parametrize(
    "bad,problem",
    [
        ('{"context": "c", "chosen": "a", "rejectd": "b"}', "unknown field 'rejectd' (did you mean 'rejected'?)"),
        ('{"context": "c", "chosen": "a", "chosen": "b", "rejected": "c"}', "key 'chosen' appears twice"),
        ('{"context": "\\ud800", "chosen": "a", "rejected": "b"}', "field 'context' holds the lone surrogate"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply to read"),
        (json.dumps({**PAIR, "chosen": "john " * 1100}), "field 'chosen' is 1100 tokens long, more than 1024"),
    ],
    ids=["misspelt", "duplicate", "surrogate", "deep", "long"],
)
def test_bad_preference_lines_are_refused_in_one_line(tmp_path, bad, problem) -> None:
    tokenizer = gym.make("DialogQA-v0").unwrapped.tokenizer
    path = write_jsonl(tmp_path, [PAIR, bad], name="pairs.jsonl")
    with pytest.raises(DatasetError) as info:
        read_preferences(path, tokenizer)
    message = str(info.value)
    assert "pairs.jsonl: 1 malformed line(s): line 2: " in message and problem in message and "\n" not in message


def test_a_preference_path_that_is_a_directory_is_named(tmp_path) -> None:
    tokenizer = gym.make("DialogQA-v0").unwrapped.tokenizer
    with pytest.raises(DatasetError, match="preference file .* is a directory"):
        read_preferences(tmp_path, tokenizer)
