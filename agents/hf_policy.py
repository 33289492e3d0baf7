"""Any ``transformers`` causal LM as the policy: a value head, the env's ids, the model's own KV cache.

``HFPolicy`` has the interface of ``TransformerPolicy`` (``forward``, ``start``/``extend``,
``config.pad_id``/``vocab_size``/``context_len``), so rollouts, pretraining and PPO use it unchanged.
Left padding is handled with an attention mask and position ids counted from each row's first
real token, as in our own model. Logits are cut or padded to the env's vocabulary (a model's
embedding table is often larger than its tokenizer; an env may add a private padding id).
Dropout stays off even in training mode: PPO's ratio must compare one function with itself.
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from agents.policy import MASKED_LOGIT, real_tokens

HF_PREFIX = "hf:"
VALUE_HEAD = "value_head.safetensors"
ENV_VOCABULARY = "dialog_gym.json"


@dataclass
class HFPolicyConfig:
    """What the env fixes about the policy: its vocabulary, padding id and the longest dialogue."""

    vocab_size: int
    pad_id: int
    context_len: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class HFCache:
    """The model's own past key values plus which cached slots hold real tokens."""

    past: Any  # a transformers Cache
    valid: torch.Tensor  # (B, T) bool
    next_position: torch.Tensor  # (B,)

    def select(self, rows: torch.Tensor) -> HFCache:
        self.past.batch_select_indices(rows)
        return HFCache(self.past, self.valid[rows], self.next_position[rows])


class HFPolicy(nn.Module):
    """A causal LM from ``transformers`` plus a scalar value head on its last hidden state."""

    def __init__(self, model: nn.Module, config: HFPolicyConfig, allowed_tokens: torch.Tensor | None = None) -> None:
        super().__init__()
        self.model, self.config = model, config
        positions = _max_positions(model.config)
        if positions is not None and config.context_len > positions:
            raise ValueError(
                f"the env's dialogues need {config.context_len} positions but the model reads at most {positions}; "
                "use a model with more positions or a shorter env (e.g. fewer turns)"
            )
        self.model_vocab = model.get_output_embeddings().weight.shape[0]
        self.loaded_weights = False  # set when the weights came from a trained model directory
        self.value_head = nn.Linear(model.config.get_text_config().hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        allowed = torch.ones(config.vocab_size, dtype=torch.bool) if allowed_tokens is None else allowed_tokens.bool()
        self.register_buffer("allowed_tokens", allowed.clone())

    @functools.cached_property
    def _cache_argument(self) -> str:
        """The name the model's forward gives its KV cache (newer transformers say ``cache``)."""
        inner = self.model.get_base_model() if self.has_adapters else self.model
        return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"

    def train(self, mode: bool = True) -> HFPolicy:
        super().train(mode)
        self.model.eval()  # no dropout: the scored policy must be the sampling policy
        return self

    def _heads(self, logits: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.config.vocab_size
        if logits.shape[-1] >= v:
            logits = logits[..., :v]
        else:
            logits = torch.cat([logits, logits.new_full((*logits.shape[:-1], v - logits.shape[-1]), MASKED_LOGIT)], -1)
        logits = logits.float().masked_fill(~self.allowed_tokens, MASKED_LOGIT)
        return logits, self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1).float()

    def _ids(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # Padding (which may be an id past the model's table) becomes 0; the attention mask hides it.
        return torch.where(valid, tokens, 0).clamp(max=self.model_vocab - 1)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) and values (B, T) at every position of left-padded ``tokens`` (B, T)."""
        if valid is None:
            valid = real_tokens(tokens, self.config.pad_id)
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        out = self.model(
            input_ids=self._ids(tokens, valid),
            attention_mask=valid.long(),
            position_ids=positions,
            output_hidden_states=True,
            use_cache=False,
        )
        return self._heads(out.logits, out.hidden_states[-1])

    def start(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, HFCache]:
        """Read left-padded observations (B, T): logits and value at the last token, and the cache."""
        from transformers import DynamicCache

        empty = HFCache(
            DynamicCache(),
            torch.zeros(len(tokens), 0, dtype=torch.bool, device=tokens.device),
            torch.zeros(len(tokens), dtype=torch.long, device=tokens.device),
        )
        return self.extend(tokens, real_tokens(tokens, self.config.pad_id), empty)

    def extend(
        self, tokens: torch.Tensor, valid: torch.Tensor, cache: HFCache
    ) -> tuple[torch.Tensor, torch.Tensor, HFCache]:
        """Feed new tokens (B, C) after the cached ones (``valid`` marks the real ones); as ``TransformerPolicy.extend``."""
        positions = (cache.next_position[:, None] + valid.long().cumsum(1) - 1).clamp(min=0)
        key_valid = torch.cat([cache.valid, valid], dim=1)
        # The cache object grows in place.
        past = {self._cache_argument: cache.past}
        out = self.model(
            input_ids=self._ids(tokens, valid),
            attention_mask=key_valid.long(),
            position_ids=positions,
            use_cache=True,
            output_hidden_states=True,
            **past,
        )
        logits, values = self._heads(out.logits, out.hidden_states[-1])
        last = tokens.shape[1] - 1 - valid.flip(1).long().argmax(1)
        rows = torch.arange(len(tokens), device=tokens.device)
        new_cache = HFCache(cache.past, key_valid, cache.next_position + valid.long().sum(1))
        return logits[rows, last], values[rows, last], new_cache

    # -- LoRA -------------------------------------------------------------------------------------

    @property
    def has_adapters(self) -> bool:
        return hasattr(self.model, "disable_adapter")

    @torch.no_grad()
    def fold_adapters(self) -> None:
        """Add the LoRA adapters' update into the base weights and restart the adapters at a zero update:
        the policy is unchanged, and with its adapters off it is now this policy (the KL reference of
        PPO after supervised pretraining is the pretrained policy, not the model before it)."""
        from peft.tuners.lora import LoraLayer

        for module in self.model.modules():
            if isinstance(module, LoraLayer):
                module.merge()
                module.merged_adapters.clear()  # the base holds the update; the adapters run again from zero
                for adapter in module.lora_B.values():
                    adapter.weight.zero_()

    # -- saving ---------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike[str], tokenizer: Any = None) -> Path:
        """Write a directory ``AutoModelForCausalLM.from_pretrained`` loads (LoRA merged in), plus the
        value head, the env's vocabulary facts and, when given, the Hugging Face tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        model = self.model
        if self.has_adapters:
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(str(directory))
        save_file(
            {k: v.detach().cpu().clone() for k, v in self.value_head.state_dict().items()}, directory / VALUE_HEAD
        )
        facts = self.config.to_dict() | {"allowed_tokens": self.allowed_tokens.nonzero().squeeze(1).tolist()}
        (directory / ENV_VOCABULARY).write_text(json.dumps(facts), encoding="utf-8")
        if tokenizer is not None:
            tokenizer.save_pretrained(str(directory))
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], device: str | torch.device = "cpu") -> HFPolicy:
        """Load what ``save_pretrained`` wrote."""
        from transformers import AutoModelForCausalLM

        directory = Path(directory)
        facts_file = directory / ENV_VOCABULARY
        if not facts_file.is_file():
            raise FileNotFoundError(f"{facts_file} is missing; {directory} was not written by HFPolicy.save_pretrained")
        facts = json.loads(facts_file.read_text(encoding="utf-8"))
        config = HFPolicyConfig(facts["vocab_size"], facts["pad_id"], facts["context_len"])
        allowed = torch.zeros(config.vocab_size, dtype=torch.bool)
        allowed[facts["allowed_tokens"]] = True
        model = AutoModelForCausalLM.from_pretrained(str(directory), use_safetensors=True)  # never unpickle
        policy = cls(model, config, allowed)
        policy.value_head.load_state_dict(load_file(directory / VALUE_HEAD))
        return policy.to(device)


class AdaptersDisabled:
    """The KL reference of a LoRA policy: the same model with its adapters switched off (no second copy)."""

    def __init__(self, policy: HFPolicy) -> None:
        self.policy = policy

    def eval(self) -> AdaptersDisabled:
        return self

    def __call__(self, tokens: torch.Tensor, valid: torch.Tensor | None = None):
        with self.policy.model.disable_adapter():
            return self.policy(tokens, valid)


def build_hf_policy(
    spec: str,
    config: HFPolicyConfig,
    allowed_tokens: torch.Tensor | None = None,
    lora_rank: int = 0,
    lora_alpha: float = 16.0,
    eos_id: int | None = None,
) -> HFPolicy:
    """The policy named by ``spec``: a local model directory (weights loaded), or a ``config.json`` file
    or a directory holding only one (a fresh model of that shape, sized to the env's vocabulary)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(
            f"{spec!r} does not exist; --policy hf:PATH takes a local model directory or a config.json "
            "(models cannot be downloaded here: fetch one with huggingface-cli download first)"
        )
    has_weights = path.is_dir() and (any(path.glob("model*.safetensors")) or any(path.glob("pytorch_model*.bin")))
    if has_weights and not any(path.glob("model*.safetensors")):
        # A .bin checkpoint is a pickle, and unpickling runs whatever code the file names.
        raise ValueError(
            f"{spec!r} holds only pickled pytorch_model*.bin weights, which are not loaded (a pickle can run code); "
            "convert them to safetensors if you trust the file: AutoModelForCausalLM.from_pretrained(DIR)"
            ".save_pretrained(DIR) writes model.safetensors"
        )
    if has_weights:
        model = AutoModelForCausalLM.from_pretrained(str(path), use_safetensors=True)
    else:
        model_config = AutoConfig.from_pretrained(str(path)) if path.is_dir() else _config_from_file(path)
        model_config.vocab_size = config.vocab_size
        model_config.pad_token_id = config.pad_id
        model_config.bos_token_id = model_config.eos_token_id = eos_id
        for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout", "dropout"):
            if hasattr(model_config, name):
                setattr(model_config, name, 0.0)
        model = AutoModelForCausalLM.from_config(model_config)
    policy = HFPolicy(model, config, allowed_tokens)
    policy.loaded_weights = has_weights
    if has_weights and (path / VALUE_HEAD).is_file():
        policy.value_head.load_state_dict(load_file(path / VALUE_HEAD))
    if lora_rank:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise ValueError(f"lora.rank={lora_rank} needs peft, which is not installed: pip install peft") from None
        from transformers.pytorch_utils import Conv1D

        # GPT-2 style models store their projections transposed (Conv1D); LoRA must know.
        transposed = any(isinstance(module, Conv1D) for module in policy.model.modules())
        lora = LoraConfig(r=lora_rank, lora_alpha=lora_alpha, task_type="CAUSAL_LM", fan_in_fan_out=transposed)
        policy.model = get_peft_model(policy.model, lora)
    return policy


def _config_from_file(path: Path):
    from transformers import AutoConfig

    data = json.loads(path.read_text(encoding="utf-8"))
    if "model_type" not in data:
        raise ValueError(f"{path}: a model config needs a 'model_type' (e.g. \"gpt2\")")
    return AutoConfig.for_model(**data)


def _max_positions(model_config) -> int | None:
    text = model_config.get_text_config()
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(text, name, None)
        if isinstance(value, int):
            return value
    return None
