"""TRL's GRPOTrainer on the multi-turn envs through ``agents.trl_env``: the adapter, then real TRL runs."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("trl")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from trl.chat_template_utils import (  # noqa: E402
    is_chat_template_prefix_preserving,
    parse_response,
    supports_tool_calling,
)

import dialog_gym  # noqa: E402
from agents.agent import PolicyAgent  # noqa: E402
from agents.trl_env import (  # noqa: E402
    DialogToolEnv,
    chat_tokenizer,
    environment_factory,
    episode_dataset,
    grpo_settings,
)
from agents.trl_grpo import env_policy  # noqa: E402

ENV_IDS = ["CustomerService-v0", "TwentyQuestions-v0"]


def token_level_expert_return(env_id: str, index: int) -> float:
    """The return of the scripted expert in the token-level env, episode ``index``."""
    env = gym.make(env_id)
    _, info = env.reset(seed=index, options={"index": index})
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, info = env.step(info["expert_action"])
        total, done = total + float(reward), terminated or truncated
    return total


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_reset_returns_the_opening_of_the_rows_episode(env_id):
    adapter = DialogToolEnv(env_id)
    text = adapter.reset(prompt=[{"role": "user", "content": ""}], index=3)  # TRL passes the whole row
    observation, _ = gym.make(env_id).reset(seed=3, options={"index": 3})
    assert chat_tokenizer(adapter.tokenizer)(text)["input_ids"] == observation[observation != 0].tolist()
    assert text.endswith("<agent>") and not adapter.done and adapter.get_reward() == 0.0


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_the_experts_replies_earn_the_token_level_envs_return(env_id):
    adapter = DialogToolEnv(env_id)
    for index in range(6):
        adapter.reset(index=index)
        turns = []
        while not adapter.done:
            turns.append(adapter.reply(adapter.tokenizer.decode(adapter.env.unwrapped.expert_reply())))
        assert adapter.get_reward() == token_level_expert_return(env_id, index)
        assert all(turn.startswith("<user>") and turn.endswith("<agent>") for turn in turns[:-1])
        assert turns[-1] == "" and adapter.info["dialogue"]["success"]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_a_too_long_reply_is_refused_in_one_line_and_not_played(env_id):
    adapter = DialogToolEnv(env_id, invalid_reply_reward=-2.0)
    adapter.reset(index=0)
    assert adapter.reply("is it furry ?").endswith("<agent>")
    played, history = adapter.get_reward(), adapter.env.unwrapped.history().copy()
    limit = adapter.env.unwrapped.max_answer_tokens
    message = adapter.reply(" ".join(["is"] * (limit + 3)))
    assert message.startswith(f"the reply is {limit + 3} tokens long") and "\n" not in message
    np.testing.assert_array_equal(adapter.env.unwrapped.history(), history)
    assert adapter.done and adapter.refused and adapter.get_reward() == played - 2.0
    assert adapter.reply("is it furry ?").startswith("the episode is over")
    assert adapter.get_reward() == played - 2.0


def test_the_templates_pass_trls_checks_and_round_trip_a_turn():
    adapter = DialogToolEnv("CustomerService-v0")
    hf = chat_tokenizer(adapter.tokenizer)
    assert supports_tool_calling(hf) and is_chat_template_prefix_preserving(hf)
    opening = adapter.reset(index=1)
    prompt = hf.apply_chat_template(
        [{"role": "user", "content": opening}], tools=[adapter.reply], add_generation_prompt=True, return_dict=False
    )
    parsed = parse_response(hf, hf("which day ? <eos>")["input_ids"], prefix=prompt, tools=[adapter.reply])
    assert parsed["tool_calls"] == [
        {"type": "function", "function": {"name": "reply", "arguments": {"text": "which day ?"}}}
    ]
    # after the episode's last reply (the env writes nothing more) or a refusal, a segment is no call
    ended = prompt + hf("book monday six harbour two <eos>")["input_ids"]
    assert "tool_calls" not in parse_response(hf, hf("where ? <eos>")["input_ids"], prefix=ended, tools=[adapter.reply])


class Probe:
    """A reward function that scores nothing (``None``: TRL leaves it out of the sum) and records, per
    batch, what TRL hands reward functions and what each rollout's env holds."""

    __name__ = "probe"

    def __init__(self) -> None:
        self.batches: list[dict] = []

    def __call__(self, prompts, completion_ids, environments, index, **_):
        self.batches.append(
            {
                "prompts": prompts,
                "completion_ids": completion_ids,
                "index": index,
                "envs": len({id(env) for env in environments}),
                "returns": [env.get_reward() for env in environments],
                "histories": [env.env.unwrapped.history().tolist() for env in environments],
                "replies": [env.info["dialogue"]["answers"] for env in environments],  # replies the env took
            }
        )
        return [None] * len(prompts)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_trl_grpo_trains_on_the_env_and_our_evaluator_scores_it(env_id, tmp_path, monkeypatch):
    from trl import GRPOConfig, GRPOTrainer

    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    make = environment_factory(env_id)
    tokenizer = make().tokenizer
    hf = chat_tokenizer(tokenizer)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=tokenizer.vocab_size,
            n_positions=512,  # the opening plus twice max_completion_length (grpo_settings)
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=tokenizer.bos_id,
            eos_token_id=tokenizer.eos_id,
            pad_token_id=tokenizer.pad_id,
        )
    )
    settings = grpo_settings(env_id)
    # A fresh model rarely ends a reply within the answer limit (one refused reply ends a rollout):
    # a bias toward EOS keeps replies short, so that these few steps play several turns.
    settings["generation_kwargs"]["sequence_bias"] = [[[tokenizer.eos_id], 3.0]]
    groups, group_size, steps = 2, 4, 2
    args = GRPOConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        bf16=False,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
        num_generations=group_size,
        per_device_train_batch_size=groups * group_size,
        max_steps=steps,
        learning_rate=1e-3,
        beta=0.0,
        **settings,
    )
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    probe = Probe()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[probe],
        args=args,
        train_dataset=episode_dataset(64),
        processing_class=hf,
        environment_factory=make,
    )
    trainer.train()

    logged = [
        log["rewards/DialogToolEnv/mean"] for log in trainer.state.log_history if "rewards/DialogToolEnv/mean" in log
    ]
    assert len(logged) == len(probe.batches) == steps
    for mean, batch in zip(logged, probe.batches):
        assert batch["envs"] == groups * group_size  # one env per rollout
        assert mean == pytest.approx(np.mean(batch["returns"]), abs=1e-6)  # TRL's reward is the envs' return
        for prompt, completion, history in zip(batch["prompts"], batch["completion_ids"], batch["histories"]):
            # what TRL trained on starts with the env's dialogue, token for token
            stream = hf.apply_chat_template(prompt, return_dict=False) + list(completion)
            assert stream[: len(history)] == history and len(stream) > len(history)
        assert batch["index"][:group_size] == [batch["index"][0]] * group_size  # a group plays one episode
    assert max(n for batch in probe.batches for n in batch["replies"]) >= 2, "no rollout played two turns"

    agent = PolicyAgent(env_policy(trainer.model, env_id, {}), greedy=True)
    result = dialog_gym.evaluate(agent, env_id, episodes=6, seed=0, num_envs=3)
    assert result["episodes"] == 6
    assert np.isfinite(result["mean_return"])
    moved = [name for name, p in trainer.model.named_parameters() if not torch.equal(p.detach().cpu(), initial[name])]
    assert moved, "TRL's updates left every weight as it was"
