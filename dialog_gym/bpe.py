"""Train a byte-level BPE tokenizer on a task's own text, saved where ``AutoTokenizer`` loads it.

The corpus is the text of the task's training episodes (contexts, questions and reference
answers), each with a leading space as the env writes words. The result keeps dialog_gym's special
tokens (``<pad>``, ``<eos>``, ``<user>``, ...), so an env using it marks turns with single tokens,
and being byte-level it can spell any text, including words the corpus never held.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dialog_gym.tokenizers import SPECIAL_ID_ATTRIBUTES, SPECIAL_TOKENS

MAX_VOCAB_SIZE = 2**18  # larger than any released model's vocabulary
MAX_EPISODES = 10**7  # the episode indices are drawn up front: 80 MB at most


def task_texts(env_id: str, episodes: int, seed: int = 0, **env_args: Any) -> Iterator[str]:
    """The task's vocabulary and the text of ``episodes`` training episodes: every user segment and reference answer."""
    task = gym.make(env_id, **env_args).unwrapped.task
    tokenizer = task.tokenizer
    # Every word of the task's vocabulary once, so rare ones (filler words, unusual names) get merged too.
    specials = {getattr(tokenizer, name, None) for name in SPECIAL_ID_ATTRIBUTES}
    yield from (" " + tokenizer.id_to_token(i) for i in range(tokenizer.vocab_size) if i not in specials)
    index = np.random.default_rng(seed).integers(0, 2**63, size=episodes, dtype=np.uint64)
    for start in range(0, episodes, 1024):
        batch = task.episodes("train", index[start : start + 1024])
        for b in range(len(batch)):
            for t in range(int(batch.n_turns[b])):
                for ids in (
                    batch.segments[b, t, : batch.segment_len[b, t]],
                    batch.references[b, t, : batch.reference_len[b, t]],
                ):
                    text = tokenizer.decode(ids, skip_special=True)
                    if text.strip():
                        yield " " + text


def train_bpe(
    env_id: str,
    out_dir: str | os.PathLike[str],
    vocab_size: int = 1024,
    episodes: int = 20_000,
    seed: int = 0,
    **env_args: Any,
):
    """Train, save to ``out_dir`` (``save_pretrained`` layout) and return the ``transformers`` tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if "tokenizer" in env_args:
        raise ValueError("the corpus is read in the env's own vocabulary; drop tokenizer= from the env arguments")
    floor = len(SPECIAL_TOKENS) + 256
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not floor <= vocab_size <= MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be an integer >= {floor} (256 bytes and {len(SPECIAL_TOKENS)} special tokens) and "
            f"<= {MAX_VOCAB_SIZE}, got {vocab_size!r}"
        )
    if isinstance(episodes, bool) or not isinstance(episodes, int) or not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be a positive integer <= {MAX_EPISODES}, got {episodes!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(task_texts(env_id, episodes, seed, **env_args), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        sep_token="<sep>",
        unk_token="<unk>",
        additional_special_tokens=["<user>", "<agent>"],
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    return tokenizer
