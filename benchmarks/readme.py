"""The README's benchmark tables, generated from the results files so that no figure is pasted by hand.

Each quoted table sits in the README between ``<!-- results:NAME -->`` and ``<!-- /results -->``;
``BLOCKS`` says which results file fills it and which command writes that file. A file written
by ``--quick`` is refused: the README quotes full runs only.

    python -m benchmarks.readme            # rewrite every block of README.md from benchmarks/results/
    python -m benchmarks.readme --check    # exit 1, naming the stale blocks, when README.md differs

``tests/test_results.py`` asserts that every block equals what this script generates.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from benchmarks import record, reference_scores

README = record.ROOT / "README.md"
# Block name -> (results file under benchmarks/results/, the command that writes it). A name
# ``FILE.PART`` quotes the section PART of that file's ``sections``.
BLOCKS: dict[str, tuple[str, str]] = {
    "main_job": ("main_job.json", "python -m benchmarks.main_job"),
    "reference_scores": (reference_scores.OUT_DIR, "python -m benchmarks.reference_scores"),
    "env_throughput": ("env_throughput.json", "python -m benchmarks.env_throughput"),
    "ppo_throughput": ("ppo_throughput.json", "python -m benchmarks.ppo_throughput --main-job"),
    "hf_policy_throughput": ("hf_policy_throughput.json", "python -m benchmarks.hf_policy_throughput"),
    "llm_zero_shot": ("llm_zero_shot.json", "python -m benchmarks.llm_zero_shot"),
    "llm_recipe": ("llm_recipe.json", "python -m benchmarks.llm_recipe"),
    "serve_load": ("serve_load.json", "python -m benchmarks.serve_load"),
    "sb3_crosscheck.grid": ("sb3_crosscheck.json", "python -m benchmarks.sb3_crosscheck"),
    "sb3_crosscheck.ratios": ("sb3_crosscheck.json", "python -m benchmarks.sb3_crosscheck"),
    "sb3_crosscheck.full": ("sb3_crosscheck.json", "python -m benchmarks.sb3_crosscheck"),
    "trl_crosscheck.table": ("trl_crosscheck.json", "python -m benchmarks.trl_crosscheck"),
    "trl_crosscheck.ratios": ("trl_crosscheck.json", "python -m benchmarks.trl_crosscheck"),
    "algorithms": ("algorithms.json", "python -m benchmarks.algorithms"),
}
PATTERN = re.compile(r"<!-- results:(?P<name>[\w.]+) -->\n(?P<body>.*?)\n?<!-- /results -->", re.DOTALL)


def generate(name: str, results: Path = record.RESULTS) -> str:
    """The contents of README block ``name`` from the results files in ``results``."""
    if name not in BLOCKS:
        raise ValueError(f"README block {name!r} is unknown; expected one of {sorted(BLOCKS)}")
    filename, command = BLOCKS[name]
    if name == "reference_scores":
        return reference_scores.table(results / filename)
    path = results / filename
    if not path.exists():
        return f"Not measured yet: `{command}` writes `benchmarks/results/{filename}`."
    stored = record.read(path)
    if stored["quick"]:
        raise ValueError(f"{path} holds a --quick run; the README quotes full runs: rerun `{command}`")
    if "." not in name:
        return stored["markdown"]
    part = name.split(".", 1)[1]
    sections = stored.get("sections", {})
    if part not in sections:
        raise ValueError(f"{path} has no section {part!r} (it has {sorted(sections)}); rerun `{command}`")
    return sections[part]


def blocks(text: str) -> dict[str, str]:
    """README block name -> its current contents."""
    return {match["name"]: match["body"] for match in PATTERN.finditer(text)}


def regenerate(text: str, results: Path = record.RESULTS) -> str:
    """``text`` with every block replaced by what the results files say now."""
    return PATTERN.sub(
        lambda match: f"<!-- results:{match['name']} -->\n{generate(match['name'], results)}\n<!-- /results -->",
        text,
    )


def stale(text: str, results: Path = record.RESULTS) -> list[str]:
    """The names of the blocks of ``text`` that differ from what the results files generate."""
    return [name for name, body in blocks(text).items() if body != generate(name, results)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report the blocks that are out of date")
    parser.add_argument("--readme", default=str(README), help="the README to update (default: README.md)")
    parser.add_argument("--results", default=str(record.RESULTS), help="the results directory")
    args = parser.parse_args(argv)
    readme, results = Path(args.readme), Path(args.results)
    text = readme.read_text()
    if args.check:
        names = stale(text, results)
        if names:
            sys.exit(f"{readme}: out of date: {', '.join(names)}; run `python -m benchmarks.readme`")
        return
    readme.write_text(regenerate(text, results))


if __name__ == "__main__":
    main()
