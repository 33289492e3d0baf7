"""Results files: what a benchmark measured, kept next to the table the README quotes.

Every benchmark writes ``NAME.json`` and ``NAME.md`` into its output directory (default
``benchmarks/results/``; ``benchmarks/results/quick/`` with ``--quick``, which git ignores). The
JSON holds:

- ``name``: the benchmark (``main_job``, ``ppo_throughput``, ``hf_policy_throughput``, ...);
- ``command``: the command line that produced it; ``quick``: whether it was a ``--quick`` run;
- ``git_commit``: the code version (``git rev-parse HEAD``, with ``+dirty`` when the tree had
  uncommitted changes); ``date`` (UTC), ``machine`` and ``wall_seconds``;
- ``data``: the raw numbers, in the benchmark's own layout;
- ``markdown``: the table(s) formatted from ``data``, which is what ``python -m benchmarks.readme``
  puts into the README block ``<!-- results:NAME -->`` and what ``NAME.md`` holds;
- ``sections`` (optional): named parts of ``markdown`` for README blocks ``<!-- results:NAME.PART -->``.

A file written by another tool (``env_throughput.json``) needs only ``markdown`` and ``quick``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
QUICK_RESULTS = RESULTS / "quick"


def default_out(quick: bool) -> Path:
    """Where a benchmark writes by default: quick runs never overwrite the files the README quotes."""
    return QUICK_RESULTS if quick else RESULTS


def arguments(doc: str, quick: str | None = None) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring as the help, ``--out`` and, when ``quick`` says what a
    quick run is, ``--quick``. ``out_dir`` reads the directory back."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if quick is not None:
        parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--out", help="directory for the results files (default: benchmarks/results, or its quick/)")
    return parser


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or where the run writes by default (``default_out``)."""
    return Path(args.out) if args.out else default_out(getattr(args, "quick", False))


def git_commit() -> str:
    """The commit of the code being measured, ``+dirty`` when tracked files other than results differ from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def machine() -> str:
    """CPU, core count and the versions of everything that moves a timing."""
    import gymnasium
    import numpy
    import torch

    cpu = platform.processor() or "unknown CPU"
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    try:
        import stable_baselines3

        sb3 = f", stable-baselines3 {stable_baselines3.__version__}"
    except ImportError:
        sb3 = ""
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {numpy.__version__}, gymnasium {gymnasium.__version__}{sb3}, "
        f"CUDA {'available' if torch.cuda.is_available() else 'not used'}"
    )


def command_line() -> str:
    """The command that is running as it was typed, ``python`` standing for the interpreter's path."""
    argv = list(getattr(sys, "orig_argv", sys.argv))
    if argv:
        argv[0] = "python"
    return shlex.join(argv)


def write(
    name: str,
    data: dict[str, Any],
    markdown: str,
    out: Path,
    *,
    quick: bool,
    wall_seconds: float,
    command: str | None = None,
    sections: dict[str, str] | None = None,
) -> Path:
    """Write ``out/NAME.json`` and ``out/NAME.md``; returns the JSON's path. ``sections`` names parts of
    the markdown that the README quotes apart (block ``NAME.PART``)."""
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "name": name,
        "command": command or command_line(),
        "quick": quick,
        "git_commit": git_commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "wall_seconds": round(wall_seconds, 1),
        "data": data,
        "markdown": markdown,
    }
    if sections:
        record["sections"] = sections
    path = out / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    (out / f"{name}.md").write_text(
        f"`{record['command']}` ({record['date']}, {record['git_commit'][:12]}, {wall_seconds:.0f} s)\n\n{markdown}\n"
    )
    return path


def read(path: Path) -> dict[str, Any]:
    """A results file, checked for the keys the README needs."""
    record = json.loads(path.read_text())
    missing = sorted({"markdown", "quick"} - set(record))
    if missing:
        raise ValueError(f"{path} lacks {missing}; rerun the benchmark that writes it")
    return record
