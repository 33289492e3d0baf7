"""torchrun with the gloo backend on this machine: two processes train as one process would on both batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agents.checkpoint import latest_checkpoint
from agents.config import TrainConfig, update_seed
from agents.ppo import ppo_update
from agents.rollout import TokenRollout
from agents.token_run import TokenRun
from agents.train import train

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "helpers" / "ddp_worker.py"
CONFIG = {
    "env": "DialogQA-Toy-v0",
    "env_args": {"vocab_size": 12, "answer_len": 2},
    "seed": 3,
    "num_envs": 12,
    "total_steps": 2000,
    "pretrain": False,
    "device": "cpu",
    "ppo": {"num_minibatches": 3, "update_epochs": 2},
}


def torchrun(mode: str, out: Path, config: dict, updates: int, processes: int = 2) -> None:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        str(WORKER),
        mode,
        str(out),
        json.dumps(config),
        str(updates),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]


class MergedRollout(TokenRollout):
    """The rollouts of several processes as one batch; minibatch j joins every process's chunk j."""

    def __init__(self, parts: list[TokenRollout], generators: list[torch.Generator]) -> None:
        horizon = max(p.mask.shape[1] for p in parts)
        pad = lambda x: torch.nn.functional.pad(x, (0, horizon - x.shape[1]))  # noqa: E731
        cat = lambda name: torch.cat([pad(getattr(p, name)) for p in parts])  # noqa: E731
        super().__init__(
            torch.cat([p.tokens for p in parts]),
            cat("action_index"),
            cat("actions"),
            cat("logprobs"),
            cat("values"),
            cat("next_values"),
            cat("rewards"),
            cat("terminated"),
            cat("truncated"),
            cat("mask"),
            {},
        )
        self.advantages, self.returns = cat("advantages"), cat("returns")
        self.parts, self.generators = parts, generators

    def minibatches(self, count: int, generator: torch.Generator):
        offsets = [sum(len(p) for p in self.parts[:i]) for i in range(len(self.parts))]
        chunks = [
            torch.randperm(len(p), generator=g).chunk(min(count, len(p))) for p, g in zip(self.parts, self.generators)
        ]
        for j in range(len(chunks[0])):
            yield torch.cat([c[j] + o for c, o in zip(chunks, offsets)])


def one_process_reference(config: TrainConfig, updates: int, processes: int, tmp: Path) -> dict[str, torch.Tensor]:
    """What the processes should compute, in one process: each update trains on all their rollouts at once."""
    run = TokenRun(config, tmp, progress=False)
    for update in range(updates):
        for group in run.optimizer.param_groups:
            group["lr"] = config.ppo.learning_rate * max(0.0, 1.0 - run.env_steps / config.total_steps)
        parts = [run.collect(rank=r) for r in range(processes)]
        generators = [torch.Generator().manual_seed(update_seed(config.seed, update, 3, r)) for r in range(processes)]
        ppo_update(run.policy, run.optimizer, MergedRollout(parts, generators), config.ppo, torch.Generator(), update)
        run.update += 1
        run.env_steps += sum(p.num_steps for p in parts)
    return run.policy.state_dict()


def test_two_gloo_processes_equal_one_process_on_the_concatenated_batch(tmp_path):
    torchrun("steps", tmp_path, CONFIG, updates=3)
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), f"{name} differs between the ranks"
    reference = one_process_reference(TrainConfig.from_dict(CONFIG), 3, 2, tmp_path / "single")
    initial = TokenRun(TrainConfig.from_dict(CONFIG), tmp_path / "initial", progress=False).policy.state_dict()
    moved = max(float((reference[n] - initial[n]).abs().max()) for n in reference if reference[n].is_floating_point())
    assert moved > 1e-3  # the updates changed the weights, so agreement below means something
    for name, value in reference.items():
        assert torch.allclose(rank0[name].to(value.dtype), value, atol=2e-5, rtol=1e-4), (
            f"{name}: max difference {float((rank0[name] - value).abs().max())}"
        )


# reinforce_pp normalises advantages over the whole batch, all processes together
@pytest.mark.slow  # three pairs of two-process runs
@pytest.mark.parametrize("algo", ["ppo", "grpo", "reinforce_pp"])
def test_a_resumed_two_process_run_continues_exactly(tmp_path, algo):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    pretraining = {"demonstrations": 96, "epochs": 1, "batch_size": 16}  # sharded over the processes too
    config = {**CONFIG, "checkpoint_every": 1, "pretrain": True, "pretraining": pretraining, "algo": algo}
    config["critic_free"] = {"group_size": 3}
    torchrun("train", straight, config, updates=4)
    torchrun("train", resumed, config, updates=2)
    torchrun("resume", resumed, config, updates=4)
    a = load_file(latest_checkpoint(straight / "checkpoints") / "model.safetensors")
    b = load_file(latest_checkpoint(resumed / "checkpoints") / "model.safetensors")
    assert latest_checkpoint(resumed / "checkpoints").name == "update-000004"
    for name in a:
        assert torch.equal(a[name], b[name]), name
    without_timing = lambda run: [line.rsplit(",", 2)[0] for line in (run / "metrics.csv").read_text().splitlines()]  # noqa: E731
    assert without_timing(resumed) == without_timing(straight)


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    config = TrainConfig.from_dict({**CONFIG, "checkpoint_every": 1})
    torchrun("train", tmp_path, {**CONFIG, "checkpoint_every": 1}, updates=1)
    with pytest.raises(Exception, match="nproc_per_node=2"):
        train(config, tmp_path, resume=True, progress=False, stop_after=2)
