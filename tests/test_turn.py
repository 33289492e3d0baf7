"""The turn-level view: a reply per step gives exactly what the token-level env gives for its tokens."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import dialog_gym
from dialog_gym.turn import DialogTurnEnv, token_id_of, turn_id

PAIRS = list(zip(dialog_gym.ENV_IDS, dialog_gym.TURN_ENV_IDS))


def assert_same(a, b, where: str) -> None:
    """Deep equality of observations and infos (arrays by value)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def token_episodes(env_id: str, seed: int, episodes: int, expert: float, **kwargs):
    """Play ``episodes`` token by token: the expert's token with chance ``expert``, else a random one
    (and, when ``expert < 1``, every fourth episode never says EOS, so it runs into the answer limit).
    Return per episode, per answer: its tokens, the summed reward, the last step's result and the text."""
    env = gym.make(env_id, **kwargs).unwrapped
    rng = np.random.default_rng(seed)
    allowed = np.flatnonzero(env.action_masks())
    words = allowed[allowed != env.tokenizer.eos_id]
    played = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed if episode == 0 else None)
        turns, typed, reward = [], [], 0.0
        while True:
            if expert < 1 and episode % 4 == 3:
                token = int(rng.choice(words))
            else:
                token = info["expert_action"] if rng.random() < expert else int(rng.choice(allowed))
            obs, r, terminated, truncated, info = env.step(token)
            typed.append(token)
            reward += r
            if info["answer_done"]:
                turns.append((typed, reward, (obs, terminated, truncated, info), env.tokenizer.decode(env.history(0))))
                typed, reward = [], 0.0
            if terminated or truncated:
                break
        played.append(turns)
    return played


@pytest.mark.parametrize("env_id, turn_env_id", PAIRS)
@pytest.mark.parametrize("expert", [1.0, 0.9])
def test_a_reply_gives_what_its_tokens_give_in_the_token_env(env_id, turn_env_id, expert):
    kwargs = {"shaping": 0.2} if expert < 1 else {}  # per-token rewards summed over the reply
    played = token_episodes(env_id, seed=3, episodes=12, expert=expert, **kwargs)
    env = gym.make(turn_env_id, **kwargs)
    ends = set()
    for episode, turns in enumerate(played):
        obs, info = env.reset(seed=3 if episode == 0 else None)
        for typed, reward, (token_obs, terminated, truncated, token_info), text in turns:
            reply = typed if episode % 2 else np.array(typed)  # a list or an array of ids
            obs, turn_reward, turn_terminated, turn_truncated, turn_info = env.step(reply)
            assert turn_reward == pytest.approx(reward, abs=1e-12)
            assert (turn_terminated, turn_truncated) == (terminated, truncated)
            assert_same(turn_info, token_info, "info")
            assert_same(obs["tokens"], token_obs, "obs")
            assert obs["text"] == text and env.observation_space.contains(obs)
            ends.add("terminated" if terminated else token_info["truncated_by"] or "answer")
    assert "terminated" in ends
    if expert < 1:
        assert "max_answer_tokens" in ends


@pytest.mark.parametrize("env_id, turn_env_id", PAIRS)
def test_text_replies_play_like_their_ids(env_id, turn_env_id):
    ids_env, text_env = gym.make(turn_env_id).unwrapped, gym.make(turn_env_id).unwrapped
    for episode in range(6):
        a, _ = ids_env.reset(seed=episode)
        b, _ = text_env.reset(seed=episode)
        done = False
        while not done:
            reply = ids_env.expert_reply()
            text = ids_env.tokenizer.decode(reply)
            assert text_env.tokenizer.encode(text) == reply  # the built-in vocabularies round-trip
            assert text_env.action_space.contains(text)
            a, ra, ta, ua, ia = ids_env.step(reply)
            b, rb, tb, ub, ib = text_env.step(text)
            assert_same(a, b, "obs")
            assert_same(ia, ib, "info")
            assert (ra, ta, ua) == (rb, tb, ub)
            done = ta or ua
        assert ia["dialogue"]["success"], "the expert's replies succeed"


@pytest.mark.parametrize("turn_env_id", dialog_gym.TURN_ENV_IDS)
def test_gymnasiums_checker_passes_and_samples_are_valid_replies(turn_env_id):
    env = gym.make(turn_env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(30):
        reply = env.action_space.sample()
        assert env.action_space.contains(reply)
        *_, terminated, truncated, _ = env.step(reply)
        if terminated or truncated:
            env.reset()


def test_ids_name_the_twins():
    assert dialog_gym.TURN_ENV_IDS[0] == "DialogQA-Turn-v0" and turn_id("DialogQA-Toy-v0") == "DialogQA-Toy-Turn-v0"
    for env_id, twin in PAIRS:
        assert token_id_of(twin) == env_id and twin in gym.registry
    with pytest.raises(ValueError, match="-vN"):
        turn_id("DialogQA")
    with pytest.raises(ValueError, match="-Turn-vN"):
        token_id_of("DialogQA-v0")


def test_env_arguments_go_to_the_token_env():
    env = gym.make("DialogQA-Turn-v0", n_people=2, reward="exact", split="test", max_answer_tokens=5)
    assert env.unwrapped.split == "test" and env.unwrapped.reward_name == "exact"
    assert env.unwrapped.max_answer_tokens == 5 and env.unwrapped.task.n_people == 2
    with pytest.raises(TypeError, match="unknown argument"):
        gym.make("DialogQA-Turn-v0", n_peeple=2)


def test_make_vec_plays_the_episodes_of_single_envs():
    vector = gym.make_vec("CustomerService-Turn-v0", num_envs=3)
    singles = [gym.make("CustomerService-Turn-v0").unwrapped for _ in range(3)]
    obs, _ = vector.reset(seed=5)
    for i, env in enumerate(singles):
        single_obs, _ = env.reset(seed=5 + i)
        assert obs["text"][i] == single_obs["text"]
    ended = np.zeros(3, bool)
    while not ended.all():
        replies = tuple(env.expert_reply() if not ended[i] else [] for i, env in enumerate(singles))
        obs, rewards, terminated, truncated, _ = vector.step(replies)
        for i, env in enumerate(singles):
            if not ended[i]:
                single_obs, reward, *_ = env.step(replies[i])
                assert obs["text"][i] == single_obs["text"] and rewards[i] == reward
                assert np.array_equal(obs["tokens"][i], single_obs["tokens"])
        ended |= terminated | truncated
    assert all(vector.single_action_space.contains(reply) for reply in vector.action_space.sample())
    with pytest.raises(ValueError, match="num_envs"):
        gym.make_vec("DialogQA-Turn-v0", num_envs=0)


def test_a_reply_filling_the_answer_limit_is_cut_there_as_in_the_token_env():
    env = gym.make("DialogQA-Turn-v0", max_answer_tokens=3).unwrapped
    env.reset(seed=0)
    words = env.tokenizer.encode("the the the")
    _, reward, terminated, truncated, info = env.step(words)
    assert truncated and not terminated and info["truncated_by"] == "max_answer_tokens"
    assert info["dialogue"]["length"] == 3  # no EOS was typed


@pytest.mark.parametrize(
    "reply, message",
    [
        ("the " * 7, "7 tokens long; an answer has at most max_answer_tokens=6"),
        ([2, 9], "1 token\\(s\\) after its end-of-turn token"),
        ([10**6], "reply token 1000000 is out of range"),
        ([-1], "reply token -1 is out of range"),
        (np.array([1.5]), "1-D sequence of integers"),
        (np.array([[9]]), "1-D sequence of integers"),
        (7, "text \\(str\\) or a sequence of token ids, got int"),
        (None, "got NoneType"),
    ],
)
def test_bad_replies_are_refused_in_one_line_before_anything_is_typed(reply, message):
    env = gym.make("DialogQA-Turn-v0").unwrapped
    obs, _ = env.reset(seed=0)
    history = env.history().copy()
    with pytest.raises(gym.error.InvalidAction, match=message) as caught:
        env.step(reply)
    assert "\n" not in str(caught.value)
    assert np.array_equal(env.history(), history)
    _, reward, *_ = env.step(env.expert_reply())
    assert reward == 1.0  # the env plays on


def test_steps_before_reset_or_after_the_end_are_refused():
    env = gym.make("DialogQA-Toy-Turn-v0").unwrapped
    with pytest.raises(gym.error.ResetNeeded, match="before reset"):
        env.step("w1")
    env.reset(seed=0)
    env.step(env.expert_reply())
    with pytest.raises(gym.error.ResetNeeded, match="after the episode ended"):
        env.step("w1")


class FailsOnce:
    """An exact-match text reward that raises on its first call."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, response: str, reference: str, keywords) -> float:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("the reward failed")
        return float(response == reference)


def test_a_reply_whose_reward_raises_never_half_happens():
    env = gym.make("DialogQA-Toy-Turn-v0", reward=FailsOnce(), shaping=0.3, answer_len=3).unwrapped
    never_fails = FailsOnce()
    never_fails.calls = 1
    twin = gym.make("DialogQA-Toy-Turn-v0", reward=never_fails, shaping=0.3, answer_len=3).unwrapped
    obs, _ = env.reset(seed=1)
    twin.reset(seed=1)
    before = (obs["tokens"].copy(), env.history().copy(), env.kernel.episode_return.copy())
    reply = env.expert_reply()
    with pytest.raises(RuntimeError, match="the reward failed"):
        env.step(reply)
    assert np.array_equal(env.kernel.obs[0], before[0]) and np.array_equal(env.history(), before[1])
    assert np.array_equal(env.kernel.episode_return, before[2])
    assert_same(env.step(reply), twin.step(reply), "the retried step")


def test_a_chat_templated_turn_env_takes_text_replies(tiny_chat_model):
    env = gym.make("DialogQA-Turn-v0", tokenizer=str(tiny_chat_model), chat_template=True).unwrapped
    token_env = gym.make("DialogQA-v0", tokenizer=str(tiny_chat_model), chat_template=True).unwrapped
    obs, _ = env.reset(seed=2)
    token_env.reset(seed=2)
    assert "<|im_start|>user" in obs["text"] and obs["text"].endswith("<|im_start|>assistant\n")
    reply = env.tokenizer.decode(env.expert_reply())
    _, reward, *_, info = env.step(reply)
    for token in env.tokenizer.encode(reply) + [token_env.tokenizer.eos_id]:
        *_, token_info = token_env.step(token)
    assert reward == 1.0 and info["answer_correct"]
    assert_same(info, token_info, "info")


def test_the_turn_env_needs_a_plain_token_env():
    with pytest.raises(TypeError, match="wraps a dialog_gym.DialogEnv"):
        DialogTurnEnv(gym.make("DialogQA-v0"))  # the wrapped env, not the DialogEnv itself
    with pytest.raises(ValueError, match="render mode"):
        DialogTurnEnv(gym.make("DialogQA-v0", render_mode="ansi").unwrapped)
    env = gym.make("DialogQA-Turn-v0", render_mode="ansi")
    env.reset(seed=0)
    assert env.render().startswith("<bos>")


@pytest.mark.parametrize("env_id", ["DialogQA-v0", "TwentyQuestions-v0"])
def test_window_after_is_the_token_envs_observation_once_those_tokens_are_typed(env_id):
    turn_env = gym.make(turn_id(env_id)).unwrapped
    token_env = gym.make(env_id).unwrapped
    turn_env.reset(seed=3)
    observation, info = token_env.reset(seed=3)
    assert np.array_equal(turn_env.window_after(), observation) and turn_env.turn == info["turn"] == 0
    allowed = np.flatnonzero(
        token_env.action_masks() & (np.arange(token_env.action_space.n) != token_env.tokenizer.eos_id)
    )
    typed = [int(t) for t in allowed[:3]]
    for count, token in enumerate(typed, start=1):
        observation, *_ = token_env.step(token)
        assert np.array_equal(turn_env.window_after(typed[:count]), observation)
    observation, _, terminated, truncated, _ = turn_env.step(typed)  # the reply ends its turn
    assert np.array_equal(turn_env.window_after(), observation["tokens"])
    assert turn_env.turn == (0 if terminated or truncated else 1)
