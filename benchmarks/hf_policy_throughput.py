"""What a transformers policy costs here: rollout and PPO-update speed against our own Transformer.

    python -m benchmarks.hf_policy_throughput [--quick] [--out DIR]

On DialogQA-v0 spoken in a byte-level BPE trained on its text, times one rollout of 64 episodes
(KV-cached decoding) and one PPO epoch over it (forward + backward of every episode) for our
Transformer (the baseline), the tiny GPT-2 of examples/tiny-gpt2, and a model shaped like GPT-2
small (124M parameters, random weights built from its config: nothing is downloaded, and the
cost of a forward pass does not depend on the weights' values); each policy first runs one
untimed rollout and update, so that allocations and lazy initialisation are not timed. A second
table gives what the env itself costs in that vocabulary against its built-in one, with the
oracle's actions and with uniformly random allowed ones: the re-tokenized env remembers the native
reading of the answers it has scored, so the oracle, which repeats the same answers, hits that
memo far more often than a policy still exploring does.

Writes ``hf_policy_throughput.json`` and ``.md`` into ``--out`` (see ``benchmarks/record.py``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import dialog_gym  # noqa: F401  (registers the envs)
from agents.hf_policy import HFPolicy, HFPolicyConfig, build_hf_policy
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import PPOConfig, ppo_update
from agents.rollout import collect_episodes
from benchmarks import record
from dialog_gym.bpe import train_bpe
from dialog_gym.evaluation import OracleAgent, RandomAgent

ROOT = Path(__file__).resolve().parents[1]


def gpt2_small(config: HFPolicyConfig, allowed: torch.Tensor) -> HFPolicy:
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = GPT2Config(
        vocab_size=50257,
        n_positions=1024,
        n_embd=768,
        n_layer=12,
        n_head=12,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return HFPolicy(GPT2LMHeadModel(shape), config, allowed)


def rollout_and_update(policy: torch.nn.Module, envs, episodes: int) -> dict[str, float]:
    """Seconds of one rollout of ``episodes`` episodes and of one PPO epoch over it, and what they processed."""
    device = torch.device("cpu")
    start = time.perf_counter()
    rollout = collect_episodes(envs, policy, seed=0, generator=torch.Generator().manual_seed(0), device=device)
    rollout_seconds = time.perf_counter() - start
    rollout.advantages = torch.randn_like(rollout.rewards) * rollout.mask
    rollout.returns = rollout.values + rollout.advantages
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    config = PPOConfig(update_epochs=1, num_minibatches=max(1, episodes // 16))
    start = time.perf_counter()
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0), 0)
    update_seconds = time.perf_counter() - start
    return {
        "rollout_seconds": rollout_seconds,
        "rollout_steps": rollout.num_steps,
        "update_seconds": update_seconds,
        "update_tokens": int((rollout.tokens != policy.config.pad_id).sum()),
    }


def time_policy(policy: torch.nn.Module, envs, episodes: int) -> dict[str, float]:
    state = {name: value.clone() for name, value in policy.state_dict().items()}
    rollout_and_update(policy, envs, episodes)  # warm-up, untimed
    policy.load_state_dict(state)  # the timed run starts from the same weights as the warm-up
    timed = rollout_and_update(policy, envs, episodes)
    return {
        "parameters": sum(p.numel() for p in policy.parameters()),
        "rollout_steps_per_second": timed["rollout_steps"] / timed["rollout_seconds"],
        "update_tokens_per_second": timed["update_tokens"] / timed["update_seconds"],
    }


def env_steps_per_second(agent, seconds: float, **env_args) -> float:
    """Steps per second of 512 DialogQA-v0 envs driven by ``agent`` (what the env costs, without a policy)."""
    envs = gym.make_vec("DialogQA-v0", num_envs=512, **env_args)
    observations, info = envs.reset(seed=0)
    for _ in range(64):  # warm-up, untimed
        observations, _, _, _, info = envs.step(agent(observations, info))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        observations, _, _, _, info = envs.step(agent(observations, info))
        steps += 512
    return steps / (time.perf_counter() - start)


def measure(quick: bool = False) -> dict[str, Any]:
    """Every raw number of the two tables."""
    episodes = 16 if quick else 64
    with tempfile.TemporaryDirectory() as directory:
        train_bpe("DialogQA-v0", directory, vocab_size=1024, episodes=2000 if quick else 20_000)
        envs = gym.make_vec("DialogQA-v0", num_envs=episodes, tokenizer=directory)
        env = envs.unwrapped
        allowed = torch.tensor(np.array(env.action_masks()[0]))
        config = HFPolicyConfig(env.tokenizer.vocab_size, env.tokenizer.pad_id, env.max_len)
        torch.manual_seed(0)
        candidates = [
            (
                "our Transformer (baseline)",
                lambda: TransformerPolicy(
                    PolicyConfig(vocab_size=config.vocab_size, context_len=config.context_len, pad_id=config.pad_id),
                    allowed,
                ),
            ),
            (
                "tiny GPT-2 (examples/tiny-gpt2)",
                lambda: build_hf_policy(str(ROOT / "examples" / "tiny-gpt2"), config, allowed),
            ),
            ("GPT-2 small shape, 124M", lambda: gpt2_small(config, allowed)),
        ]
        policies = [{"name": name, **time_policy(make(), envs, episodes)} for name, make in candidates]
        seconds = 0.5 if quick else 3.0
        env_rows = []
        for actions, make_agent in (("oracle", OracleAgent), ("random", lambda: RandomAgent(0))):
            native = env_steps_per_second(make_agent(), seconds)
            bpe = env_steps_per_second(make_agent(), seconds, tokenizer=directory)
            env_rows.append({"actions": actions, "native": native, "bpe": bpe})
    return {"episodes": episodes, "threads": torch.get_num_threads(), "policies": policies, "env": env_rows}


def table(data: dict[str, Any]) -> str:
    """The two tables as markdown."""
    base = data["policies"][0]
    lines = [
        f"DialogQA-v0 with a 1024-token byte-level BPE, {data['episodes']} episodes, {data['threads']} CPU threads.",
        "",
        "| policy | parameters | rollout env steps/s | vs baseline | PPO update tokens/s | vs baseline |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in data["policies"]:
        lines.append(
            f"| {r['name']} | {r['parameters']:,} | {r['rollout_steps_per_second']:,.0f} | "
            f"{r['rollout_steps_per_second'] / base['rollout_steps_per_second']:.3f}x | "
            f"{r['update_tokens_per_second']:,.0f} | {r['update_tokens_per_second'] / base['update_tokens_per_second']:.3f}x |"
        )
    lines += [
        "",
        "| env (512 envs) | actions | env steps/s | vs built-in, same actions |",
        "|---|---|---:|---:|",
    ]
    for row in data["env"]:
        lines += [
            f"| DialogQA-v0, built-in vocabulary | {row['actions']} | {row['native']:,.0f} | 1.000x |",
            f"| DialogQA-v0, the BPE (answers decoded and re-read to be scored) | {row['actions']} | "
            f"{row['bpe']:,.0f} | {row['bpe'] / row['native']:.3f}x |",
        ]
    return "\n".join(lines)


def run(quick: bool = False, out: Path | None = None) -> str:
    """Measure, write ``out/hf_policy_throughput.json`` and ``.md`` when ``out`` is given, and return the tables."""
    start = time.perf_counter()
    data = measure(quick)
    markdown = table(data)
    if out is not None:
        record.write("hf_policy_throughput", data, markdown, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return markdown


def main() -> None:
    parser = record.arguments(__doc__, quick="16 episodes and a smaller tokenizer corpus")
    args = parser.parse_args()
    print(run(args.quick, record.out_dir(args)))


if __name__ == "__main__":
    main()
