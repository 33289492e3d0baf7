"""One table registers every env id; tasks declare their protocols; rewards come from plugins by prefix."""

import importlib
import re
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import dialog_gym
from dialog_gym import envs as registry
from dialog_gym.references import REFERENCE_SCORES, REWARD_THRESHOLDS, check_references
from dialog_gym.rewards import AnswerBatch, Reward, UnknownRewardPrefix, register_reward_prefix, resolve_reward
from dialog_gym.tasks.base import AdaptiveTask, InteractiveTask, RewardResolvingTask, Task
from dialog_gym.tasks.customer_service import CustomerServiceTask
from dialog_gym.tasks.microworld import MicroWorldTask
from dialog_gym.tasks.retokenized import RetokenizedTask
from dialog_gym.tasks.toy import ToyLookupTask
from dialog_gym.tasks.tutor import TutorTask
from dialog_gym.tasks.twenty_questions import TwentyQuestionsTask

ROOT = Path(__file__).resolve().parent.parent

# -- the registration table -----------------------------------------------------------------------


def test_ids_summaries_and_registrations_all_come_from_the_table():
    ids = tuple(entry.id for entry in registry.ENVS)
    assert dialog_gym.ENV_IDS == ids and len(set(ids)) == len(ids) == 6
    assert list(dialog_gym.ENV_SUMMARIES) == list(ids)
    for entry in registry.ENVS:
        spec = gym.spec(entry.id)
        assert spec.entry_point == "dialog_gym.envs:make_env"
        assert spec.vector_entry_point == "dialog_gym.envs:make_vector_env"
        assert spec.kwargs == {"env_id": entry.id} and spec.reward_threshold == REWARD_THRESHOLDS[entry.id]
        assert "## Description" in entry.doc and "## Arguments" in entry.doc and entry.summary


def test_every_id_has_reference_scores_and_stale_ones_are_refused():
    assert set(REFERENCE_SCORES) == set(REWARD_THRESHOLDS) == set(dialog_gym.ENV_IDS)
    check_references(dialog_gym.ENV_IDS)
    with pytest.raises(ValueError, match=r"REFERENCE_SCORES holds \['DialogQA-v0'\], which no row"):
        check_references(tuple(i for i in dialog_gym.ENV_IDS if i != "DialogQA-v0"))


class CountingTask(ToyLookupTask):
    """A new task: the toy lookup whose answers are the question tokens in reverse."""

    def __init__(self, length: int = 2) -> None:
        super().__init__(vocab_size=8, question_len=length, answer_len=length)


def test_a_new_env_is_a_task_and_one_row(monkeypatch):
    entry = registry.EnvEntry(id="Counting-v0", task=CountingTask, summary="a new env", doc="## Description\n")
    monkeypatch.setitem(registry.ENTRIES, entry.id, entry)
    gym.register(
        id=entry.id,
        entry_point="dialog_gym.envs:make_env",
        vector_entry_point="dialog_gym.envs:make_vector_env",
        kwargs={"env_id": entry.id},
    )
    try:
        env = gym.make(entry.id, length=3, reward="exact")
        envs = gym.make_vec(entry.id, num_envs=2, length=3)
        assert isinstance(env.unwrapped.task, CountingTask) and env.unwrapped.task.limits.max_reference_len == 3
        assert env.unwrapped.reward_name == "exact" and envs.num_envs == 2
        with pytest.raises(TypeError, match=r"Counting-v0 got unknown argument\(s\) \['lenght'\]"):
            gym.make(entry.id, lenght=3)
    finally:
        gym.registry.pop(entry.id)


def test_unknown_arguments_fail_in_one_line_listing_the_valid_ones():
    for make in (gym.make, lambda env_id, **kw: gym.make_vec(env_id, num_envs=2, **kw)):
        with pytest.raises(TypeError) as caught:
            make("DialogQA-v0", n_peple=2)
        message = str(caught.value)
        assert "\n" not in message and "unknown argument(s) ['n_peple']" in message
        for valid in ("n_people", "n_events", "dataset", "tokenizer", "split", "reward", "max_len", "render_mode"):
            assert repr(valid) in message
    with pytest.raises(TypeError, match=r"\['n_people'\]; its task takes \['tokenizer', 'chat_template', 'vocab_size'"):
        gym.make("DialogQA-Toy-v0", n_people=2)
    with pytest.raises(ValueError, match="takes tokenizer= only as a Hugging Face tokenizer"):
        gym.make("Tutor-v0", tokenizer="word")
    with pytest.raises(ValueError, match="unknown env id 'Nope-v0'"):
        registry.make_env("Nope-v0")


def test_task_parameters_follow_the_constructors():
    assert registry.ENTRIES["Tutor-v0"].task_parameters[:4] == ("tokenizer", "chat_template", "level", "problems")
    dialog_qa = registry.ENTRIES["DialogQA-v0"].task_parameters
    assert dialog_qa[:4] == ("tokenizer", "chat_template", "dataset", "n_people") and "max_turns" in dialog_qa


# -- task protocols -------------------------------------------------------------------------------


def test_tasks_declare_what_they_are():
    assert isinstance(TutorTask(), AdaptiveTask) and not isinstance(TutorTask(), InteractiveTask)
    for task in (TwentyQuestionsTask(), CustomerServiceTask()):
        assert isinstance(task, InteractiveTask) and not isinstance(task, AdaptiveTask)
    for task in (MicroWorldTask(), ToyLookupTask()):
        assert isinstance(task, Task)
        assert not isinstance(task, (InteractiveTask, AdaptiveTask, RewardResolvingTask))


def test_a_retokenized_task_keeps_the_protocols_of_its_task(gpt2_like):
    from dialog_gym.hf_tokenizer import as_hf_tokenizer

    tokenizer = as_hf_tokenizer(gpt2_like)
    for native, interactive, adaptive in [
        (MicroWorldTask(), False, False),
        (TutorTask(curriculum=True), False, True),
        (TwentyQuestionsTask(), True, False),
    ]:
        task = RetokenizedTask(native, tokenizer)
        assert isinstance(task, RetokenizedTask) and isinstance(task, RewardResolvingTask)
        assert isinstance(task, InteractiveTask) == interactive and isinstance(task, AdaptiveTask) == adaptive
    adaptive = RetokenizedTask(TutorTask(curriculum=True, curriculum_window=2), tokenizer)
    assert adaptive.observe_answers(np.array([True, True]), np.array([1, 1])) and adaptive.native.level == 2
    adaptive.restart()
    assert adaptive.native.level == 1


def test_a_curriculum_rises_in_a_retokenized_env(gpt2_like):
    envs = gym.make_vec("Tutor-v0", num_envs=4, tokenizer=gpt2_like, curriculum=True, curriculum_window=4)
    _, info = envs.reset(seed=0)
    for _ in range(40):
        _, _, _, _, info = envs.step(info["expert_action"])
    assert envs.unwrapped.task.native.level > 1


# -- reward plugins -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def registered_prefixes_restored(monkeypatch):
    """Each test's run-time registrations are undone after it."""
    monkeypatch.setattr(dialog_gym.rewards, "_FACTORIES", dict(dialog_gym.rewards._FACTORIES))


class LengthReward:
    """A test plugin: the answer's length times a factor; reads the dialogue; judges nothing."""

    judges_correctness = False
    needs_dialogue = True

    def __init__(self, factor: float) -> None:
        self.factor, self.dialogues = factor, []

    def __call__(self, batch: AnswerBatch) -> np.ndarray:
        self.dialogues.append(batch.dialogue)
        return self.factor * batch.response_len.astype(np.float64)


def length_reward(argument: str, tokenizer) -> LengthReward:
    return LengthReward(float(argument))


def test_a_prefix_registered_at_run_time_builds_the_reward():
    register_reward_prefix("length", length_reward)
    env = gym.make("DialogQA-Toy-v0", reward="length:10")
    _, info = env.reset(seed=0)
    for _ in range(3):
        _, _, _, _, info = env.step(info["expert_action"])
    *_, reward, terminated, _, info = env.step(info["expert_action"])  # EOS after the 3 answer tokens
    assert terminated and reward == 30.0 and env.unwrapped.reward_name == "length:10"
    # The plugin judges nothing, so the task's own reward says the expert's answer is right.
    assert info["answer_correct"] is True
    reward_fn = env.unwrapped.kernel.scorer.reward_fn
    assert isinstance(reward_fn, Reward) and reward_fn.dialogues[0].shape == (1, env.unwrapped.max_len)


def test_a_reward_object_can_be_passed_directly():
    reward = LengthReward(-1.0)
    env = gym.make("DialogQA-Toy-v0", reward=reward)
    _, info = env.reset(seed=0)
    *_, info = env.step(info["expert_action"])
    *_, reward_value, _, _, info = env.step(env.unwrapped.tokenizer.eos_id)
    assert reward_value == -1.0 and info["answer_correct"] is False and len(reward.dialogues) == 1


def test_unknown_prefixes_fail_in_one_line_naming_the_prefix_and_the_fix():
    with pytest.raises(UnknownRewardPrefix) as caught:
        gym.make("DialogQA-Toy-v0", reward="bleurt:large")
    message = str(caught.value)
    assert "\n" not in message and "prefix 'bleurt'" in message
    assert "register_reward_prefix('bleurt', factory)" in message and "'dialog_gym.rewards'" in message
    with pytest.raises(ValueError, match="unknown reward 'bleurt'; expected one of"):
        gym.make("DialogQA-Toy-v0", reward="bleurt")


def test_bad_plugins_and_registrations_are_refused():
    register_reward_prefix("plain", lambda argument, tokenizer: lambda batch: np.zeros(len(batch.response_len)))
    with pytest.raises(TypeError, match="plugin for reward prefix 'plain' returned a function, not a Reward"):
        gym.make("DialogQA-Toy-v0", reward="plain:x")
    with pytest.raises(ValueError, match="built-in reward name"):
        register_reward_prefix("exact", length_reward)
    with pytest.raises(ValueError, match="must be a name"):
        register_reward_prefix("has space", length_reward)
    with pytest.raises(TypeError, match="must be callable"):
        register_reward_prefix("broken", "not a function")


def test_an_installed_entry_point_provides_a_prefix(tmp_path, monkeypatch):
    """A package declares ``[project.entry-points."dialog_gym.rewards"]``; dialog_gym finds it when first used."""
    (tmp_path / "shout_plugin.py").write_text(
        "import numpy as np\n"
        "class Shout:\n"
        "    judges_correctness = True\n"
        "    needs_dialogue = False\n"
        "    def __init__(self, value):\n"
        "        self.value = value\n"
        "    def __call__(self, batch):\n"
        "        return np.full(len(batch.response_len), self.value)\n"
        "def factory(argument, tokenizer):\n"
        "    return Shout(float(argument))\n"
    )
    info = tmp_path / "shout_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: shout-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[dialog_gym.rewards]\nshout = shout_plugin:factory\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "shout" in dialog_gym.rewards.reward_prefixes()
    tokenizer = ToyLookupTask().tokenizer
    made = resolve_reward("shout:2.5", tokenizer)
    assert type(made).__name__ == "Shout" and made.value == 2.5
    env = gym.make("DialogQA-Toy-v0", reward="shout:2.5")
    _, info = env.reset(seed=0)
    *_, reward, _, _, info = env.step(env.unwrapped.tokenizer.eos_id)
    assert reward == 2.5 and info["answer_correct"] is True  # the plugin judges correctness: 2.5 >= 1
    monkeypatch.delitem(sys.modules, "shout_plugin", raising=False)


def test_the_project_declares_the_model_prefix_as_an_entry_point():
    tomllib = pytest.importorskip("tomllib")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["dialog_gym.rewards"]["model"]
    module, _, name = target.partition(":")
    pytest.importorskip("torch")
    assert getattr(importlib.import_module(module), name).__name__ == "model_reward"


def test_dialog_gym_never_imports_agents():
    pattern = re.compile(r"^\s*(from|import) agents\b", re.MULTILINE)
    offending = [str(p) for p in (ROOT / "dialog_gym").rglob("*.py") if pattern.search(p.read_text())]
    assert offending == []
