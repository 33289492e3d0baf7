"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dialog_gym.bpe import task_texts


def gpt2_like_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer shaped like GPT-2's: byte-level, one special token that is BOS, EOS and UNK, no padding."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = list(task_texts("DialogQA-v0", 500)) + ["\nUser: \nAgent: hello"]
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )


@pytest.fixture(scope="session")
def gpt2_like() -> PreTrainedTokenizerFast:
    return gpt2_like_tokenizer()


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory):
    """A tiny Llama chat model as a GGUF file (random weights, byte-level BPE, ChatML template)."""
    from helpers.tiny_gguf import write_tiny_llama_gguf

    return write_tiny_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_chat_model(tiny_gguf, tmp_path_factory):
    """The tiny GGUF model converted to a cached transformers directory, as ``--policy FILE.gguf`` does."""
    import os

    from agents.pretrained import CACHE_VARIABLE, model_directory

    saved = os.environ.get(CACHE_VARIABLE)
    os.environ[CACHE_VARIABLE] = str(tmp_path_factory.mktemp("cache"))
    try:
        return model_directory(str(tiny_gguf))
    finally:
        if saved is None:
            del os.environ[CACHE_VARIABLE]
        else:
            os.environ[CACHE_VARIABLE] = saved
