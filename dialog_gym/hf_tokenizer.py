"""Hugging Face tokenizers seen through dialog_gym's `Tokenizer` protocol.

`HFTokenizer` reads a `transformers` tokenizer without ever changing it. A vocabulary that has no
padding token of its own (GPT-2's) gets one id past its end, private to the env: observations are
left-padded with it and the action mask forbids it, so the model never has to know it exists.
Markers the vocabulary lacks (`<user>`, `<agent>`, `<sep>`) are written as plain text instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dialog_gym.chat_template import ChatLayout

__all__ = ["HFTokenizer", "as_hf_tokenizer", "is_hf_tokenizer", "MARKER_TEXT"]

# What stands for a dialog_gym marker when the vocabulary has no token of that name.
MARKER_TEXT = {"<user>": "\nUser:", "<agent>": "\nAgent:", "<sep>": "\n", "<unk>": " ?"}
# The files ``save_pretrained`` writes for a tokenizer; a directory with none of them holds no tokenizer.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
)
MAX_TOKENIZER_FILE_BYTES = 256 << 20
FIX = "use a trained tokenizer saved with save_pretrained (dialog-gym tokenizer --out DIR trains one)"


def is_hf_tokenizer(value: Any) -> bool:
    """True for a `transformers` tokenizer object, an `HFTokenizer`, or a directory path to load one from."""
    if isinstance(value, HFTokenizer):
        return True
    if isinstance(value, (str, os.PathLike)):
        return str(value) not in ("word", "char")
    return hasattr(value, "convert_tokens_to_ids") and hasattr(value, "get_vocab")


def as_hf_tokenizer(value: Any, chat_template: bool = False) -> HFTokenizer:
    """Wrap a `transformers` tokenizer, or load one with `AutoTokenizer.from_pretrained` from a local directory;
    with `chat_template`, dialogues are to be written in the tokenizer's chat template."""
    if isinstance(value, HFTokenizer):
        return value if (value.chat is not None) == chat_template else HFTokenizer(value.hf, chat_template)
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if not os.path.isdir(path):
            raise ValueError(
                f"tokenizer={path!r} is not a directory; pass 'word', 'char', a tokenizer object or a local "
                "directory saved with save_pretrained (dialog-gym tokenizer --out DIR makes one)"
            )
        _check_tokenizer_files(path)
        from transformers import AutoTokenizer

        try:
            value = AutoTokenizer.from_pretrained(path)
        except Exception as error:  # noqa: BLE001  (transformers and tokenizers raise many types on bad files)
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"tokenizer directory {path!r} cannot be loaded by AutoTokenizer ({type(error).__name__}: {first[:200]}); "
                + FIX
            ) from None
    return HFTokenizer(value, chat_template)


def _check_tokenizer_files(path: str) -> None:
    """Refuse, in one line naming the file, a directory without tokenizer files or with a JSON one that is
    too large, not UTF-8 or not strict JSON (which ``AutoTokenizer`` would report as a raw traceback)."""
    from dialog_gym.jsonl import parse_json

    present = [name for name in TOKENIZER_FILES if os.path.isfile(os.path.join(path, name))]
    if not present:
        raise ValueError(f"tokenizer directory {path!r} holds no tokenizer files ({', '.join(TOKENIZER_FILES)}); {FIX}")
    for name in present:
        if not name.endswith(".json"):
            continue
        file = os.path.join(path, name)
        if os.path.getsize(file) > MAX_TOKENIZER_FILE_BYTES:
            raise ValueError(f"{file} is larger than {MAX_TOKENIZER_FILE_BYTES} bytes; {FIX}")
        with open(file, "rb") as handle:
            raw = handle.read()
        try:
            content = parse_json(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as error:
            raise ValueError(f"{file} is not UTF-8 text ({error.reason} at byte {error.start}); {FIX}") from None
        except ValueError as error:
            raise ValueError(f"{file}: {error}; {FIX}") from None
        if not isinstance(content, dict):
            raise ValueError(f"{file} holds a JSON {type(content).__name__}; expected an object; {FIX}")


class HFTokenizer:
    """A read-only view of a Hugging Face tokenizer with the ids an env needs.

    With ``chat_template``, ``chat`` holds the template's layout and the EOS is the token that ends
    an assistant turn (``<|im_end|>`` for ChatML), which need not be the tokenizer's own EOS.
    """

    def __init__(self, tokenizer: Any, chat_template: bool = False) -> None:
        self.hf = tokenizer
        self.hf_size = len(tokenizer)
        self._vocab = vocab = tokenizer.get_vocab()
        self.chat = ChatLayout.of(tokenizer) if chat_template else None
        eos = self.chat.end_of_turn if self.chat is not None else tokenizer.eos_token_id
        if eos is None:
            raise ValueError(
                "this Hugging Face tokenizer has no EOS token, which ends an answer; load or train one that "
                "sets eos_token (dialog-gym tokenizer does)"
            )
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        special = set(getattr(tokenizer, "all_special_ids", ()) or ()) | {eos}
        if not set(vocab.values()) - special:
            raise ValueError(
                f"tokenizer {name!r} holds {len(vocab)} token(s), none of which spells text (only special tokens "
                f"{sorted(vocab)[:8]}); an env could not show a word of its task: {FIX}"
            )
        self._eos = int(eos)
        pad = tokenizer.pad_token_id
        self._private_pad = pad is None or pad == eos
        self._pad = self.hf_size if self._private_pad else int(pad)
        bos = tokenizer.bos_token_id
        self._bos = None if bos is None or bos == eos else int(bos)
        unk = tokenizer.unk_token_id
        self._unk = None if unk is None or unk == eos else int(unk)
        self._sep = vocab.get("<sep>", tokenizer.sep_token_id)
        self._user = vocab.get("<user>")
        self._agent = vocab.get("<agent>")
        self.name = name

    @property
    def vocab_size(self) -> int:
        return self.hf_size + int(self._private_pad)

    @property
    def pad_id(self) -> int:
        return self._pad

    @property
    def eos_id(self) -> int:
        return self._eos

    @property
    def bos_id(self) -> int | None:
        return self._bos

    @property
    def sep_id(self) -> int | None:
        return self._sep

    @property
    def unk_id(self) -> int | None:
        return self._unk

    @property
    def user_id(self) -> int | None:
        return self._user

    @property
    def agent_id(self) -> int | None:
        return self._agent

    def encode(self, text: str) -> list[int]:
        return list(self.hf.encode(text, add_special_tokens=False))

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = False) -> str:
        ids = [int(i) for i in ids if int(i) < self.hf_size]
        return self.hf.decode(ids, skip_special_tokens=skip_special, clean_up_tokenization_spaces=False)

    def id_to_token(self, i: int) -> str:
        return "<pad>" if int(i) == self.hf_size and self._private_pad else self.hf.convert_ids_to_tokens(int(i))

    def token_to_id(self, token: str) -> int | None:
        return self._vocab.get(token)

    def marker(self, name: str) -> list[int]:
        """The ids that stand for a dialog_gym marker such as ``"<user>"``: its own token, else plain text."""
        own = {
            "<bos>": self._bos,
            "<eos>": self._eos,
            "<sep>": self._sep,
            "<unk>": self._unk,
            "<user>": self._user,
            "<agent>": self._agent,
        }.get(name)
        if own is not None:
            return [own]
        return self.encode(MARKER_TEXT[name]) if name in MARKER_TEXT else []

    def __repr__(self) -> str:
        chat = ", chat_template=True" if self.chat is not None else ""
        return f"HFTokenizer({self.name!r}, vocab_size={self.vocab_size}{chat})"
