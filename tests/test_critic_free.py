"""GRPO, Dr. GRPO, RLOO and REINFORCE++: known answers for every advantage and loss, and training runs."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from agents.checkpoint import latest_checkpoint
from agents.config import Seed, TrainConfig, update_seed
from agents.critic_free import (
    ALGORITHMS,
    CriticFreeConfig,
    aggregate,
    assign_advantages,
    batch_normalised,
    critic_free_loss,
    equal_groups,
    group_relative_advantages,
    k3_kl,
    leave_one_out_advantages,
    reinforce_pp_advantages,
    returns_to_go,
    sequence_advantages,
)
from agents.metrics import TIMING_COLUMNS
from agents.ppo import ppo_update
from agents.token_run import TokenRun
from agents.train import train

TOY = {"vocab_size": 8, "answer_len": 1, "n_questions": 0}
CRITIC_FREE = [a for a in ALGORITHMS if a != "ppo"]


# -- advantages against hand computations -----------------------------------------------------------


def test_grpo_advantage_is_the_return_standardised_within_its_group():
    returns = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0, 2.0, 2.0])
    # group 1: mean 0.25, sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    # group 2: mean 2, sample std sqrt((1 + 1 + 0 + 0) / 3)
    s2 = math.sqrt(2 / 3)
    expected = [0.75 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001, -0.25 / 0.5001]
    expected += [1 / (s2 + 1e-4), -1 / (s2 + 1e-4), 0.0, 0.0]
    assert torch.allclose(group_relative_advantages(returns, 4), torch.tensor(expected), atol=1e-6)
    assert torch.allclose(
        group_relative_advantages(returns, 4, scale=False), torch.tensor([0.75, -0.25, -0.25, -0.25, 1, -1, 0, 0])
    )


def test_rloo_baseline_leaves_the_episode_itself_out():
    returns = torch.tensor([1.0, 0.0, 0.0, 0.0, 3.0, 1.0])
    # G = 3: [1, 0, 0] -> 1 - 0, 0 - 0.5, 0 - 0.5; [0, 3, 1] -> 0 - 2, 3 - 0.5, 1 - 1.5
    expected = torch.tensor([1.0, -0.5, -0.5, -2.0, 2.5, -0.5])
    assert torch.allclose(leave_one_out_advantages(returns, 3), expected)


@pytest.mark.parametrize("algo", ["grpo", "dr_grpo", "rloo"])
def test_a_group_of_equal_rewards_gets_zero_advantage(algo):
    returns = torch.tensor([0.7, 0.7, 0.7, 0.7, 1.0, 0.0, 0.0, 0.0])
    mask = torch.ones(8, 3, dtype=torch.bool)
    advantages = sequence_advantages(algo, returns, 4, mask)
    assert (advantages[:4] == 0).all()
    assert (advantages[4:] != 0).all()
    assert equal_groups(returns, 4).tolist() == [True] * 4 + [False] * 4


def test_returns_to_go_and_the_batch_normalisation_of_reinforce_pp():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.5, -1.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    gamma = 0.9
    # independent: a Python loop per row
    expected = np.zeros((2, 3))
    for row in range(2):
        running = 0.0
        for t in reversed(range(3)):
            running = (rewards[row, t].item() + gamma * running) if mask[row, t] else 0.0
            expected[row, t] = running
    assert np.allclose(returns_to_go(rewards, mask, gamma).numpy(), expected)
    real = expected[mask.numpy()]
    normalised = np.where(mask.numpy(), (expected - real.mean()) / (real.std() + 1e-8), 0.0)
    assert np.allclose(reinforce_pp_advantages(rewards, mask, gamma).numpy(), normalised, atol=1e-6)
    assert np.allclose(batch_normalised(torch.tensor(expected), mask).numpy(), normalised, atol=1e-6)


# -- the loss ---------------------------------------------------------------------------------------


def test_k3_is_the_known_unbiased_kl_estimate():
    logp, ref = torch.log(torch.tensor([0.5, 0.3])), torch.log(torch.tensor([0.25, 0.3]))
    # d = log(0.25 / 0.5): exp(d) - d - 1 = 0.5 + log 2 - 1; equal probabilities give 0
    assert torch.allclose(k3_kl(logp, ref), torch.tensor([math.log(2) - 0.5, 0.0]), atol=1e-6)


def test_the_three_aggregations_of_per_token_losses():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    total = lambda t: t  # noqa: E731
    assert aggregate(x, mask, "token", 1, total).item() == pytest.approx((1 + 2 + 3 + 4) / 4)
    assert aggregate(x, mask, "sequence", 1, total).item() == pytest.approx((2.0 + 4.0) / 2)
    assert aggregate(x, mask, "constant", 5, total).item() == pytest.approx(10 / (2 * 5))


def loss_of(ratio, advantage, **settings):
    new = torch.log(torch.tensor([[ratio]]))
    old = torch.zeros(1, 1)
    defaults = dict(clip_low=0.2, clip_high=0.2, kl_coef=0.0, ent_coef=0.0, aggregation="token")
    defaults.update(settings)
    terms = critic_free_loss(
        new,
        old,
        old.clone(),
        torch.tensor([[advantage]]),
        torch.zeros(1, 1),
        torch.ones(1, 1, dtype=torch.bool),
        **defaults,
    )
    return terms


def test_the_clipped_surrogate_and_dapos_clip_higher():
    assert loss_of(1.0, 2.0).policy_loss.item() == pytest.approx(-2.0)  # ratio 1: -A
    assert loss_of(1.5, 2.0).policy_loss.item() == pytest.approx(-2.0 * 1.2)  # clipped at 1 + 0.2
    assert loss_of(1.5, 2.0, clip_high=0.28).policy_loss.item() == pytest.approx(-2.0 * 1.28)  # clip-higher
    assert loss_of(1.1, 2.0, clip_high=0.28).policy_loss.item() == pytest.approx(-2.0 * 1.1)  # inside the range
    assert loss_of(0.5, -1.0).policy_loss.item() == pytest.approx(0.8)  # negative A: clipped at 1 - 0.2
    assert loss_of(1.5, -1.0).policy_loss.item() == pytest.approx(1.5)  # pessimistic side: not clipped
    assert loss_of(1.5, 2.0).clip_fraction.item() == 1.0 and loss_of(1.1, 2.0).clip_fraction.item() == 0.0


def test_the_kl_term_and_the_entropy_bonus_enter_the_loss():
    new = torch.log(torch.tensor([[0.5, 0.5]]))
    ref = torch.log(torch.tensor([[0.25, 0.5]]))
    mask = torch.ones(1, 2, dtype=torch.bool)
    entropy = torch.tensor([[1.0, 3.0]])
    terms = critic_free_loss(
        new,
        new.clone(),
        ref,
        torch.zeros(1, 2),
        entropy,
        mask,
        clip_low=0.2,
        clip_high=0.2,
        kl_coef=0.1,
        ent_coef=0.01,
        aggregation="token",
    )
    kl = (math.log(2) - 0.5) / 2  # the mean k3 of the two tokens
    assert terms.policy_loss.item() == pytest.approx(0.1 * kl, abs=1e-6)
    assert terms.loss.item() == pytest.approx(0.1 * kl - 0.01 * 2.0, abs=1e-6)
    assert terms.value_loss.item() == 0.0


def test_dropping_equal_groups_takes_them_out_of_the_loss():
    class Rollout:  # the members assign_advantages reads and writes
        env_rewards = torch.tensor([[1.0], [1.0], [1.0], [0.0]])
        kl = torch.zeros(4, 1)
        mask = torch.ones(4, 1, dtype=torch.bool)

    rollout = Rollout()
    assign_advantages(rollout, "grpo", CriticFreeConfig(group_size=2, drop_equal_groups=True), beta=0.0, gamma=1.0)
    assert rollout.loss_mask[:, 0].tolist() == [False, False, True, True]
    assign_advantages(rollout, "grpo", CriticFreeConfig(group_size=2), beta=0.0, gamma=1.0)
    assert rollout.loss_mask.all()


def test_kl_in_the_reward_or_in_the_loss():
    class Rollout:
        env_rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
        kl = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
        mask = torch.ones(2, 2, dtype=torch.bool)

    rollout = Rollout()
    assign_advantages(rollout, "rloo", CriticFreeConfig(group_size=2), beta=0.1, gamma=1.0)  # auto: in the reward
    assert torch.allclose(rollout.rewards, torch.tensor([[-0.05, 0.95], [0.0, -0.1]]))
    # returns 0.9 and -0.1: each one's baseline is the other
    assert torch.allclose(rollout.advantages, torch.tensor([[1.0, 1.0], [-1.0, -1.0]]))
    assign_advantages(rollout, "grpo", CriticFreeConfig(group_size=2), beta=0.1, gamma=1.0)  # auto: in the loss
    assert torch.equal(rollout.rewards, rollout.env_rewards)


# -- the trainers -----------------------------------------------------------------------------------


def toy_config(algo: str, **overrides) -> TrainConfig:
    data = {
        "env": "DialogQA-Toy-v0",
        "env_args": TOY,
        "algo": algo,
        "total_steps": 40_000,
        "num_envs": 256,
        "pretrain": False,
        "eval_episodes": 500,
        "ppo": {"ent_coef": 0.05, "kl_coef": 0.0, "learning_rate": 1e-3},
    }
    data.update(overrides)
    return TrainConfig.from_dict(data)


@pytest.mark.parametrize("algo", CRITIC_FREE)
def test_each_critic_free_trainer_learns_the_toy_task_from_scratch(tmp_path, algo):
    results = train(toy_config(algo), tmp_path, progress=False)
    assert results[algo]["success_rate"] >= 0.9
    assert results["random"]["success_rate"] < 0.2
    with open(tmp_path / "metrics.csv", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert float(first["success_rate"]) < 0.3  # it learned; it did not start there


@pytest.mark.parametrize("algo", CRITIC_FREE)
def test_the_ratio_is_one_on_the_first_minibatch(tmp_path, algo):
    config = toy_config(algo, num_envs=64, pretrain=True, pretraining={"demonstrations": 256, "epochs": 1})
    run = TokenRun(config, tmp_path, progress=False)
    run.start(resume=False)
    rollout = run.collect()
    generator = torch.Generator().manual_seed(update_seed(config.seed, 0, Seed.MINIBATCHES))
    stats = ppo_update(run.trainable, run.optimizer, rollout, config.ppo, generator, 0, loss=run.loss())
    assert stats.first_ratio_max_error < 1e-5
    assert stats.first_clip_fraction == 0.0
    assert rollout.advantages.abs().sum() > 0  # the check would be empty with no signal
    if algo != "reinforce_pp":
        per_episode = rollout.advantages.sum(1) / rollout.mask.sum(1)
        assert torch.allclose(per_episode.reshape(-1, 8).sum(1), torch.zeros(8), atol=1e-4)  # centred per group


def read_metrics(path):
    with open(path / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


@pytest.mark.parametrize("algo", CRITIC_FREE)
def test_a_resumed_run_continues_exactly(tmp_path, algo):
    config = toy_config(
        algo,
        total_steps=3000,
        num_envs=64,
        eval_episodes=64,
        checkpoint_every=2,
        pretrain=True,
        model={"d_model": 32, "n_head": 2, "n_layer": 1},
        pretraining={"demonstrations": 256, "epochs": 1, "demo_noise": 0.2},
        ppo={"kl_coef": 0.05},
    )
    straight = train(config, tmp_path / "straight", progress=False)
    assert train(config, tmp_path / "resumed", progress=False, stop_after=5) == {}
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(latest_checkpoint(tmp_path / "straight" / "checkpoints") / "model.safetensors")
    b = load_file(latest_checkpoint(tmp_path / "resumed" / "checkpoints") / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(tmp_path / "straight") == read_metrics(tmp_path / "resumed")
    assert len(read_metrics(tmp_path / "straight")) >= 8
    assert straight[algo] == resumed[algo]
    assert float(read_metrics(tmp_path / "straight")[-1]["kl"]) > 0  # the leash was measured


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"critic_free": {"group_size": 1}}, "critic_free.group_size must be at least 2, got 1"),
        ({"critic_free": {"group_size": 512}, "num_envs": 256}, "larger than the batch (num_envs=256)"),
        (
            {"critic_free": {"group_size": 6}, "num_envs": 256},
            "num_envs=256 is not a multiple of critic_free.group_size=6",
        ),
        ({"critic_free": {"group_size": "8"}}, "critic_free.group_size"),
        ({"critic_free": {"clip_coef_high": -0.1}}, "critic_free.clip_coef_high must be a positive number"),
    ],
)
def test_bad_group_settings_fail_in_one_line(overrides, message):
    with pytest.raises((TypeError, ValueError)) as error:
        toy_config("grpo", **overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_critic_free_trainer_on_a_generic_env_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs a dialog_gym token env"):
        train(TrainConfig.from_dict({"env": "CartPole-v1", "algo": "rloo", "num_envs": 8}), tmp_path, progress=False)


def test_grpo_trains_a_lora_policy_against_its_base_model(tmp_path):
    pytest.importorskip("peft")
    tiny_gpt2 = Path(__file__).resolve().parents[1] / "examples" / "tiny-gpt2"
    config = toy_config(
        "grpo",
        policy=f"hf:{tiny_gpt2}",
        lora={"rank": 4},
        num_envs=32,
        total_steps=1000,
        pretrain=True,
        pretraining={"demonstrations": 128, "epochs": 1, "batch_size": 16},
        ppo={"kl_coef": 0.1, "learning_rate": 1e-2},
    )
    run = TokenRun(config, tmp_path, progress=False)
    run.start(resume=False)
    before = {name: value.clone() for name, value in run.policy.state_dict().items()}
    first = run.step()
    second = run.step()
    assert first["kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout is the reference's own
    assert second["kl"] > 1e-4  # the adapters moved the policy away from the base model
    after = run.policy.state_dict()
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    # GRPO has no value loss, so only the adapters train
    assert changed and all("lora_" in name for name in changed), changed
