"""Conversation-v0: real chatterbot-corpus conversations, split by conversation, in English and Chinese."""

import re

import gymnasium as gym
import pytest

import dialog_gym  # noqa: F401
from dialog_gym.tasks.conversation import ConversationTask, load_conversations
from dialog_gym.tokenizers import CharTokenizer, WordTokenizer


def conversation_ids(task: ConversationTask, split: str) -> set[tuple[str, int]]:
    return {(example.context.split(" : ")[0], example.line) for example in task.examples[split]}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_no_conversation_is_in_both_splits(language):
    task = ConversationTask(language=language)
    train, test = conversation_ids(task, "train"), conversation_ids(task, "test")
    assert len(test) > 0.1 * len(train) and not train & test


def test_every_response_of_a_short_conversation_is_asked_for():
    corpus = load_conversations("en", ["trivia"])["trivia"]
    task = ConversationTask(language="en", categories=["trivia"], max_utterance_tokens=1000)
    asked = {turn.answer for split in ("train", "test") for example in task.examples[split] for turn in example.turns}
    assert {utterance for conversation in corpus for utterance in conversation[1:]} <= asked


def test_chinese_is_character_level_and_round_trips():
    env = gym.make("Conversation-v0", language="zh")
    tokenizer = env.unwrapped.tokenizer
    assert isinstance(tokenizer, CharTokenizer)
    response = env.unwrapped.task.examples["train"][0].turns[0].answer
    assert tokenizer.decode(tokenizer.encode(response)) == " ".join(response.split())
    assert isinstance(gym.make("Conversation-v0").unwrapped.tokenizer, WordTokenizer)


def test_the_oracle_scores_f1_one_per_turn():
    env = gym.make("Conversation-v0", categories=["greetings"])
    obs, info = env.reset(seed=0)
    rewards = []
    while True:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if info["answer_done"]:
            rewards.append(info["answer_reward"])
        if terminated or truncated:
            break
    assert rewards and all(r == 1.0 for r in rewards) and terminated


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"language": "fr"}, "unknown language 'fr'"),
        ({"categories": ["nope"]}, "unknown categories ['nope']"),
        ({"max_turns": 0}, "max_turns must be an integer in [1, 64], got 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        gym.make("Conversation-v0", **kwargs)


def test_one_category_may_be_named_as_a_string():
    # --env-arg categories=greetings arrives as a string
    env = gym.make("Conversation-v0", categories="greetings")
    assert {e.context.split(" : ")[0] for e in env.unwrapped.task.examples["train"]} == {"greetings"}
