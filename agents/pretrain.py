"""Maximum-likelihood pretraining: the first step of the RLHF recipe.

Teacher forcing on the task's demonstrations: the whole dialogue goes in, and the loss is the
cross-entropy of the agent's tokens only (answers and their EOS), so the model learns to answer,
not to predict the user. The result starts PPO and, frozen, is the reference of the KL penalty.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agents.distributed import Processes
from agents.policy import TransformerPolicy
from agents.ppo import NonFiniteError, check_finite_weights
from agents.validation import check_types


@dataclass
class PretrainConfig:
    """Supervised pretraining on demonstrations."""

    demonstrations: int = 32_000
    """Training dialogues drawn from the env's train split."""
    epochs: int = 4
    """Passes over the demonstrations."""
    batch_size: int = 32
    """Dialogues per gradient step (small batches: looking facts up is learned in steps, not samples)."""
    learning_rate: float = 1e-3
    """Adam learning rate (constant)."""
    demo_noise: float = 0.3
    """Fraction of demonstrated answers that are wrong or verbose (imperfect human data)."""

    def __post_init__(self) -> None:
        check_types(self, "pretraining.")
        for name in ("demonstrations", "epochs", "batch_size"):
            value = getattr(self, name)
            low = 0 if name == "epochs" else 1
            if value < low:
                raise ValueError(f"pretraining.{name} must be an integer >= {low}, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"pretraining.learning_rate must be positive, got {self.learning_rate!r}")
        if not 0.0 <= self.demo_noise <= 1.0:
            raise ValueError(f"pretraining.demo_noise must be a fraction in [0, 1], got {self.demo_noise!r}")


def answer_loss(
    policy: TransformerPolicy, ids: torch.Tensor, lengths: torch.Tensor, answer_mask: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy of the agent's tokens given everything before them.

    ``ids`` (B, S) right-padded dialogues, ``lengths`` (B,), ``answer_mask`` (B, S) the tokens to predict.
    """
    valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    logits, values = policy(ids, valid)
    targets = answer_mask[:, 1:]
    # The value head joins with weight 0: its gradient is zero, but DistributedDataParallel, which
    # expects every parameter to take part in the loss, sees it used.
    return F.cross_entropy(logits[:, :-1][targets], ids[:, 1:][targets]) + 0.0 * values[valid].sum()


def pretrain(
    policy: TransformerPolicy,
    demos,
    config: PretrainConfig,
    generator: torch.Generator,
    device: torch.device,
    progress=None,
    processes: Processes = Processes(),
) -> list[float]:
    """Fit ``policy`` to the demonstrations; returns the mean loss of each epoch.

    Under ``torchrun`` (``policy`` the DDP module) every process draws the same batches and takes
    its own share of each one's rows; DDP averages the gradients.
    """
    ids = torch.as_tensor(demos.ids, device=device)
    lengths = torch.as_tensor(demos.lengths, device=device)
    answer_mask = torch.as_tensor(demos.answer_mask, device=device)
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=config.learning_rate)
    policy.train()
    losses = []
    for epoch in range(config.epochs):
        order = torch.randperm(len(ids), generator=generator).to(device)
        epoch_loss = 0.0
        for rows in order.split(config.batch_size):
            if len(rows) < processes.world_size:
                continue  # a last batch too small to give every process a row
            rows = rows[processes.rank :: processes.world_size]
            width = int(lengths[rows].max())
            loss = answer_loss(policy, ids[rows, :width], lengths[rows], answer_mask[rows, :width])
            if not torch.isfinite(loss):
                raise NonFiniteError(
                    f"the pretraining loss became {loss.item()} in epoch {epoch + 1} (pretraining.learning_rate="
                    f"{config.learning_rate} too high?); nothing was saved"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            epoch_loss += loss.item() * len(rows)
            if progress is not None:
                progress(epoch, loss.item())
        losses.append(processes.sum_floats(epoch_loss)[0] / len(ids))
        check_finite_weights(policy, f"pretraining epoch {epoch + 1}")
    return losses
