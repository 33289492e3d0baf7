"""The training loop: pretrain by maximum likelihood, then PPO with a KL leash, then evaluate.

``train(config, out_dir)`` is the whole recipe and ``dialog-gym train`` calls it. Read in order:
``make_run`` picks the trainer (``agents.token_run.TokenRun`` for dialog_gym token envs,
``agents.generic.GenericRun`` for any other env, e.g. CartPole-v1) -> ``start`` (pretraining, or the
checkpoint a resumed run continues from) -> loop {``step``: one update -> metrics row -> checkpoint}
-> final evaluation table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn
import yaml

from agents.build import is_token_env, with_model_tokenizer
from agents.checkpoint import write_atomic
from agents.config import TrainConfig
from agents.distributed import Processes, start_processes, stop_processes
from agents.generic import GenericRun
from agents.metrics import MetricsLog, progress_bar
from agents.token_run import TokenRun


class Trainer(Protocol):
    """What the loop of ``train`` drives: ``TokenRun`` and ``GenericRun``."""

    config: TrainConfig
    policy: nn.Module
    update: int
    env_steps: int
    progress: bool

    def start(self, resume: bool) -> dict[str, Any]: ...
    def step(self) -> dict[str, Any]: ...
    def save(self) -> None: ...
    def final_evaluation(self) -> dict[str, Any]: ...


def make_run(config: TrainConfig, out_dir: Path, progress: bool = True, processes: Processes | None = None) -> Trainer:
    """The trainer for ``config.env``: the token-env recipe, or generic PPO for any other env."""
    if is_token_env(config.env, config.env_args):
        return TokenRun(config, out_dir, progress, processes)
    if config.algo != "ppo":
        raise ValueError(
            f"algo={config.algo!r} needs a dialog_gym token env (its episodes are replayed in groups and "
            f"scored whole); {config.env} trains with algo=ppo"
        )
    return GenericRun(config, out_dir, progress, processes)


def check_run_directory(out_dir: Path, config: TrainConfig, resume: bool) -> None:
    """Refuse to overwrite a run, to resume what is not a run, or to resume with another config."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; pass a directory to create (or an empty one)")
    saved = out_dir / "config.yaml"
    if not resume:
        if saved.exists():
            raise ValueError(
                f"{out_dir} already holds a run; continue it with --resume {out_dir} or choose another --out"
            )
        return
    if not saved.is_file():
        raise ValueError(f"--resume needs the directory of an earlier run; {saved} does not exist")
    earlier = TrainConfig.from_yaml(saved).to_dict()
    given = with_model_tokenizer(config).to_dict()
    changed = sorted(key for key, value in given.items() if earlier.get(key) != value)
    if changed:
        raise ValueError(
            f"{saved} holds another config than the one given (differs in {changed}); a resumed run continues "
            "with its own config: resume without changing it, or start a new run with --out"
        )


def train(
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Run (or, with ``resume``, continue) the recipe in ``out_dir``; returns the final evaluation.

    Under ``torchrun`` every process calls this; rank 0 writes the run directory and returns the
    evaluation, the others return ``{}``. ``stop_after`` ends the run after that many updates
    without the final evaluation, as an interrupted run would (used to test resuming).
    """
    processes = start_processes(config.device)
    try:
        results = _train(config, Path(out_dir), resume, progress, stop_after, processes)
    except BaseException:
        if processes.distributed:
            torch.distributed.destroy_process_group()
        raise
    stop_processes(processes)
    return results


def _train(
    config: TrainConfig, out_dir: Path, resume: bool, progress: bool, stop_after: int | None, processes: Processes
) -> dict[str, Any]:
    check_run_directory(out_dir, config, resume)
    processes.barrier()  # every process has checked before rank 0 writes anything
    out_dir.mkdir(parents=True, exist_ok=True)
    run = make_run(config, out_dir, progress, processes)
    main = processes.is_main
    if main and not resume:
        write_atomic(out_dir / "config.yaml", yaml.safe_dump(run.config.to_dict(), sort_keys=False))
    summary = run.start(resume)
    log = MetricsLog(out_dir, keep_until=run.update, purge_step=run.env_steps if resume else None) if main else None
    bar = progress_bar(config.total_steps, "PPO env steps", run.progress)
    bar.update(min(run.env_steps, config.total_steps))
    try:
        while run.env_steps < config.total_steps and (stop_after is None or run.update < stop_after):
            row = run.step()
            if log is not None:
                log.write(row)
            bar.update(min(row["env_steps"], config.total_steps) - bar.n)
            bar.set_postfix(ret=f"{row['return']:.3f}", acc=f"{row['answer_accuracy']:.3f}", kl=f"{row['kl']:.3f}")
            if run.update % config.checkpoint_every == 0 or run.env_steps >= config.total_steps:
                run.save()
    finally:
        bar.close()
        if log is not None:
            log.close()
    if not processes.same_everywhere(run.policy.state_dict().values()):
        raise RuntimeError(
            "the processes ended with different weights; their updates diverged (a bug, please report it)"
        )
    if run.env_steps < config.total_steps or not main:
        return {}
    return summary | run.final_evaluation()
