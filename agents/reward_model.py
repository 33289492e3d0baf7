"""A learned reward model: the policy's Transformer trunk with a scalar head, trained on preferences.

The score of a dialogue is the scalar head (the policy's value head) at its last token, so the
model reads exactly what the env's observation holds when an answer ends. Training minimises the
Bradley-Terry loss ``-log sigmoid(r(chosen) - r(rejected))`` (Christiano et al. 2017; Ouyang et
al. 2022). Any env takes a saved model as its reward with ``reward="model:PATH"`` (this module
registers the ``model`` prefix with dialog_gym); the env then reports the task's own metric as
``answer_correct`` so that reward hacking shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.policy import PolicyConfig, TransformerPolicy
from dialog_gym.demonstrations import Preferences
from dialog_gym.rewards import AnswerBatch, register_reward_prefix
from dialog_gym.tokenizers import Tokenizer


@dataclass
class RewardModelConfig:
    """How to train a reward model (the trunk's shape is ``policy``'s, minus the vocabulary)."""

    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 1e-3
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "n_layer", "n_head", "d_model"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"reward model {name} must be a positive integer, got {value!r}")
        if not isinstance(self.learning_rate, (int, float)) or not 0 < self.learning_rate < 1:
            raise ValueError(f"reward model learning_rate must be in (0, 1), got {self.learning_rate!r}")


def vocabulary_fingerprint(tokenizer: Tokenizer) -> str:
    """A hash of every token in id order: two vocabularies of the same size still differ."""
    tokens = "\n".join(str(tokenizer.id_to_token(i)) for i in range(tokenizer.vocab_size))
    return hashlib.sha256(tokens.encode("utf-8")).hexdigest()[:16]


class RewardModel(torch.nn.Module):
    """Scores left-padded dialogues (B, T) -> (B,): higher is better."""

    def __init__(self, config: PolicyConfig, vocabulary: str = "") -> None:
        super().__init__()
        self.config, self.vocabulary = config, vocabulary
        self.trunk = TransformerPolicy(config)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, values = self.trunk(tokens[:, -self.config.context_len :])
        return values[:, -1]


def left_pad(ids: np.ndarray, lengths: np.ndarray, width: int, pad_id: int) -> np.ndarray:
    """Right-padded rows moved to the right end of ``width`` columns (keeping the last ``width`` tokens)."""
    out = np.full((len(ids), width), pad_id, np.int64)
    for row, (tokens, length) in enumerate(zip(ids, lengths)):
        kept = tokens[max(0, length - width) : length]
        out[row, width - len(kept) :] = kept
    return out


def _sides(pairs: Preferences, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    pad = pairs.tokenizer.pad_id
    return (
        torch.as_tensor(left_pad(pairs.chosen, pairs.chosen_len, width, pad)),
        torch.as_tensor(left_pad(pairs.rejected, pairs.rejected_len, width, pad)),
    )


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean ``-log sigmoid(r_chosen - r_rejected)``."""
    return -F.logsigmoid(chosen - rejected).mean()


def train_reward_model(
    pairs: Preferences, context_len: int, config: RewardModelConfig | None = None, progress: bool = False
) -> RewardModel:
    """Fit a reward model on ``pairs``; ``context_len`` is the most tokens it reads (the env's window)."""
    config = config or RewardModelConfig()
    if len(pairs) == 0:
        raise ValueError("there are no preference pairs to train on; give more pairs or a file with some")
    torch.manual_seed(config.seed)
    vocab = pairs.tokenizer.vocab_size
    model = RewardModel(
        PolicyConfig(
            vocab_size=vocab,
            context_len=context_len,
            n_layer=config.n_layer,
            n_head=config.n_head,
            d_model=config.d_model,
            pad_id=pairs.tokenizer.pad_id,
        ),
        vocabulary_fingerprint(pairs.tokenizer),
    )
    chosen, rejected = _sides(pairs, context_len)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(pairs), generator=generator)
        total = 0.0
        for start in range(0, len(pairs), config.batch_size):
            rows = order[start : start + config.batch_size]
            loss = bradley_terry_loss(model(chosen[rows]), model(rejected[rows]))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the reward model's loss became {loss.item()} in epoch {epoch}; lower the learning rate"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(rows)
        if progress:
            print(f"reward model epoch {epoch + 1}/{config.epochs}: loss {total / len(pairs):.4f}", flush=True)
    return model.eval()


@torch.no_grad()
def preference_accuracy(model: RewardModel, pairs: Preferences) -> float:
    """Fraction of pairs the model ranks chosen above rejected."""
    if len(pairs) == 0:
        raise ValueError("there are no held-out pairs to measure the accuracy on")
    chosen, rejected = _sides(pairs, model.config.context_len)
    return float((model(chosen) > model(rejected)).float().mean())


def save_reward_model(model: RewardModel, directory: str | Path) -> Path:
    """Write the model as a checkpoint directory (safetensors + state.json)."""
    state = {"kind": "reward_model", "policy": asdict(model.config), "vocabulary": model.vocabulary}
    return save_checkpoint(Path(directory), model, None, state)


def load_reward_model(directory: str | Path) -> RewardModel:
    """Read a model written by ``save_reward_model``; a bad directory fails with one line naming it."""
    state_file = Path(directory) / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
        config = PolicyConfig(**state["policy"]) if state.get("kind") == "reward_model" else None
    except FileNotFoundError:
        raise CheckpointError(f"{state_file}: missing; {directory} is not a saved reward model") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CheckpointError(f"{state_file}: not a reward model's state ({error})") from None
    if config is None:
        raise CheckpointError(f"{state_file}: holds a {state.get('kind', 'policy')!r} checkpoint, not a reward model")
    model = RewardModel(config, str(state.get("vocabulary", "")))
    load_checkpoint(Path(directory), model)
    return model.eval()


class ModelReward:
    """A saved reward model as an env reward (a ``dialog_gym.Reward``): scores the observation
    window at each answer's end."""

    needs_dialogue = True  # the env passes its observation window in ``AnswerBatch.dialogue``
    judges_correctness = False  # a learned score has no "correct" level: the task's own reward judges answers

    def __init__(self, path: str | Path, tokenizer: Tokenizer) -> None:
        self.path, self.tokenizer = str(path), tokenizer
        self.model = load_reward_model(path)
        if self.model.config.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"the reward model at {self.path} was trained on a vocabulary of {self.model.config.vocab_size} "
                f"tokens but this env has {tokenizer.vocab_size}; train it on this env's task"
            )
        if self.model.vocabulary != vocabulary_fingerprint(tokenizer):
            raise ValueError(
                f"the reward model at {self.path} was trained on another vocabulary of the same size; "
                "train it on this env's task"
            )

    @torch.no_grad()
    def __call__(self, batch: AnswerBatch) -> np.ndarray:
        if batch.dialogue is None:
            raise ValueError("a model reward needs the dialogue; it can only score answers inside an env")
        scores = self.model(torch.as_tensor(batch.dialogue))
        if not torch.isfinite(scores).all():
            raise FloatingPointError(f"the reward model at {self.path} returned a non-finite score")
        return scores.double().numpy()

    def __getstate__(self) -> dict:
        return {"path": self.path, "tokenizer": self.tokenizer}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["tokenizer"])


def model_reward(path: str, tokenizer: Tokenizer) -> ModelReward:
    """The ``reward="model:PATH"`` plugin: the reward model saved in directory ``PATH``."""
    if not path.strip():
        raise ValueError("reward='model:' names no directory; pass reward='model:DIR' with a saved reward model")
    return ModelReward(path, tokenizer)


# ``reward="model:DIR"`` works once this module is imported, and in any process where the package is
# installed (its pyproject.toml declares ``model_reward`` in the entry-point group ``dialog_gym.rewards``).
register_reward_prefix("model", model_reward)
