"""Checkpoints that load without unpickling anything and are written atomically.

A checkpoint is a directory: ``model.safetensors`` (the policy), ``optimizer.safetensors`` (Adam's
moment tensors) and ``state.json`` (counters, beta, Adam's hyperparameters and a SHA-256 of each
tensor file). It is written to a temporary directory and renamed into place, and ``latest``
(a text file naming the newest checkpoint) is replaced atomically afterwards, so a run killed at
any moment leaves its last good checkpoint intact. Loading checks every file, the checksums and
the tensor shapes, and fails with one line naming the file and the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = 1
LATEST = "latest"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, tampered with or does not fit the model."""


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Adam's state as named tensors plus the JSON-able rest (step counts, param groups)."""
    state = optimizer.state_dict()
    tensors, steps = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if name == "step":
                steps[str(index)] = float(value)
            else:
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
    return tensors, {"param_groups": state["param_groups"], "steps": steps}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, step in meta["steps"].items():
        state.setdefault(int(index), {})["step"] = torch.tensor(step)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, state: dict[str, Any]
) -> Path:
    """Write a checkpoint directory atomically; returns its path."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    try:
        # Copies: a model with tied weights (GPT-2's embedding and LM head) shares storage, which safetensors refuses.
        weights = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / "model.safetensors")
        meta = {"format": FORMAT, **state, "files": {}}
        if optimizer is not None:
            tensors, optimizer_meta = optimizer_tensors(optimizer)
            save_file(tensors, tmp / "optimizer.safetensors")
            meta["optimizer"] = optimizer_meta
        for name in ("model.safetensors", "optimizer.safetensors"):
            if (tmp / name).exists():
                meta["files"][name] = file_sha256(tmp / name)
        write_atomic(tmp / "state.json", json.dumps(meta, indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_checkpoint(
    directory: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and ``optimizer``); returns its ``state.json``."""
    directory = Path(directory)
    state_file = directory / "state.json"
    if not state_file.is_file():
        raise CheckpointError(f"{state_file}: missing; {directory} is not a checkpoint (or it was never completed)")
    try:
        meta = json.loads(state_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{state_file}: not valid JSON ({error}); the checkpoint is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CheckpointError(f"{state_file}: not a dialog-gym checkpoint of format {FORMAT}")
    needed = ["model.safetensors"] + (["optimizer.safetensors"] if optimizer is not None else [])
    for name in needed:
        if not isinstance(meta["files"].get(name), str):
            raise CheckpointError(
                f"{state_file}: lists no checksum for {name}; the checkpoint is incomplete or was edited"
            )
    for name, expected in meta["files"].items():
        path = directory / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if file_sha256(path) != expected:
            raise CheckpointError(f"{path}: checksum mismatch; the file is truncated or was modified")
    weights = _load_tensors(directory / "model.safetensors", device)
    broken = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"{directory / 'model.safetensors'}: {broken[0]} holds NaN or infinite values")
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in expected_shapes.items():
        if key not in weights:
            raise CheckpointError(
                f"{directory / 'model.safetensors'}: has no tensor {key!r}; it was saved from another model"
            )
        if tuple(weights[key].shape) != shape:
            raise CheckpointError(
                f"{directory / 'model.safetensors'}: {key} has shape {tuple(weights[key].shape)} but the configured "
                f"model needs {shape}; use the config the checkpoint was trained with"
            )
    unexpected = sorted(set(weights) - set(expected_shapes))
    if unexpected:
        raise CheckpointError(
            f"{directory / 'model.safetensors'}: unexpected tensors {unexpected[:3]}; it was saved from another model"
        )
    model.load_state_dict(weights)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise CheckpointError(f"{state_file}: the checkpoint holds no optimizer state to resume from")
        load_optimizer(optimizer, _load_tensors(directory / "optimizer.safetensors", device), meta["optimizer"])
    return meta


def _load_tensors(path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot be read as safetensors ({error})") from None


def mark_latest(run_checkpoints: Path, name: str) -> None:
    write_atomic(Path(run_checkpoints) / LATEST, name + "\n")


def is_complete(directory: Path) -> bool:
    """Whether ``directory`` is a whole checkpoint: its state.json lists files that are all present and intact."""
    try:
        meta = json.loads((Path(directory) / "state.json").read_text(encoding="utf-8"))
        files = meta["files"]
        return meta.get("format") == FORMAT and all(file_sha256(Path(directory) / n) == h for n, h in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def latest_checkpoint(run_checkpoints: Path, prefix: str = "update-") -> Path:
    """The checkpoint directory named by ``latest``, or, when that pointer is missing or damaged (a run
    killed while writing its first checkpoint), the newest complete ``update-*`` checkpoint.

    ``latest`` must name a checkpoint inside ``run_checkpoints``: a path pointing elsewhere (another
    run's checkpoint) is refused.
    """
    run_checkpoints = Path(run_checkpoints)
    pointer = run_checkpoints / LATEST
    if pointer.is_file():
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise CheckpointError(
                f"{pointer}: unreadable ({error}); delete it to resume from the newest checkpoint"
            ) from None
        if not name or Path(name).name != name or name in (".", ".."):
            raise CheckpointError(
                f"{pointer}: names {name!r}, not a checkpoint directory inside {run_checkpoints}; "
                "delete it to resume from the newest complete checkpoint"
            )
        if is_complete(run_checkpoints / name):
            return run_checkpoints / name
    complete = [path for path in sorted(run_checkpoints.glob(f"{prefix}*"), reverse=True) if is_complete(path)]
    if complete:
        return complete[0]
    if pointer.is_file():
        return run_checkpoints / name  # damaged and nothing to fall back on: loading it names the problem
    raise CheckpointError(f"{pointer}: missing; there is no checkpoint to resume from in {run_checkpoints}")


def find_latest(run_checkpoints: Path) -> Path | None:
    """Like ``latest_checkpoint``, but None when the run has not saved an update yet."""
    try:
        return latest_checkpoint(run_checkpoints)
    except CheckpointError:
        if (Path(run_checkpoints) / LATEST).is_file():
            raise
        return None
