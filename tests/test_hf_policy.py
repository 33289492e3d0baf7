"""transformers causal LMs as the policy: the adapter, its KV cache, LoRA, and the whole recipe."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

import dialog_gym
from agents.agent import PolicyAgent
from agents.cli import main as cli
from agents.config import TrainConfig
from agents.hf_policy import HFPolicy, HFPolicyConfig, build_hf_policy
from agents.rollout import collect_episodes
from agents.token_run import TokenRun
from agents.train import train

TINY_GPT2 = Path(__file__).resolve().parents[1] / "examples" / "tiny-gpt2"


def randomise_value_head(policy: HFPolicy, seed: int = 0) -> None:
    """Give the value head random weights: it starts at zero, which would make every value check compare 0 with 0."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.value_head.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator))


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bpe") / "tokenizer"
    cli(["tokenizer", "--env", "DialogQA-v0", "--out", str(out), "--episodes", "2000", "--vocab-size", "600"])
    return str(out)


def tiny_model(vocab: int) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=vocab,
            n_layer=2,
            n_head=2,
            n_embd=32,
            n_positions=128,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
        )
    )


def test_the_adapter_gives_the_bare_models_logits():
    model = tiny_model(50)
    policy = HFPolicy(model, HFPolicyConfig(vocab_size=50, pad_id=0, context_len=128))
    tokens = torch.randint(1, 50, (3, 20))
    logits, values = policy(tokens)
    with torch.no_grad():
        bare = model(input_ids=tokens).logits
    assert torch.allclose(logits, bare, atol=1e-5)
    assert values.shape == (3, 20) and torch.all(values == 0)  # the value head starts at zero
    randomise_value_head(policy)
    logits, values = policy(tokens)
    with torch.no_grad():
        hidden = model(input_ids=tokens, output_hidden_states=True).hidden_states[-1]
        assert torch.allclose(values, policy.value_head(hidden).squeeze(-1), atol=1e-5)
    # Left padding changes nothing at the real positions (positions count from the first real token).
    padded = torch.cat([torch.zeros(3, 7, dtype=torch.long), tokens], dim=1)
    logits_padded, values_padded = policy(padded)
    assert torch.allclose(logits_padded[:, 7:], bare, atol=1e-5)
    assert torch.allclose(values_padded[:, 7:], values, atol=1e-5)


def test_logits_are_cut_or_extended_to_the_envs_vocabulary_and_masked():
    allowed = torch.ones(40, dtype=torch.bool)
    allowed[3] = False
    small = HFPolicy(tiny_model(36), HFPolicyConfig(vocab_size=40, pad_id=39, context_len=64), allowed)
    logits, _ = small(torch.randint(0, 36, (2, 5)))
    assert logits.shape[-1] == 40 and torch.all(logits[..., 36:] < -1e8) and torch.all(logits[..., 3] < -1e8)
    large = HFPolicy(tiny_model(60), HFPolicyConfig(vocab_size=40, pad_id=0, context_len=64))
    assert large(torch.randint(1, 40, (2, 5)))[0].shape[-1] == 40


def test_rollouts_with_the_models_kv_cache_match_one_pass_scoring(bpe_dir):
    envs = gym.make_vec("DialogQA-v0", num_envs=6, tokenizer=bpe_dir)
    env = envs.unwrapped
    config = HFPolicyConfig(env.tokenizer.vocab_size, env.tokenizer.pad_id, env.max_len)
    torch.manual_seed(0)
    policy = build_hf_policy(str(TINY_GPT2), config, torch.tensor(np.array(env.action_masks()[0])))
    randomise_value_head(policy)
    rollout = collect_episodes(
        envs, policy, seed=0, generator=torch.Generator().manual_seed(0), device=torch.device("cpu")
    )
    with torch.no_grad():
        logprobs, _, values = rollout.score(policy)
    mask = rollout.mask
    assert mask.sum(1).min() >= 2  # several tokens per episode went through the cache
    assert torch.allclose(logprobs[mask], rollout.logprobs[mask], atol=1e-5)
    assert rollout.values[mask].std() > 0.1  # real values, not a head that outputs a constant
    assert torch.allclose(values[mask], rollout.values[mask], atol=1e-5)
    following = mask[:, 1:]  # next_value of each step is the value of the following step
    assert torch.allclose(rollout.next_values[:, :-1][following], rollout.values[:, 1:][following], atol=1e-5)


def test_the_full_recipe_pretrain_ppo_save_load_evaluate(bpe_dir, tmp_path):
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-v0",
            "policy": f"hf:{TINY_GPT2}",
            "env_args": {"tokenizer": bpe_dir},
            "total_steps": 3000,
            "num_envs": 64,
            "eval_episodes": 60,
            "pretraining": {"demonstrations": 1024, "epochs": 2},
        }
    )
    results = train(config, tmp_path / "run", progress=False)
    losses = results["pretraining"]["losses"]
    assert losses[-1] < losses[0]
    saved = tmp_path / "run" / "model"
    assert (saved / "config.json").is_file() and (saved / "tokenizer.json").is_file()
    # The saved directory loads with plain transformers and gives the same logits as the trained policy.
    run = TokenRun(config, tmp_path / "probe", progress=False)
    from agents.checkpoint import latest_checkpoint, load_checkpoint

    load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"), run.policy)
    tokens = torch.as_tensor(gym.make_vec("DialogQA-v0", num_envs=4, tokenizer=bpe_dir).reset(seed=0)[0])
    bare = AutoModelForCausalLM.from_pretrained(saved)
    with torch.no_grad():
        ours, _ = run.policy(tokens)
        valid = (tokens != run.policy.config.pad_id).long().cumsum(1) > 0
        theirs = bare(
            input_ids=torch.where(valid, tokens, 0),
            attention_mask=valid.long(),
            position_ids=(valid.long().cumsum(1) - 1).clamp(min=0),
        ).logits
    real = valid[:, :, None] & run.policy.allowed_tokens  # our logits mask the tokens an agent may not emit
    assert torch.allclose(ours[real], theirs[..., : ours.shape[-1]][real], atol=1e-4)
    # Loaded back with its value head, the greedy policy scores exactly what the run reported.
    loaded = HFPolicy.from_pretrained(saved)
    with torch.no_grad():
        trained_values, loaded_values = run.policy(tokens)[1], loaded(tokens)[1]
    assert trained_values[valid].std() > 0  # PPO moved the value head off zero
    assert torch.allclose(loaded_values[valid], trained_values[valid], atol=1e-4)
    again = dialog_gym.evaluate(
        PolicyAgent(loaded, greedy=True),
        "DialogQA-v0",
        episodes=60,
        seed=config.seed + 12345,
        split="test",
        tokenizer=bpe_dir,
    )
    assert again == json.loads((tmp_path / "run" / "eval.json").read_text())["ppo_greedy"]


def test_lora_trains_only_the_adapters_and_the_reference_is_the_base_model(bpe_dir, tmp_path):
    pytest.importorskip("peft")
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-v0",
            "policy": f"hf:{TINY_GPT2}",
            "env_args": {"tokenizer": bpe_dir},
            "total_steps": 1500,
            "num_envs": 32,
            "pretrain": False,
            "lora": {"rank": 4},
        }
    )
    run = TokenRun(config, tmp_path, progress=False)
    assert not isinstance(run.reference, torch.nn.Module)  # no second copy of the model
    before = {k: v.clone() for k, v in run.policy.state_dict().items()}
    tokens = torch.as_tensor(gym.make_vec("DialogQA-v0", num_envs=4, tokenizer=bpe_dir).reset(seed=0)[0])
    with torch.no_grad():
        base_logits = run.reference(tokens)[0]
    for _ in range(3):
        run.step()
    after = run.policy.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or k.startswith("value_head") for k in changed)
    with torch.no_grad():
        assert torch.equal(run.reference(tokens)[0], base_logits)  # adapters off: still the base model
        assert not torch.allclose(run.policy(tokens)[0], base_logits)
    saved = run.policy.save_pretrained(tmp_path / "merged")
    merged = HFPolicy.from_pretrained(saved)
    with torch.no_grad():
        merged_logits, merged_values = merged(tokens)
        logits, values = run.policy(tokens)
    assert torch.allclose(merged_logits, logits, atol=1e-4)
    assert values.std() > 0 and torch.allclose(merged_values, values, atol=1e-4)  # the trained value head came along


def test_bad_policy_settings_fail_in_one_line(bpe_dir, tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        cli(["train", "--policy", f"hf:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "a"), "--quiet"])
    with pytest.raises(SystemExit, match="policy must be 'transformer', 'hf:PATH' .* or a PATH.gguf file, got 'gpt2'"):
        cli(["train", "--policy", "gpt2", "--out", str(tmp_path / "b"), "--quiet"])
    trained = HFPolicy(tiny_model(600), HFPolicyConfig(600, 0, 128)).save_pretrained(tmp_path / "trained")
    with pytest.raises(ValueError, match="--env-arg tokenizer=DIR"):
        TokenRun(TrainConfig(policy=f"hf:{trained}", env="DialogQA-v0"), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="positions"):
        TokenRun(
            TrainConfig(policy=f"hf:{trained}", env="DialogQA-v0", env_args={"tokenizer": bpe_dir, "max_len": 200}),
            tmp_path / "d",
            progress=False,
        )


def test_a_downloaded_model_directory_trains_with_the_real_lm_example(tmp_path, gpt2_like):
    """A model directory as huggingface-cli leaves it (weights and a GPT-2-like tokenizer without padding)."""
    tokenizer = gpt2_like
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_head=2, n_embd=32, n_positions=256))
    downloaded = tmp_path / "models" / "gpt2-like"
    model.save_pretrained(downloaded)
    tokenizer.save_pretrained(downloaded)
    example = Path(__file__).resolve().parents[1] / "examples" / "real-lm.yaml"
    cli(
        [
            "train",
            "--policy",
            f"hf:{downloaded}",
            "--config",
            str(example),
            "--out",
            str(tmp_path / "run"),
            "--total-steps",
            "600",
            "--quiet",
        ]
    )
    results = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {"random", "pretrained", "ppo", "ppo_greedy"} <= set(results)
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert f"tokenizer: {downloaded}" in config  # the model's own tokenizer became the env's vocabulary
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")  # LoRA merged into plain weights
    assert not any("lora" in name for name in trained.state_dict())


def test_ppo_from_scratch_teaches_a_tiny_gpt2_the_toy_task(tmp_path):
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-Toy-v0",
            "env_args": {"vocab_size": 8, "answer_len": 1, "n_questions": 0},
            "policy": f"hf:{TINY_GPT2}",
            "total_steps": 40_000,
            "num_envs": 256,
            "pretrain": False,
            "eval_episodes": 500,
            "ppo": {"ent_coef": 0.05, "kl_coef": 0.0, "learning_rate": 1e-3},
        }
    )
    results = train(config, tmp_path, progress=False)
    assert results["random"]["success_rate"] < 0.2
    assert results["ppo"]["success_rate"] >= 0.9


def test_after_pretraining_with_lora_the_reference_is_the_pretrained_policy(bpe_dir, tmp_path):
    pytest.importorskip("peft")
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-v0",
            "policy": f"hf:{TINY_GPT2}",
            "env_args": {"tokenizer": bpe_dir},
            "total_steps": 500,
            "num_envs": 16,
            "lora": {"rank": 4},
            "pretraining": {"demonstrations": 64, "epochs": 1, "batch_size": 16},
        }
    )
    run = TokenRun(config, tmp_path, progress=False)
    tokens = torch.as_tensor(gym.make_vec("DialogQA-v0", num_envs=4, tokenizer=bpe_dir).reset(seed=0)[0])
    with torch.no_grad():
        untrained = run.policy(tokens)[0]
    run.start(resume=False)
    with torch.no_grad():
        pretrained, reference = run.policy(tokens)[0], run.reference(tokens)[0]
    assert not torch.allclose(pretrained, untrained, atol=1e-3)  # pretraining moved the policy
    assert torch.allclose(reference, pretrained, atol=1e-5)  # and the reference moved with it
    assert all(
        not p.any() for name, p in run.policy.named_parameters() if "lora_B" in name
    )  # the adapters restart at a zero update
    assert run.step()["kl"] == pytest.approx(0.0, abs=1e-4)  # the first rollout is the reference's own
