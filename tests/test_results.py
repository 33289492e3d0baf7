"""Every figure the README and REFERENCE_SCORES quote comes from a committed results file.

A failure here means a quoted number and the file it should come from disagree (or the file is
missing): rerun the benchmark the message names, then ``python -m benchmarks.readme``.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

import dialog_gym  # noqa: E402
from benchmarks import (  # noqa: E402
    algorithms,
    hf_policy_throughput,
    llm_recipe,
    llm_zero_shot,
    main_job,
    ppo_throughput,
    readme,
    record,
    reference_scores,
    sb3_crosscheck,
    trl_crosscheck,
)

README_TEXT = readme.README.read_text()
SCORES = record.RESULTS / reference_scores.OUT_DIR
FORMATTERS = {
    "main_job": main_job.table,
    "ppo_throughput": ppo_throughput.table,
    "hf_policy_throughput": hf_policy_throughput.table,
    "llm_zero_shot": llm_zero_shot.table,
    "llm_recipe": llm_recipe.table,
}


def test_the_readme_marks_every_quoted_table():
    assert sorted(readme.blocks(README_TEXT)) == sorted(readme.BLOCKS)


@pytest.mark.parametrize("name", sorted(readme.BLOCKS))
def test_readme_blocks_are_what_the_results_files_give(name):
    filename, command = readme.BLOCKS[name]
    expected = readme.generate(name)
    assert readme.blocks(README_TEXT)[name] == expected, (
        f"README block {name!r} is not what benchmarks/results/{filename} gives: run `{command}` if the file is "
        "missing or stale, then `python -m benchmarks.readme`"
    )


@pytest.mark.parametrize("env_id", dialog_gym.ENV_IDS)
def test_reference_ppo_rows_are_what_the_results_files_give(env_id):
    if "ppo" not in dialog_gym.REFERENCE_SCORES[env_id]:
        pytest.skip(f"{env_id} quotes no ppo row")
    path = SCORES / f"{env_id}.json"
    assert path.exists(), (
        f"REFERENCE_SCORES[{env_id!r}]['ppo'] has no results file {path.relative_to(record.ROOT)}: run "
        f"`python -m benchmarks.reference_scores {env_id}` and copy the row it prints into dialog_gym/references.py"
    )
    scores = json.loads(path.read_text())
    assert not scores["quick"], f"{path} holds a --quick run; rerun `python -m benchmarks.reference_scores {env_id}`"
    expected = reference_scores.reference_row(scores)
    quoted = dialog_gym.REFERENCE_SCORES[env_id]["ppo"]
    assert {key: f"{value:.3f}" for key, value in quoted.items()} == {
        key: f"{value:.3f}" for key, value in expected.items()
    }, f"REFERENCE_SCORES[{env_id!r}]['ppo'] should be {expected} (from {path.relative_to(record.ROOT)})"


@pytest.mark.parametrize("name", sorted(FORMATTERS))
def test_a_results_files_table_is_what_its_raw_numbers_format_to(name):
    path = record.RESULTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not written yet (the README block test names the command)")
    stored = record.read(path)
    assert FORMATTERS[name](stored["data"]) == stored["markdown"]


def stored_runs(name: str, result_type: type) -> tuple[dict, list]:
    """A results file and its runs as ``result_type`` (curves as tuples, as the benchmark held them)."""
    path = record.RESULTS / f"{name}.json"
    if not path.exists():
        pytest.skip(f"{name}.json not written yet (the README block test names the command)")
    stored = record.read(path)
    runs = [result_type(**run) for run in stored["data"]["runs"]]
    for run in runs:
        run.curve = [tuple(point) for point in run.curve]
    return stored, runs


def test_the_crosscheck_tables_are_what_its_runs_format_to():
    stored, runs = stored_runs("sb3_crosscheck", sb3_crosscheck.Result)
    grid = [run for run in runs if "all 169" not in run.setting]
    full = [run for run in runs if "all 169" in run.setting]
    assert stored["sections"]["grid"] == sb3_crosscheck.table(grid)
    assert stored["sections"]["ratios"] == sb3_crosscheck.ratios(grid)
    if full:
        assert stored["sections"]["full"] == sb3_crosscheck.table(full)


def test_the_trl_crosscheck_tables_are_what_its_runs_format_to():
    stored, runs = stored_runs("trl_crosscheck", sb3_crosscheck.Result)
    assert stored["data"]["settings"] == trl_crosscheck.SETTINGS
    assert stored["sections"]["table"] == trl_crosscheck.table(runs)
    assert stored["sections"]["ratios"] == trl_crosscheck.ratios(runs)


def test_the_algorithms_table_is_what_its_runs_format_to():
    stored, runs = stored_runs("algorithms", algorithms.Result)
    assert stored["markdown"] == algorithms.table(runs)


def test_a_stale_or_quick_block_is_caught(tmp_path):
    data = {
        "train_command": "dialog-gym train",
        "wall_seconds": 300.0,
        "eval": {"ppo": {"mean_return": 1.5, "answer_accuracy": 0.9, "success_rate": 0.8, "mean_answer_tokens": 1.7}},
    }
    record.write("main_job", data, main_job.table(data), tmp_path, quick=False, wall_seconds=1.0)
    fresh = f"text\n<!-- results:main_job -->\n{main_job.table(data)}\n<!-- /results -->\nmore"
    assert readme.stale(fresh, tmp_path) == []
    pasted = fresh.replace("| PPO | 1.500 |", "| PPO | 1.600 |")
    assert readme.stale(pasted, tmp_path) == ["main_job"]
    assert readme.regenerate(pasted, tmp_path) == fresh
    missing = "<!-- results:ppo_throughput -->\n| pasted | 1 |\n<!-- /results -->"
    assert readme.stale(missing, tmp_path) == ["ppo_throughput"]
    record.write("main_job", data, main_job.table(data), tmp_path, quick=True, wall_seconds=1.0)
    with pytest.raises(ValueError, match="--quick"):
        readme.generate("main_job", tmp_path)


def test_the_reference_table_reads_a_results_file(tmp_path):
    def run(seed, ppo_return):
        agents = {"random": 0.0, "pretrained": 0.5, "ppo": ppo_return, "ppo_greedy": 0.95, "oracle": 1.0}
        return {
            "seed": seed,
            "scores": {
                name: {"mean_return": value, "answer_accuracy": value, "success_rate": value}
                for name, value in agents.items()
            },
        }

    per_seed = [run(0, 0.8), run(1, 0.9)]
    scores = {
        "seeds": [0, 1],
        "total_steps": 300_000,
        "mean": reference_scores.summarise(per_seed, lambda values: sum(values) / len(values)),
        "std": reference_scores.summarise(per_seed, reference_scores.standard_deviation),
    }
    (tmp_path / "DialogQA-Toy-v0.json").write_text(json.dumps(scores))
    table = reference_scores.table(tmp_path, ("DialogQA-Toy-v0", "Tutor-v0"))
    assert "| `DialogQA-Toy-v0` | 300k | 2 | 0.000 / 0.000 | 0.500 / 0.500 | 0.850 / 0.850 | 0.071 / 0.071 |" in table
    assert "| `Tutor-v0` | not measured: `python -m benchmarks.reference_scores Tutor-v0` |" in table
    assert reference_scores.reference_row(scores) == {
        "mean_return": 0.85,
        "answer_accuracy": 0.85,
        "success_rate": 0.85,
    }
