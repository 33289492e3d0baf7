"""The benchmark suite's entry point runs every benchmark and writes its report (on reduced grids)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))


def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=300, n_layer=1, n_head=2, n_embd=16, n_positions=128))


@pytest.mark.slow  # every benchmark end to end: minutes; .ci/run runs the slow tests too
def test_the_suite_writes_results_and_pngs(tmp_path, monkeypatch):
    from benchmarks import __main__ as suite
    from benchmarks import (
        algorithms,
        distributed_throughput,
        env_throughput,
        hf_policy_throughput,
        learned_reward,
        main_job,
        pretraining_difficulty,
        sb3_crosscheck,
        serve_load,
        trl_crosscheck,
    )

    # The same code paths as --quick, on grids small enough for the test suite.
    monkeypatch.setattr(
        sb3_crosscheck, "grid", lambda quick: [("V8 A1", {"vocab_size": 8, "answer_len": 1}, 2048, 2048, 1)]
    )
    monkeypatch.setattr(sb3_crosscheck, "PRETRAINING", {"demonstrations": 256, "epochs": 1, "batch_size": 64})
    monkeypatch.setattr(pretraining_difficulty, "WORLDS", pretraining_difficulty.WORLDS[:1])
    difficulty, throughput = pretraining_difficulty.run, env_throughput.run
    monkeypatch.setattr(pretraining_difficulty, "run", lambda quick: difficulty(steps=40, every=20))
    monkeypatch.setattr(env_throughput, "run", lambda quick: throughput(quick=True, seconds=0.05))
    tiny = (
        main_job.QUICK_CONFIG.replace("20000", "1000")
        .replace("4000", "500")
        .replace("eval_episodes: 200", "eval_episodes: 20")
    )
    monkeypatch.setattr(main_job, "QUICK_CONFIG", tiny)
    small = {"pairs": "200", "epochs": "1", "config": tiny}
    monkeypatch.setattr(learned_reward, "QUICK", small)
    monkeypatch.setattr(
        hf_policy_throughput,
        "gpt2_small",
        lambda config, allowed: hf_policy_throughput.HFPolicy(tiny_gpt2(), config, allowed),
    )  # the 124M-parameter shape is left to the real benchmark
    measure = distributed_throughput.measure
    monkeypatch.setattr(
        distributed_throughput, "measure", lambda k, episodes, total, threads=None: measure(k, 16, 400, threads)
    )
    crosscheck = trl_crosscheck.run
    monkeypatch.setattr(trl_crosscheck, "run", lambda quick, out: crosscheck(quick, budget=2000, out=out))
    toy = algorithms.SETTINGS[0]
    monkeypatch.setattr(
        algorithms, "SETTINGS", (algorithms.Setting(toy.label, toy.env, 1024, toy.config | {"eval_episodes": 20}),)
    )
    monkeypatch.setattr(serve_load, "QUICK", {"sessions": 4, "episodes": 12, "max_requests": 100, "max_seconds": 10.0})
    report = suite.main(["--quick", "--out", str(tmp_path)]).read_text()
    assert "| 2 processes, 64 episodes each | 1 |" in report and "| GPT-2 small shape, 124M |" in report
    for title in (
        "Env throughput",
        "PPO throughput",
        "The main job",
        "Stable-Baselines3",
        "learned reward",
        "How hard is DialogQA-v0",
        "transformers policies",
        "several processes",
        "Our GRPO against TRL's",
        "critic-free trainers",
        "OpenEnv server under load",
    ):
        assert f"## {title}" in report or title in report
    assert "Machine:" in report
    assert "| V8 A1 | SB3 PPO |" in report and "| V8 A1 | ours, from scratch |" in report
    assert "| TRL GRPO |" in report and "| DialogQA-Toy-v0 V8 A1, from scratch | rloo |" in report
    for png in (
        "sb3_crosscheck.png",
        "main_job_learning_curve.png",
        "trl_crosscheck.png",
        "algorithms_learning_curve.png",
    ):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    for name in (
        "main_job",
        "ppo_throughput",
        "hf_policy_throughput",
        "sb3_crosscheck",
        "trl_crosscheck",
        "algorithms",
        "serve_load",
    ):
        stored = json.loads((tmp_path / f"{name}.json").read_text())
        assert stored["quick"] is True and stored["name"] == name and len(stored["git_commit"]) >= 40
        assert stored["markdown"] in report and (tmp_path / f"{name}.md").read_text().endswith(
            stored["markdown"] + "\n"
        )
    throughput = json.loads((tmp_path / "ppo_throughput.json").read_text())["data"]["training"]
    assert [row["env"] for row in throughput] == ["DialogQA-Toy-v0", "DialogQA-v0"]
    assert all(row["sb3_steps"] == 8 * 256 and row["ours_steps"] > 0 for row in throughput)  # steps actually run
    hf_env = json.loads((tmp_path / "hf_policy_throughput.json").read_text())["data"]["env"]
    assert [row["actions"] for row in hf_env] == ["oracle", "random"]
    load = json.loads((tmp_path / "serve_load.json").read_text())["data"]["rows"]
    assert [(row["transport"], row["episodes"], row["leaks"], row["errors"]) for row in load] == [
        ("websocket", 12, 0, 0),
        ("http", 12, 0, 0),
    ]


def test_the_crosscheck_resumes_finished_runs_from_its_cache(tmp_path, monkeypatch):
    from benchmarks import sb3_crosscheck

    monkeypatch.setattr(sb3_crosscheck, "RESULTS", tmp_path)
    monkeypatch.setattr(
        sb3_crosscheck, "grid", lambda quick: [("V8 A1", {"vocab_size": 8, "answer_len": 1}, 1024, 1024, 1)]
    )
    monkeypatch.setattr(sb3_crosscheck, "PRETRAINING", {"demonstrations": 128, "epochs": 1, "batch_size": 64})
    cache = tmp_path / "runs.jsonl"
    first = sb3_crosscheck.run(quick=True, cache=cache)
    assert len(cache.read_text().splitlines()) == 5  # SB3 three ways and ours both ways
    assert "| V8 A1 | SB3 PPO, tuned like ours |" in first

    def must_not_run(*args, **kwargs):
        raise AssertionError("a cached run was computed again")

    monkeypatch.setattr(sb3_crosscheck, "run_sb3", must_not_run)
    monkeypatch.setattr(sb3_crosscheck, "run_ours", must_not_run)
    assert sb3_crosscheck.run(quick=True, cache=cache) == first


def test_the_crosscheck_computes_only_the_agents_asked_for(tmp_path, monkeypatch):
    from benchmarks import sb3_crosscheck

    monkeypatch.setattr(
        sb3_crosscheck, "grid", lambda quick: [("V8 A1", {"vocab_size": 8, "answer_len": 1}, 1024, 1024, 1)]
    )
    monkeypatch.setattr(sb3_crosscheck, "run_ours", lambda *args, **kwargs: pytest.fail("ours was not asked for"))
    cache = tmp_path / "runs.jsonl"
    report = sb3_crosscheck.run(quick=True, cache=cache, agents=("sb3-tuned",), out=tmp_path)
    (entry,) = [json.loads(line) for line in cache.read_text().splitlines()]
    assert (
        entry["key"].startswith("sb3-tuned|V8 A1|0|1024|1024|")
        and entry["result"]["agent"] == "SB3 PPO, tuned like ours"
    )
    assert entry["result"]["env_steps"] == 16 * 256  # one whole rollout of the tuned settings
    assert "| V8 A1 | SB3 PPO, tuned like ours |" in report and "| V8 A1 | ours" not in report
    with pytest.raises(ValueError, match="unknown agent"):
        sb3_crosscheck.run(quick=True, cache=cache, agents=("sb3-tunde",))


def test_reference_scores_train_as_the_readme_says_and_write_a_results_file(tmp_path, monkeypatch):
    from benchmarks import reference_scores

    assert reference_scores.shown_command("Conversation-v0", quick=False) == (
        "dialog-gym train --env Conversation-v0 --total-steps 100000 --seed S "
        "--config <{pretraining: {demonstrations: 16000, epochs: 2}}>"
    )
    assert reference_scores.shown_command("DialogQA-v0", quick=False) == "dialog-gym train --env DialogQA-v0 --seed S"
    monkeypatch.setattr(
        reference_scores,
        "QUICK",
        {"total_steps": 256, "num_envs": 64, "eval_episodes": 16, "pretraining": {"demonstrations": 64, "epochs": 1}},
    )
    reference_scores.main(["DialogQA-Toy-v0", "--quick", "--seeds", "1", "--out", str(tmp_path)])
    scores = json.loads((tmp_path / "reference_scores" / "DialogQA-Toy-v0.json").read_text())
    assert scores["quick"] is True and scores["seeds"] == [0] and scores["total_steps"] == 256
    assert scores["mean"]["oracle"]["success_rate"] == 1.0 and scores["per_seed"][0]["scores"]["ppo"]["episodes"] == 16
    assert set(scores["mean"]) == {"random", "pretrained", "ppo", "ppo_greedy", "oracle"}
    with pytest.raises(SystemExit):
        reference_scores.main(["DialogQA-v9"])
