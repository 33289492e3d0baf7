"""What the ``dialog-gym`` commands share: env arguments as flags, and the tables they print."""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Sequence

import tyro

from agents.validation import parse_scalar

__all__ = ["EVAL_COLUMNS", "EnvArgs", "changed_fields", "eval_rows", "format_table", "parse_env_args"]

EVAL_COLUMNS = ["agent", "mean_return", "answer_accuracy", "success_rate", "mean_answer_tokens"]

EnvArgs = Annotated[
    tuple[str, ...],
    tyro.conf.UseAppendAction,
    tyro.conf.arg(
        metavar="KEY=VALUE",
        help="env constructor argument, repeatable (e.g. --env-arg n_people=2); values are read as YAML scalars",
    ),
]


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``["n_people=3", "reward=f1"]`` -> ``{"n_people": 3, "reward": "f1"}`` (values read as YAML scalars)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--env-arg expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = parse_scalar(value)
    return out


def format_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table of ``rows`` (dicts) with the given ``columns``; floats to 3 decimals."""

    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def eval_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"agent": k, **v} for k, v in results.items() if isinstance(v, dict) and "mean_return" in v]
    if "demonstrations" in results:
        rows.append({"agent": "demonstrations", **results["demonstrations"]})
    return rows


def changed_fields(config: Any, default: Any, prefix: str = "") -> list[str]:
    """The dotted names of the fields where two configs of one dataclass type differ."""
    changed = []
    for f in fields(config):
        mine, theirs = getattr(config, f.name), getattr(default, f.name)
        if hasattr(mine, "__dataclass_fields__"):
            changed += changed_fields(mine, theirs, f"{prefix}{f.name}.")
        elif mine != theirs:
            changed.append(prefix + f.name)
    return changed
