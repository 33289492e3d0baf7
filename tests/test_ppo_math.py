"""GAE and the PPO loss against hand computations and an independent implementation (SB3)."""

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from agents.ppo import AdaptiveKLController, PPOConfig, gae, ppo_loss


def test_gae_known_answer_constant_value_reward_at_the_end():
    """SB3's test: value 1 everywhere, reward 1 only at the last step of a terminated episode."""
    t, gamma, lam = 5, 0.99, 0.95
    rewards = torch.zeros(1, t)
    rewards[0, -1] = 1.0
    values = torch.ones(1, t)
    next_values = torch.ones(1, t)
    terminated = torch.zeros(1, t, dtype=torch.bool)
    terminated[0, -1] = True
    advantages, returns = gae(rewards, values, next_values, terminated, terminated, gamma, lam)
    # delta_t = gamma * 1 - 1 for t < T-1, and 1 - 1 = 0 at the end.
    deltas = [gamma - 1.0] * (t - 1) + [0.0]
    expected = []
    running = 0.0
    for delta in reversed(deltas):
        running = delta + gamma * lam * running
        expected.insert(0, running)
    assert torch.allclose(advantages[0], torch.tensor(expected), atol=1e-6)
    assert torch.allclose(returns, advantages + values)


def test_gae_truncation_bootstraps_and_termination_does_not():
    rewards = torch.tensor([[0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5]])
    next_values = torch.tensor([[0.5, 2.0]])
    done = torch.tensor([[False, True]])
    terminated_adv, _ = gae(rewards, values, next_values, done, done, 1.0, 1.0)
    truncated_adv, _ = gae(rewards, values, next_values, torch.zeros_like(done), done, 1.0, 1.0)
    assert terminated_adv[0, 1] == pytest.approx(0.5)  # 1 - 0.5
    assert truncated_adv[0, 1] == pytest.approx(2.5)  # 1 + 2 - 0.5
    assert truncated_adv[0, 0] == pytest.approx(0.0 + 0.5 - 0.5 + 2.5)


@pytest.mark.parametrize("seed", range(3))
def test_gae_matches_stable_baselines3(seed):
    rng = np.random.default_rng(seed)
    steps, envs, gamma, lam = 32, 4, 0.97, 0.9
    buffer = RolloutBuffer(steps, spaces.Box(-1, 1, (1,)), spaces.Discrete(2), gamma=gamma, gae_lambda=lam, n_envs=envs)
    rewards = rng.normal(size=(steps, envs)).astype(np.float32)
    values = rng.normal(size=(steps, envs)).astype(np.float32)
    starts = rng.random((steps, envs)) < 0.15
    starts[0] = True
    for t in range(steps):
        buffer.add(
            np.zeros((envs, 1)), np.zeros((envs, 1)), rewards[t], starts[t], torch.tensor(values[t]), torch.zeros(envs)
        )
    last_values = rng.normal(size=envs).astype(np.float32)
    last_dones = rng.random(envs) < 0.3
    buffer.compute_returns_and_advantage(torch.tensor(last_values), last_dones)

    # The same arrays in our layout (envs, steps): step t ends an episode when step t + 1 starts one.
    ends = np.concatenate([starts[1:], last_dones[None]], axis=0).T
    next_values = np.concatenate([values[1:], last_values[None]], axis=0).T
    advantages, returns = gae(
        torch.tensor(rewards.T),
        torch.tensor(values.T),
        torch.tensor(next_values),
        torch.tensor(ends),
        torch.tensor(ends),
        gamma,
        lam,
    )
    assert np.allclose(advantages.numpy().T, buffer.advantages, atol=1e-5)
    assert np.allclose(returns.numpy().T, buffer.returns, atol=1e-5)


def reference_loss(new_lp, old_lp, adv, new_v, old_v, ret, ent, mask, cfg):
    """The same objective written out in numpy over the masked entries only."""
    m = mask.astype(bool)
    new_lp, old_lp, adv, new_v, old_v, ret, ent = (x[m] for x in (new_lp, old_lp, adv, new_v, old_v, ret, ent))
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    ratio = np.exp(new_lp - old_lp)
    policy = np.mean(np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)))
    clipped = old_v + np.clip(new_v - old_v, -cfg.clip_coef, cfg.clip_coef)
    value = 0.5 * np.mean(np.maximum((new_v - ret) ** 2, (clipped - ret) ** 2))
    return policy - cfg.ent_coef * ent.mean() + cfg.vf_coef * value, policy, value


def test_ppo_loss_matches_an_independent_computation():
    rng = np.random.default_rng(0)
    shape = (6, 9)
    arrays = [rng.normal(size=shape) for _ in range(7)]
    arrays[0] = arrays[1] + rng.normal(scale=0.3, size=shape)  # new log-probs near the old ones
    mask = rng.random(shape) < 0.7
    cfg = PPOConfig(clip_coef=0.2, ent_coef=0.03, vf_coef=0.7)
    terms = ppo_loss(*[torch.tensor(a) for a in arrays], torch.tensor(mask), cfg)
    loss, policy, value = reference_loss(*arrays, mask, cfg)
    assert float(terms.loss) == pytest.approx(loss, rel=1e-6)
    assert float(terms.policy_loss) == pytest.approx(policy, rel=1e-6)
    assert float(terms.value_loss) == pytest.approx(value, rel=1e-6)
    # Padding must not count: changing masked-out entries changes nothing.
    noisy = [a.copy() for a in arrays]
    for a in noisy:
        a[~mask] = 1e3
    again = ppo_loss(*[torch.tensor(a) for a in noisy], torch.tensor(mask), cfg)
    assert float(again.loss) == pytest.approx(float(terms.loss), rel=1e-6)


def test_ratio_one_gives_no_clipping_and_zero_kl():
    lp = torch.randn(4, 5)
    terms = ppo_loss(
        lp,
        lp,
        torch.randn(4, 5),
        torch.zeros(4, 5),
        torch.zeros(4, 5),
        torch.zeros(4, 5),
        torch.ones(4, 5),
        torch.ones(4, 5, dtype=torch.bool),
        PPOConfig(),
    )
    assert float(terms.clip_fraction) == 0.0 and abs(float(terms.approx_kl)) < 1e-7


def test_adaptive_kl_moves_beta_toward_the_target():
    controller = AdaptiveKLController(0.1, target=1.0, horizon=100)
    controller.update(measured_kl=5.0, n_episodes=50)
    assert controller.beta == pytest.approx(0.1 * 1.1)  # error clipped to +0.2, times 50/100
    controller.update(measured_kl=0.0, n_episodes=100)
    assert controller.beta == pytest.approx(0.11 * 0.8)
    fixed = AdaptiveKLController(0.1, target=None, horizon=100)
    fixed.update(9.0, 100)
    assert fixed.beta == 0.1


def test_bad_ppo_config_values_are_named():
    with pytest.raises(ValueError, match="ppo.clip_coef"):
        PPOConfig(clip_coef=0.0)
    with pytest.raises(ValueError, match="ppo.gamma"):
        PPOConfig(gamma=1.5)
