"""The Transformer policy: KV cache == full pass, causal masking, padding invariance, one-pass scoring."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import dialog_gym  # noqa: F401
from agents.policy import PolicyConfig, TransformerPolicy
from agents.rollout import collect_episodes


def randomise_value_head(policy: torch.nn.Module, seed: int = 0) -> None:
    """Give the value head random weights: it starts at zero, which would make every value check compare 0 with 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.value_head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))


def make_policy(vocab=30, context=40, seed=0, **kwargs) -> TransformerPolicy:
    torch.manual_seed(seed)
    policy = TransformerPolicy(PolicyConfig(vocab_size=vocab, context_len=context, **kwargs)).eval()
    randomise_value_head(policy, seed)
    return policy


def test_kv_cache_gives_the_logits_of_the_full_pass():
    policy = make_policy()
    generator = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, 30, (4, 9), generator=generator)
    prompts[0, :3] = 0  # left padding of different amounts
    prompts[1, :6] = 0
    full = [row[row.ne(0).cumsum(0) > 0].tolist() for row in prompts]
    with torch.no_grad():
        logits, value, cache = policy.start(prompts)
        for _ in range(6):
            # Each row gets 1 to 3 new tokens, right-padded within the chunk.
            counts = torch.randint(1, 4, (4,), generator=generator)
            chunk = torch.randint(1, 30, (4, 3), generator=generator)
            valid = torch.arange(3)[None, :] < counts[:, None]
            logits, value, cache = policy.extend(chunk * valid, valid, cache)
            for i in range(4):
                full[i] += chunk[i, : counts[i]].tolist()
                ref_logits, ref_values = policy(torch.tensor([full[i]]))
                assert torch.allclose(logits[i], ref_logits[0, -1], atol=1e-5)
                assert torch.allclose(value[i], ref_values[0, -1], atol=1e-5)


def test_cache_of_selected_rows_continues_those_rows():
    policy = make_policy()
    prompts = torch.randint(1, 30, (3, 5))
    with torch.no_grad():
        _, _, cache = policy.start(prompts)
        kept = cache.select(torch.tensor([0, 2]))
        logits, value, _ = policy.extend(torch.tensor([[7], [8]]), torch.ones(2, 1, dtype=torch.bool), kept)
        ref, ref_values = policy(torch.cat([prompts[[0, 2]], torch.tensor([[7], [8]])], dim=1))
    assert torch.allclose(logits, ref[:, -1], atol=1e-5)
    assert torch.allclose(value, ref_values[:, -1], atol=1e-5)


def test_changing_a_later_token_leaves_earlier_outputs_unchanged():
    policy = make_policy()
    tokens = torch.randint(1, 30, (2, 12))
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] % 29) + 1
    with torch.no_grad():
        a_logits, a_values = policy(tokens)
        b_logits, b_values = policy(changed)
    assert torch.allclose(a_logits[:, :8], b_logits[:, :8], atol=1e-6)
    assert torch.allclose(a_values[:, :8], b_values[:, :8], atol=1e-6)
    assert not torch.allclose(a_logits[:, 8:], b_logits[:, 8:])
    assert not torch.allclose(a_values[:, 8:], b_values[:, 8:])


def test_left_padding_does_not_change_the_outputs():
    policy = make_policy()
    tokens = torch.randint(1, 30, (1, 10))
    padded = torch.cat([torch.zeros(1, 7, dtype=torch.long), tokens], dim=1)
    with torch.no_grad():
        a_logits, a_values = policy(tokens)
        b_logits, b_values = policy(padded)
    assert torch.allclose(a_logits, b_logits[:, 7:], atol=1e-5)
    assert torch.allclose(a_values, b_values[:, 7:], atol=1e-5)


def test_disallowed_tokens_are_never_chosen():
    allowed = torch.ones(30, dtype=torch.bool)
    allowed[:5] = False
    torch.manual_seed(0)
    policy = TransformerPolicy(PolicyConfig(vocab_size=30, context_len=20), allowed)
    logits, _ = policy(torch.randint(1, 30, (3, 6)))
    probs = torch.softmax(logits, -1)
    assert (probs[..., :5] == 0).all() and torch.isfinite(
        torch.distributions.Categorical(logits=logits).entropy()
    ).all()


def test_a_sequence_longer_than_the_context_is_refused():
    policy = make_policy(context=8)
    with pytest.raises(ValueError, match="context_len is 8"):
        policy(torch.randint(1, 30, (1, 9)))


@pytest.mark.parametrize("env_id,kwargs", [("DialogQA-v0", {"min_turns": 2}), ("DialogQA-Toy-v0", {})])
def test_one_pass_scoring_equals_the_rollout_step_by_step(env_id, kwargs):
    """All of an episode's actions scored in one causal pass match what the rollout computed step by step."""
    envs = gym.make_vec(env_id, num_envs=16, **kwargs)
    kernel = envs.unwrapped.kernel
    torch.manual_seed(0)
    policy = TransformerPolicy(
        PolicyConfig(vocab_size=kernel.tokenizer.vocab_size, context_len=kernel.max_len),
        torch.tensor(np.array(kernel.action_mask)),
    )
    randomise_value_head(policy)
    rollout = collect_episodes(
        envs, policy, seed=3, generator=torch.Generator().manual_seed(0), device=torch.device("cpu")
    )
    assert rollout.mask.sum() > 16
    with torch.no_grad():
        logprobs, _, values = rollout.score(policy)
    mask = rollout.mask
    assert torch.allclose(logprobs[mask], rollout.logprobs[mask], atol=1e-5)
    assert rollout.values[mask].std() > 0.1  # real values, not a head that outputs a constant
    assert torch.allclose(values[mask], rollout.values[mask], atol=1e-5)
    # next_value of each step is the value of the following step, and the final dialogue is the env's.
    following = mask[:, 1:]
    assert torch.allclose(rollout.next_values[:, :-1][following], rollout.values[:, 1:][following], atol=1e-5)
    assert rollout.terminated.sum() + rollout.truncated.sum() == 16
