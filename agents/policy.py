"""A small causal Transformer language model with a value head: the policy for token envs.

It reads observations as dialog_gym produces them (token ids, left-padded with ``pad_id``) and
gives next-token logits and a value at every position. Positions are counted from each row's
first real token, so the same dialogue gets the same outputs however much padding precedes it.
Rollouts decode incrementally with a KV cache (``start`` then ``extend``), so generating an answer
costs O(length) instead of re-reading the dialogue every step. Structure after nanoGPT's model.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

from agents.validation import check_types

MASKED_LOGIT = -1e9  # for disallowed tokens: exp() is exactly 0 in float32, unlike -inf it keeps entropy finite


@dataclass
class PolicyConfig:
    """Shape of the Transformer policy. Its vocabulary, context and padding token are the env's:
    training fills them in (a value given in a config must then match the env's)."""

    vocab_size: Annotated[int | None, tyro.conf.Suppress] = None
    """Tokens of the env's tokenizer (the action space); None: the env's."""
    context_len: Annotated[int | None, tyro.conf.Suppress] = None
    """Most tokens one sequence may hold (learned position embeddings); None: the env's window."""
    n_layer: int = 2
    """Transformer blocks."""
    n_head: int = 4
    """Attention heads per block."""
    d_model: int = 64
    """Width of the residual stream."""
    dropout: float = 0.0
    """Dropout in attention and MLP (0 for RL: it makes the sampling policy differ from the scored one)."""
    pad_id: Annotated[int, tyro.conf.Suppress] = 0
    """The padding token, never attended to; training sets it to the env's."""

    def __post_init__(self) -> None:
        check_types(self, "model.")
        for name in ("vocab_size", "context_len", "n_layer", "n_head", "d_model"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"model.{name} must be a positive integer, got {value!r}")
        if self.pad_id < 0:
            raise ValueError(f"model.pad_id must be a token id >= 0, got {self.pad_id!r}")
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model={self.d_model} must be divisible by model.n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout!r}")

    def sized(self, vocab_size: int, context_len: int, pad_id: int) -> PolicyConfig:
        """This shape for an env's vocabulary and window; a value already set must agree with the env's."""
        given = {"vocab_size": vocab_size, "context_len": context_len}
        for name, value in given.items():
            if getattr(self, name) is not None and getattr(self, name) != value:
                raise ValueError(
                    f"model.{name}={getattr(self, name)} does not match the env's {value}; leave it unset (null)"
                )
        return replace(self, **given, pad_id=pad_id)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class KVCache:
    """Keys and values of every layer for the tokens seen so far, with their validity."""

    keys: list[torch.Tensor]  # per layer (B, nh, T, hs)
    values: list[torch.Tensor]  # per layer (B, nh, T, hs)
    valid: torch.Tensor  # (B, T) bool: a real token (not padding) sits at this cache slot
    next_position: torch.Tensor  # (B,) position the row's next real token will take

    def select(self, rows: torch.Tensor) -> KVCache:
        """The cache of the given rows only (to drop rows whose episode has ended)."""
        return KVCache(
            [k[rows] for k in self.keys], [v[rows] for v in self.values], self.valid[rows], self.next_position[rows]
        )


class CausalSelfAttention(nn.Module):
    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``x`` (B, T, C); ``mask`` (B, 1, T, T_past + T) True where a query may attend a key."""
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.proj(y), (k, v)


class MLP(nn.Module):
    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(config.d_model, 4 * config.d_model)
        self.proj = nn.Linear(4 * config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x, mask, past=None):
        attended, present = self.attn(self.ln_1(x), mask, past)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), present


class TransformerPolicy(nn.Module):
    """Causal LM over the env's vocabulary with a scalar value head on the shared trunk."""

    def __init__(self, config: PolicyConfig, allowed_tokens: torch.Tensor | None = None) -> None:
        super().__init__()
        missing = [name for name in ("vocab_size", "context_len") if getattr(config, name) is None]
        if missing:
            raise ValueError(
                f"PolicyConfig needs {missing} to build a policy; config.sized(...) takes them from the env"
            )
        self.config = config
        self.token_embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.position_embedding = nn.Embedding(config.context_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.value_head = nn.Linear(config.d_model, 1)
        allowed = torch.ones(config.vocab_size, dtype=torch.bool) if allowed_tokens is None else allowed_tokens.bool()
        self.register_buffer("allowed_tokens", allowed.clone())
        # PyTorch's default initialisation (unit-variance embeddings) is kept on purpose: with GPT-2's
        # 0.02 init our small models took several times more steps to learn to look facts up
        # (associative recall) in the context. The value head starts at zero, so early advantages
        # are the returns themselves.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def _heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.ln_f(hidden)
        logits = self.lm_head(hidden).masked_fill(~self.allowed_tokens, MASKED_LOGIT)
        return logits, self.value_head(hidden).squeeze(-1)

    def _embed(self, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token + position embeddings (B, T, C)."""
        if int(positions.max()) >= self.config.context_len:
            raise ValueError(
                f"a sequence reached position {int(positions.max())} but the policy's context_len is "
                f"{self.config.context_len}; build the policy with a larger context_len"
            )
        return self.token_embedding(tokens) + self.position_embedding(positions)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T, V) and values (B, T) at every position of ``tokens`` (B, T).

        ``valid`` (B, T) marks real tokens; by default every token after a row's leading padding.
        """
        if valid is None:
            valid = real_tokens(tokens, self.config.pad_id)
        positions = (valid.long().cumsum(1) - 1).clamp(min=0)
        t = tokens.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=tokens.device).tril()
        mask = _attention_mask(causal[None], valid, valid)
        x = self._embed(tokens, positions)
        for block in self.blocks:
            x, _ = block(x, mask)
        return self._heads(x)

    # -- incremental decoding -------------------------------------------------------------------

    def start(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, KVCache]:
        """Read left-padded observations (B, T): logits and value at the last token, and the cache."""
        empty = KVCache(
            keys=[
                tokens.new_zeros(
                    (len(tokens), self.config.n_head, 0, self.config.d_model // self.config.n_head),
                    dtype=self.token_embedding.weight.dtype,
                )
            ]
            * self.config.n_layer,
            values=[
                tokens.new_zeros(
                    (len(tokens), self.config.n_head, 0, self.config.d_model // self.config.n_head),
                    dtype=self.token_embedding.weight.dtype,
                )
            ]
            * self.config.n_layer,
            valid=torch.zeros(len(tokens), 0, dtype=torch.bool, device=tokens.device),
            next_position=torch.zeros(len(tokens), dtype=torch.long, device=tokens.device),
        )
        return self.extend(tokens, real_tokens(tokens, self.config.pad_id), empty)

    def extend(
        self, tokens: torch.Tensor, valid: torch.Tensor, cache: KVCache
    ) -> tuple[torch.Tensor, torch.Tensor, KVCache]:
        """Feed new tokens (B, C) after the cached ones; ``valid`` (B, C) marks the real ones.

        Returns the logits (B, V) and value (B,) at each row's last real new token (every row
        must get at least one) and the grown cache. Rows may get different numbers of new
        tokens: the padding is stored but never attended to.
        """
        b, c = tokens.shape
        positions = cache.next_position[:, None] + valid.long().cumsum(1) - 1
        positions = positions.clamp(min=0)
        past = cache.valid.shape[1]
        causal = torch.ones(c, past + c, dtype=torch.bool, device=tokens.device).tril(diagonal=past)
        key_valid = torch.cat([cache.valid, valid], dim=1)
        mask = _attention_mask(causal[None], valid, key_valid)
        x = self._embed(tokens, positions)
        keys, values = [], []
        for layer, block in enumerate(self.blocks):
            x, (k, v) = block(x, mask, (cache.keys[layer], cache.values[layer]))
            keys.append(k)
            values.append(v)
        logits, value = self._heads(x)  # (B, C, V), (B, C)
        new_cache = KVCache(keys, values, key_valid, cache.next_position + valid.long().sum(1))
        last = c - 1 - valid.flip(1).long().argmax(1)  # each row's last real new token
        rows = torch.arange(b, device=tokens.device)
        return logits[rows, last], value[rows, last], new_cache


def real_tokens(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """True from each row's first non-padding token on (left padding is not part of the dialogue)."""
    return (tokens != pad_id).long().cumsum(1) > 0


def _attention_mask(causal: torch.Tensor, query_valid: torch.Tensor, key_valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, Tq, Tk): causal and only real keys; padding queries attend their own slot so no row is empty."""
    mask = causal & key_valid[:, None, :]
    tq, tk = query_valid.shape[1], key_valid.shape[1]
    own_slot = torch.zeros(tq, tk, dtype=torch.bool, device=mask.device)
    own_slot[torch.arange(tq), torch.arange(tk - tq, tk)] = True
    return (mask | (own_slot[None] & ~query_valid[:, :, None]))[:, None]
