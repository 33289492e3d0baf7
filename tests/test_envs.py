"""API conformance, determinism and vector == single, over every registered env id."""

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dialog_gym
from dialog_gym import OracleAgent, RandomAgent, evaluate

ENV_IDS = dialog_gym.ENV_IDS
# Small settings of each id, so the same checks also run away from the defaults.
VARIANTS = [
    ("DialogQA-v0", {}),
    ("DialogQA-v0", {"n_people": 4, "n_places": 5, "n_objects": 3, "n_events": 6, "reward": "exact", "shaping": 0.5}),
    ("DialogQA-v0", {"max_len": 16}),
    ("DialogQA-Toy-v0", {}),
    ("DialogQA-Toy-v0", {"vocab_size": 8, "answer_len": 1, "n_questions": 0, "reward": "keyword"}),
    ("DialogQA-Toy-v0", {"vocab_size": 1024, "question_len": 3, "answer_len": 2, "split": "test"}),
    ("Tutor-v0", {}),
    ("Tutor-v0", {"level": 5, "problems": 3, "reward": "exact"}),
    ("Tutor-v0", {"level": 2, "curriculum": True, "split": "test"}),
    ("Conversation-v0", {}),
    ("Conversation-v0", {"language": "zh", "categories": ["greetings", "trivia"], "max_turns": 2}),
    ("TwentyQuestions-v0", {}),
    ("TwentyQuestions-v0", {"n_candidates": 4, "max_questions": 3, "question_cost": 0.2, "split": "test"}),
    ("CustomerService-v0", {}),
    ("CustomerService-v0", {"reveal": 0.0, "max_turns": 5, "split": "test"}),
]


def test_every_id_is_registered():
    for env_id in ENV_IDS:
        assert env_id in gym.registry
        assert gym.spec(env_id).vector_entry_point is not None
        gym.make(f"dialog_gym:{env_id}").close()


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_gymnasium_and_sb3_checkers_pass_without_warnings(env_id, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id, render_mode="ansi", **kwargs).unwrapped)
        sb3_check_env(gym.make(env_id, **kwargs))


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_spaces_and_types(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    vocab = env.unwrapped.tokenizer.vocab_size
    assert env.action_space == gym.spaces.Discrete(vocab)
    assert isinstance(env.observation_space, gym.spaces.MultiDiscrete)
    assert env.observation_space.dtype == np.int64 and (env.observation_space.nvec == vocab).all()
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.int64 and obs in env.observation_space
    assert info["action_mask"].shape == (vocab,) and info["action_mask"][env.unwrapped.tokenizer.eos_id] == 1
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool


def rollout(env, seed: int, steps: int, action_seed: int = 0):
    """(obs, reward, terminated, truncated) of ``steps`` random steps, resetting after each episode."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    out = [(obs.copy(), 0.0, False, False)]
    for _ in range(steps):
        obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        out.append((obs.copy(), reward, terminated, truncated))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append((obs.copy(), 0.0, False, False))
    return out


def same_rollouts(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[0], y[0]) and x[1:] == y[1:] for x, y in zip(a, b))


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_same_seed_same_200_steps_and_other_seed_differs(env_id, kwargs):
    first = rollout(gym.make(env_id, **kwargs), seed=7, steps=200)
    again = rollout(gym.make(env_id, **kwargs), seed=7, steps=200)
    other = rollout(gym.make(env_id, **kwargs), seed=8, steps=200)
    assert same_rollouts(first, again)
    assert not same_rollouts(first, other)


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_pickle_mid_episode_continues_identically(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
    clone = pickle.loads(pickle.dumps(env))
    actions = rng.integers(env.action_space.n, size=60)
    for a in actions:
        x, y = env.step(int(a)), clone.step(int(a))
        assert np.array_equal(x[0], y[0]) and x[1:4] == y[1:4]
        if x[2] or x[3]:
            assert np.array_equal(env.reset()[0], clone.reset()[0])


def row_info(info: dict, i: int) -> dict:
    """Row ``i`` of a vector env's info: every key whose ``_key`` mask is set for the row, at that row."""
    row = {}
    for key, value in info.items():
        if key.startswith("_"):
            continue
        mask = info.get(f"_{key}")
        if mask is None or mask[i]:  # a nested dict without masks holds every row
            row[key] = row_info(value, i) if isinstance(value, dict) else value[i]
    return row


TEXT_KEYS = {"reference", "answer"}
"""Info keys of the single env only: texts, which the vector env (arrays only) leaves to its users."""


def assert_same_info(single: dict, row: dict, where: str) -> None:
    """The single env's info and the vector row's hold the same keys with equal values (texts aside)."""
    single = {key: value for key, value in single.items() if key not in TEXT_KEYS}
    assert set(single) == set(row), f"{where}: single env keys {sorted(single)} != vector row keys {sorted(row)}"
    for key, value in single.items():
        if isinstance(value, dict):
            assert isinstance(row[key], dict), f"{where}: {key!r} is a dict in the single env only"
            assert_same_info(value, row[key], f"{where}, {key}")
        else:
            assert np.array_equal(np.asarray(value), np.asarray(row[key])), (
                f"{where}: {key!r} {value!r} != {row[key]!r}"
            )


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_native_vector_env_plays_the_episodes_of_single_envs(env_id, kwargs):
    """Row i of make_vec(seed=s) equals a single env seeded s + i, infos included, through autoresets.

    The rows mostly follow the expert (else a random allowed token), so episodes end by finishing
    (interactive ones too); the last row rambles (random words, never EOS), so answers also hit
    their limit and episodes are truncated.
    """
    n, steps, seed = 5, 300, 11
    random_share = np.array([0.05, 0.1, 0.2, 0.4, 0.0])  # per row: how often it ignores the expert
    envs = gym.make_vec(env_id, num_envs=n, **kwargs)
    assert isinstance(envs.unwrapped, dialog_gym.DialogVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    singles = [gym.make(env_id, **kwargs) for _ in range(n)]
    obs, info = envs.reset(seed=seed)
    for i, env in enumerate(singles):
        single_obs, single_info = env.reset(seed=seed + i)
        assert np.array_equal(obs[i], single_obs)
        assert_same_info(single_info, row_info(info, i), f"reset, row {i}")
    eos = envs.unwrapped.tokenizer.eos_id
    allowed = np.flatnonzero(envs.unwrapped.action_masks()[0])
    words = allowed[allowed != eos]
    rng = np.random.default_rng(0)
    needs_reset = np.zeros(n, bool)
    terminations, truncations = np.zeros(n, int), np.zeros(n, int)
    for t in range(steps):
        actions = np.where(rng.random(n) < random_share, rng.choice(allowed, n), info["expert_action"])
        actions[-1] = rng.choice(words)
        obs, rewards, terminated, truncated, info = envs.step(actions)
        for i, env in enumerate(singles):
            if needs_reset[i]:  # the vector env's autoreset step
                single_obs, single_info = env.reset()
                expected = (single_obs, 0.0, False, False, single_info)
            else:
                expected = env.step(int(actions[i]))
            assert np.array_equal(obs[i], expected[0]), f"step {t}, row {i}: observations differ"
            assert (rewards[i], terminated[i], truncated[i]) == expected[1:4], f"step {t}, row {i}"
            assert_same_info(expected[4], row_info(info, i), f"step {t}, row {i}")
        needs_reset = terminated | truncated
        terminations += terminated
        truncations += truncated
    assert terminations[0] > 0, f"the nearly expert row finishes episodes; terminations per row {terminations}"
    assert truncations[-1] > 0, f"the rambling row's answers hit the token limit; truncations per row {truncations}"


def test_vector_env_matches_sync_vector_env_of_the_same_seeds():
    kwargs = {"n_events": 2}
    native = gym.make_vec("DialogQA-v0", num_envs=4, **kwargs)
    sync = gym.make_vec("DialogQA-v0", num_envs=4, vectorization_mode="sync", **kwargs)
    a, _ = native.reset(seed=5)
    b, _ = sync.reset(seed=5)
    assert np.array_equal(a, b)
    rng = np.random.default_rng(1)
    for _ in range(80):
        actions = rng.integers(native.single_action_space.n, size=4)
        for x, y in zip(native.step(actions)[:4], sync.step(actions)[:4]):
            assert np.array_equal(x, y)


@pytest.mark.parametrize("env_id,kwargs", VARIANTS)
def test_oracle_solves_every_env_and_random_does_not(env_id, kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k != "split"}
    oracle = evaluate(OracleAgent(), env_id, episodes=100, seed=0, **kwargs)
    assert oracle["success_rate"] == 1.0 and oracle["answer_accuracy"] == 1.0 and oracle["episodes"] == 100
    random = evaluate(RandomAgent(0), env_id, episodes=100, seed=0, **kwargs)
    assert random["success_rate"] < 0.5 and random["mean_return"] < oracle["mean_return"]


def test_evaluate_is_deterministic_and_counts_exactly():
    a = evaluate(RandomAgent(3), "DialogQA-v0", episodes=37, seed=2, num_envs=8)
    b = evaluate(RandomAgent(3), "DialogQA-v0", episodes=37, seed=2, num_envs=8)
    assert a == b and a["episodes"] == 37


def test_oracle_return_is_one_per_answer_under_keyword_reward():
    env = gym.make("DialogQA-v0")
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(info["expert_action"])
            total += reward
            done = terminated or truncated
        assert terminated and not truncated
        assert total == info["dialogue"]["questions"] == info["dialogue"]["answers"]


def test_follow_up_questions_are_appended_after_each_answer():
    env = gym.make("DialogQA-v0", min_turns=3, max_turns=3, render_mode="ansi")
    obs, info = env.reset(seed=0)
    tok = env.unwrapped.tokenizer
    turns = 0
    while True:
        obs, reward, terminated, truncated, info = env.step(info["expert_action"])
        if info["answer_done"]:
            turns += 1
            if terminated:
                break
            assert obs[-1] == tok.agent_id and tok.user_id in obs[-9:]
            assert tok.decode(obs[-8:]).startswith("<user> and ")
    assert turns == 3
    transcript = env.render()
    assert transcript.count("<user>") == 3 and transcript.count("<eos>") == 3


def test_long_dialogue_keeps_the_newest_tokens():
    env = gym.make("DialogQA-v0", max_len=16, min_turns=3, max_turns=3)
    obs, info = env.reset(seed=4)
    full = env.unwrapped.kernel.history(0)
    assert len(full) > 16 and np.array_equal(obs, full[-16:])
    for _ in range(4):
        obs, *_ = env.step(info["expert_action"])
        assert np.array_equal(obs, env.unwrapped.kernel.history(0)[-16:])


def test_short_dialogue_is_left_padded():
    env = gym.make("DialogQA-Toy-v0")
    obs, _ = env.reset(seed=0)
    pad = env.unwrapped.tokenizer.pad_id
    assert obs.shape == (7,) and (obs[:4] == pad).all() and obs[-1] == env.unwrapped.tokenizer.agent_id


def test_truncation_at_the_answer_limit_is_reported():
    env = gym.make("DialogQA-v0", max_answer_tokens=4)
    obs, info = env.reset(seed=0)
    word = env.unwrapped.tokenizer.token_to_id("the")
    for _step in range(4):
        obs, reward, terminated, truncated, info = env.step(word)
    assert truncated and not terminated and info["truncated_by"] == "max_answer_tokens"
    assert info["answer_correct"] is False and info["dialogue"]["success"] is False


def test_reset_options_pick_a_specific_episode():
    env = gym.make("DialogQA-v0")
    a, _ = env.reset(seed=0, options={"index": 42})
    b, _ = env.reset(seed=99, options={"index": 42})
    c, _ = env.reset(options={"index": 43})
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    envs = gym.make_vec("DialogQA-v0", num_envs=3)
    obs, _ = envs.reset(seed=0, options={"index": [42, 43, 42]})
    assert np.array_equal(obs[0], a) and np.array_equal(obs[1], c) and np.array_equal(obs[2], a)


def test_test_worlds_never_occur_in_train():
    task = gym.make("DialogQA-v0").unwrapped.task
    index = np.arange(3000, dtype=np.uint64)

    def casts(split):
        facts = task.world_facts(split, index)
        n_p, n_l, n_o = task.n_people, task.n_places, task.n_objects
        parts = [facts[:, :n_p], facts[:, n_p : n_p + n_l], facts[:, n_p + n_l : n_p + n_l + n_o]]
        return {tuple(np.concatenate([np.sort(p[i]) for p in parts])) for i in range(len(index))}, {
            tuple(row) for row in facts
        }

    train_casts, train_worlds = casts("train")
    test_casts, test_worlds = casts("test")
    assert len(test_worlds) > 2900 and len(train_worlds) > 2900
    assert not train_worlds & test_worlds
    assert not train_casts & test_casts


def test_splits_give_different_episodes_and_test_is_stable():
    train = gym.make("DialogQA-v0")
    test = gym.make("DialogQA-v0", split="test")
    assert not np.array_equal(train.reset(seed=0)[0], test.reset(seed=0)[0])
    assert np.array_equal(test.reset(seed=0)[0], gym.make("DialogQA-v0", split="test").reset(seed=0)[0])


def test_render_modes():
    env = gym.make("DialogQA-v0", render_mode="ansi")
    env.reset(seed=0)
    text = env.render()
    assert text.startswith("<bos>") and text.endswith("<agent>")
    human = gym.make("DialogQA-Toy-v0", render_mode="human")
    human.reset(seed=0)
    vec = gym.make_vec("DialogQA-v0", num_envs=2, render_mode="ansi")
    vec.reset(seed=0)
    assert len(vec.render()) == 2


def test_action_masks_for_maskable_agents():
    env = gym.make("DialogQA-v0")
    env.reset(seed=0)
    mask = env.unwrapped.action_masks()
    tok = env.unwrapped.tokenizer
    assert mask.dtype == bool and mask[tok.eos_id] and not mask[tok.pad_id] and not mask[tok.user_id]
    envs = gym.make_vec("DialogQA-v0", num_envs=3)
    envs.reset(seed=0)
    assert envs.unwrapped.action_masks().shape == (3, tok.vocab_size)


def test_vector_infos_follow_gymnasium_conventions():
    envs = gym.make_vec("DialogQA-Toy-v0", num_envs=4, answer_len=1)
    obs, info = envs.reset(seed=0)
    assert info["_expert_action"].all()
    obs, rewards, terminated, truncated, info = envs.step(info["expert_action"])
    assert rewards.dtype == np.float64 and terminated.dtype == bool and not info["answer_done"].any()
    assert not info["answer_correct"].any() and (info["answer_reward"] == 0).all() and info["_answer_reward"].all()
    obs, rewards, terminated, truncated, info = envs.step(info["expert_action"])  # EOS
    assert terminated.all() and info["answer_done"].all() and info["episode_done"].all() and info["_dialogue"].all()
    assert (info["dialogue"]["success"]).all() and (info["answer_correct"]).all()
    obs2, rewards, terminated, truncated, info = envs.step(np.zeros(4, np.int64))
    assert (rewards == 0).all() and not terminated.any() and not truncated.any()  # the autoreset step


def test_stable_baselines3_make_vec_env_builds_the_envs():
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env("DialogQA-Toy-v0", n_envs=2, seed=0)
    obs = envs.reset()
    assert obs.shape == (2, 7)
    envs.step(np.array([3, 3]))


def test_dialog_gym_does_not_need_torch():
    import subprocess
    import sys

    code = (
        "import sys, gymnasium as gym, dialog_gym; gym.make('DialogQA-v0').reset(seed=0); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False"


def test_episode_statistics_wrappers_of_gymnasium_and_sb3_fit():
    from stable_baselines3.common.monitor import Monitor

    for wrapped in (
        gym.wrappers.RecordEpisodeStatistics(gym.make("DialogQA-Toy-v0", answer_len=1)),
        Monitor(gym.make("DialogQA-Toy-v0", answer_len=1)),
    ):
        obs, info = wrapped.reset(seed=0)
        *_, info = wrapped.step(info["expert_action"])
        *_, terminated, truncated, info = wrapped.step(info["expert_action"])
        assert terminated and info["dialogue"]["success"] and info["episode"]["r"] == 1.0
    envs = gym.wrappers.vector.RecordEpisodeStatistics(gym.make_vec("DialogQA-Toy-v0", num_envs=3, answer_len=1))
    obs, info = envs.reset(seed=0)
    *_, info = envs.step(info["expert_action"])
    *_, info = envs.step(info["expert_action"])
    assert info["_episode"].all() and info["_dialogue"].all()


def test_an_explicit_episode_survives_other_rows_autoresetting():
    envs = gym.make_vec("DialogQA-v0", num_envs=2, min_turns=1, max_turns=1)
    envs.reset(seed=0, options={"index": [5, 7]})
    opening = envs.unwrapped.kernel.history(1).copy()
    eos, word = envs.unwrapped.tokenizer.eos_id, envs.unwrapped.tokenizer.token_to_id("the")
    for _ in range(3):  # row 0 ends at once and starts new episodes; row 1 keeps answering
        envs.step(np.array([eos, word]))
    assert np.array_equal(envs.unwrapped.kernel.history(1), np.concatenate([opening, [word] * 3]))


def test_vector_reset_takes_a_list_of_seeds():
    envs = gym.make_vec("DialogQA-v0", num_envs=3)
    a, _ = envs.reset(seed=[4, 5, 6])
    b, _ = envs.reset(seed=4)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
def test_registered_reference_scores_are_what_evaluate_gives(env_id):
    references = dialog_gym.REFERENCE_SCORES[env_id]
    for name, agent in (("random", RandomAgent(0)), ("oracle", OracleAgent())):
        result = evaluate(agent, env_id, episodes=1000, seed=0)
        for key, value in references[name].items():
            assert result[key] == pytest.approx(value, abs=5e-4), (name, key)
    threshold = gym.spec(env_id).reward_threshold
    assert references["random"]["mean_return"] < threshold <= references["oracle"]["mean_return"]
