"""``dialog-gym chat`` through ``agents.chat.chat`` with scripted lines, and readable learning-curve ticks."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import dialog_gym  # noqa: F401  (registers the env ids)
from agents.chat import chat
from agents.plot import learning_curves, plot_run
from agents.policy import PolicyConfig, TransformerPolicy
from agents.pretrain import PretrainConfig, pretrain


def make_policy(env: gym.Env, d_model: int = 32) -> TransformerPolicy:
    unwrapped = env.unwrapped
    config = PolicyConfig(
        vocab_size=int(env.action_space.n),
        context_len=unwrapped.max_len,
        n_layer=1,
        n_head=2,
        d_model=d_model,
        pad_id=env.unwrapped.tokenizer.pad_id,
    )
    return TransformerPolicy(config, torch.tensor(np.array(unwrapped.action_masks())))


@pytest.fixture(scope="module")
def env():
    return gym.make("DialogQA-v0", split="test")


@pytest.fixture(scope="module")
def policy(env):
    """A small policy pretrained for a moment on DialogQA-v0's demonstrations (it ends answers with EOS)."""
    torch.manual_seed(0)
    policy = make_policy(env)
    demos = env.unwrapped.demonstrations(768, seed=0, noise=0.0)
    pretrain(policy, demos, PretrainConfig(epochs=1, batch_size=16), torch.Generator().manual_seed(0), "cpu")
    return policy


class FixedPolicy(nn.Module):
    """Always the same next token: EOS (an empty answer) or a word (an answer that never ends)."""

    def __init__(self, env: gym.Env, token: int) -> None:
        super().__init__()
        self.config = PolicyConfig(vocab_size=int(env.action_space.n), context_len=env.unwrapped.max_len)
        self.token = token
        self.anchor = nn.Parameter(torch.zeros(1))  # where chat looks up the device

    def forward(self, tokens: torch.Tensor):
        logits = torch.zeros(*tokens.shape, self.config.vocab_size)
        logits[..., self.token] = 1.0
        return logits, torch.zeros(tokens.shape)


def scripted(env: gym.Env, episode: int):
    """The episode as chat reads it: context, questions and references in the task's own words."""
    silent = FixedPolicy(env, env.unwrapped.tokenizer.eos_id)
    return chat(silent, env, [], lambda line: None, episode=episode).episode


def find_episode(env: gym.Env, wanted) -> int:
    """The first test episode (as ``scripted`` gives it) that satisfies ``wanted``."""
    return next(k for k in range(200) if wanted(scripted(env, k)))


def where_now(episode) -> bool:
    return episode.questions[0].startswith("where is") and episode.questions[0].endswith("now ?")


def run(policy, env, lines, episode):
    out: list[str] = []
    session = chat(policy, env, lines, out.append, episode=episode)
    return session, out


def opening_history(env: gym.Env, episode: int) -> list[int]:
    env.reset(options={"index": episode})
    return [int(i) for i in env.unwrapped.history(0)]


def test_a_capitalised_question_reads_as_the_tasks_own(policy, env):
    episode = find_episode(env, where_now)
    name = scripted(env, episode).questions[0].split()[2]
    session, out = run(policy, env, [f"Where is {name.capitalize()} now?"], episode)
    assert f"(read as: where is {name} now ?)" in out
    assert not any("vocabulary" in line or "phrases" in line for line in out)
    # The policy read exactly the opening the env shows before its first answer.
    history = opening_history(env, episode)
    assert session.dialogue[: len(history)] == history


def test_unknown_words_are_named(policy, env):
    _, out = run(policy, env, ["where is the banana and the Kiwi ?"], 0)
    warning = next(line for line in out if "not in the task's vocabulary" in line)
    assert "'banana'" in warning and "'kiwi'" in warning and "<unk>" in warning


def test_a_phrasing_the_task_never_asks_is_flagged_with_one_it_does(policy, env):
    episode = find_episode(env, lambda e: where_now(e) and len(e.questions) > 1)
    first = scripted(env, episode).questions[0]
    name = first.split()[2]
    _, out = run(policy, env, [f"where is {name} ?", first], episode)
    assert any("never phrases a question this way" in line and f"'where is {name} now ?'" in line for line in out)
    # The task's first question, asked second, is one it asks only first.
    assert any("asks it only as question 1; as question 2 it asks e.g. 'and " in line for line in out)


def test_the_reference_on_request_is_the_envs(policy, env):
    episode = find_episode(env, lambda e: len(e.references) >= 2 and e.references[0] != e.references[1])
    _, out = run(policy, env, ["/ask", "/answer", "/ask", "/answer"], episode)
    _, info = env.reset(options={"index": episode})
    references = [info["reference"]]
    while info["turn"] == 0:
        _, _, _, _, info = env.step(info["expert_action"])
    references.append(info["reference"])
    shown = [line.split("  (")[0] for line in out if line.startswith("reference: ")]
    assert shown == [f"reference: {references[0]}", f"reference: {references[1]}"]


def test_a_reference_is_not_claimed_for_a_question_the_episode_does_not_ask(policy, env):
    _, out = run(policy, env, ["/answer", "who has the ball ?", "/answer"], 0)
    assert any(line.startswith("(no question asked yet; /ask asks the episode's question 1") for line in out)
    assert any("the task has no reference for yours" in line for line in out)


def test_asking_past_max_turns_starts_a_new_dialogue(env):
    """A policy that answers with EOS at once, so every dialogue runs to the turn limit."""
    max_turns = env.unwrapped.task.limits.max_turns
    silent = FixedPolicy(env, env.unwrapped.tokenizer.eos_id)
    questions = ["where is the ball ?", "and who has it now ?", "and where is it now ?", "who has the ball ?"]
    session, out = run(silent, env, questions[: max_turns + 1], 0)
    notices = [line for line in out if f"at most {max_turns} questions per dialogue" in line]
    answers = [i for i, line in enumerate(out) if line.startswith("agent:")]
    assert len(notices) == 1 and answers[max_turns - 1] < out.index(notices[0]) < answers[max_turns]
    # The fourth question opened a fresh dialogue: the context again, then only that question and its answer.
    eos = env.unwrapped.tokenizer.eos_id
    assert session.turn == 1 and session.dialogue.count(eos) == 1
    assert session.dialogue[: len(session.episode.context)] == session.episode.context


def test_an_answer_cut_at_the_limit_ends_the_dialogue(env):
    the = env.unwrapped.tokenizer.token_to_id("the")
    limit = env.unwrapped.max_answer_tokens
    endless = FixedPolicy(env, the)
    session, out = run(endless, env, ["who has the ball ?", "who has the ball ?"], 0)
    assert out.count("agent: " + " ".join(["the"] * limit)) == 2
    assert any(f"cut at the env's limit of {limit} tokens" in line for line in out)
    assert any("reached the env's answer limit" in line and "new dialogue" in line for line in out)
    assert session.turn == 1


def test_new_opens_another_episode(policy, env):
    _, out = run(policy, env, ["/new", "/help", "/nonsense"], 7)
    contexts = [line for line in out if line.startswith("Context: ")]
    assert len(contexts) == 2 and contexts[0] != contexts[1]
    assert "Episode 8 of the test split (/new for another)." in out
    assert any("/answer" in line and "reference" in line for line in out)  # the help
    assert "(unknown command '/nonsense'; /help lists the commands)" in out


def test_an_empty_line_ends_the_chat(policy, env):
    _, out = run(policy, env, ["where is the ball ?", "", "who has the ball ?"], 0)
    assert sum(line.startswith("agent:") for line in out) == 1


@pytest.mark.parametrize(
    "env_id,kwargs",
    [("DialogQA-v0", {}), ("DialogQA-Toy-v0", {}), ("Tutor-v0", {}), ("Conversation-v0", {}), ("DialogQA-v0", "hf")],
)
def test_the_policy_reads_what_the_env_shows(env_id, kwargs, request):
    """Typing the episode's first question gives the policy the env's own observation, in any vocabulary."""
    if kwargs == "hf":
        kwargs = {"tokenizer": request.getfixturevalue("gpt2_like")}
    env = gym.make(env_id, split="test", **kwargs)
    question = scripted(env, 3).questions[0]
    session, out = run(make_policy(env, d_model=16), env, [question, "/answer"], 3)
    assert session.dialogue[: len(opening_history(env, 3))] == opening_history(env, 3)
    _, info = env.reset(options={"index": 3})
    assert any(line.startswith(f"reference: {info['reference'].strip()}  (") for line in out)


def test_tasks_that_play_the_user_are_refused_in_one_line():
    env = gym.make("TwentyQuestions-v0", split="test")
    with pytest.raises(ValueError, match="plays the user itself") as caught:
        chat(make_policy(env, d_model=16), env, [], print)
    assert "\n" not in str(caught.value)


def test_a_policy_of_another_vocabulary_is_refused(env):
    toy = gym.make("DialogQA-Toy-v0")
    with pytest.raises(ValueError, match="chat with the env the policy was trained on"):
        chat(make_policy(toy, d_model=16), env, [], print)


def test_an_episode_beyond_the_split_is_refused_in_one_line():
    env = gym.make("Conversation-v0", split="test")
    size = env.unwrapped.task.num_examples("test")
    with pytest.raises(ValueError, match=f"episode {size} is out of range: the 'test' split holds {size} episodes"):
        chat(FixedPolicy(env, env.unwrapped.tokenizer.eos_id), env, [], print, episode=size)


def test_capitals_are_lowered_for_a_vocabulary_without_them():
    env = gym.make("DialogQA-Toy-v0", split="test")
    question = scripted(env, 5).questions[0]
    session, out = run(FixedPolicy(env, env.unwrapped.tokenizer.eos_id), env, [question.upper()], 5)
    assert f"(read as: {question})" in out and not any("vocabulary" in line for line in out)
    assert session.dialogue[:-1] == opening_history(env, 5)  # the question, then the agent's EOS


# -- plot -----------------------------------------------------------------------------------------


def fake_run(path, steps_per_update: int, updates: int):
    with open(path / "metrics.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["update", "env_steps", "episodes", "return", "answer_accuracy", "kl", "entropy"])
        for u in range(1, updates + 1):
            writer.writerow([u, u * steps_per_update, 10 * u, u / updates, u / updates, 0.1 * u, 2 - u / updates])
    return path


def shown_ticks(axis) -> list:
    """The x tick labels inside the axis's view (matplotlib also lays out ones just beyond it)."""
    low, high = axis.get_xlim()
    return [label for label in axis.get_xticklabels() if low <= label.get_position()[0] <= high]


def test_step_ticks_are_short_and_never_overlap(tmp_path):
    figure = learning_curves(fake_run(tmp_path, 4133, 73))  # 301,709 env steps, like the main job
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    for axis in figure.axes:
        labels = shown_ticks(axis)
        texts = [label.get_text() for label in labels]
        assert len(labels) >= 3 and all(len(text) <= 4 for text in texts), texts
        assert "100k" in texts and "300k" in texts
        boxes = sorted((label.get_window_extent(renderer) for label in labels), key=lambda box: box.x0)
        assert all(left.x1 < right.x0 for left, right in zip(boxes, boxes[1:])), texts
    assert plot_run(tmp_path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_millions_of_steps_read_as_m(tmp_path):
    figure = learning_curves(fake_run(tmp_path, 50_000, 40))  # 2M env steps
    figure.canvas.draw()
    texts = [label.get_text() for label in shown_ticks(figure.axes[0])]
    assert "1M" in texts and "2M" in texts and all(len(text) <= 4 for text in texts), texts
