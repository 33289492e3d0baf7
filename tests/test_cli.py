"""The dialog-gym command line: every command's help, and a tiny run driven end to end."""

import io
import subprocess
import sys

import pytest

from agents.cli import main, parse_env_args

COMMANDS = {
    "train": ["--total-steps", "--env-arg", "--config", "--resume", "--no-pretrain", "--seed", "--out"],
    "evaluate": ["run_dir", "--env", "--episodes", "--greedy", "--split"],
    "chat": ["run_dir", "--episode"],
    "plot": ["run_dir", "--output"],
    "envs": [],
    "reward-model": ["--env", "--out", "--pairs", "--preferences", "--epochs"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_explains_its_options(command, capsys):
    with pytest.raises(SystemExit) as caught:
        main([command, "--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for option in COMMANDS[command]:
        assert option in text


def test_the_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "agents.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and all(c in result.stdout for c in COMMANDS)


def test_envs_lists_every_id(capsys):
    main(["envs"])
    out = capsys.readouterr().out
    assert "DialogQA-v0" in out and "DialogQA-Toy-v0" in out and "<agent>" in out


def test_evaluate_builtin_agents(capsys):
    main(["evaluate", "--env", "DialogQA-Toy-v0", "--episodes", "20"])
    out = capsys.readouterr().out
    assert "| oracle | 1.000 | 1.000 | 1.000 |" in out and "| random |" in out


def test_env_args_are_read_as_yaml_scalars():
    assert parse_env_args(["n_people=2", "reward=f1", "shaping=0.5", "flag=true"]) == {
        "n_people": 2,
        "reward": "f1",
        "shaping": 0.5,
        "flag": True,
    }
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_env_args(["n_people"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    config = run_dir / "tiny.yaml"
    config.write_text(
        "num_envs: 32\neval_episodes: 32\nmodel: {d_model: 32, n_head: 2, n_layer: 1}\n"
        "pretraining: {demonstrations: 256, epochs: 1}\n"
    )
    main(
        [
            "train",
            "--env",
            "DialogQA-Toy-v0",
            "--env-arg",
            "vocab_size=8",
            "--env-arg",
            "answer_len=1",
            "--env-arg",
            "n_questions=0",
            "--total-steps",
            "400",
            "--config",
            str(config),
            "--out",
            str(run_dir / "out"),
            "--quiet",
        ]
    )
    return run_dir / "out"


def test_train_writes_a_run_and_prints_the_table(tiny_run, capsys):
    assert (tiny_run / "eval.json").exists() and (tiny_run / "config.yaml").exists()
    text = (tiny_run / "config.yaml").read_text()
    assert "vocab_size: 8" in text and "total_steps: 400" in text and "d_model: 32" in text


def test_evaluate_a_run(tiny_run, capsys):
    main(["evaluate", str(tiny_run), "--episodes", "16", "--agents", "oracle"])
    out = capsys.readouterr().out
    assert "DialogQA-Toy-v0" in out and "| ppo |" in out and "| oracle |" in out


def test_plot_a_run(tiny_run, capsys):
    main(["plot", str(tiny_run)])
    png = tiny_run / "learning_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_chat_with_a_run(tiny_run, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("w0 w1\nw2 w2\n\n"))
    main(["chat", str(tiny_run), "--episode", "3"])
    out = capsys.readouterr().out
    assert out.count("agent:") == 2


def test_resuming_a_finished_run_just_reports(tiny_run, capsys):
    main(["train", "--resume", str(tiny_run), "--quiet"])
    assert "| ppo |" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["evaluate", "/nonexistent/run"], "config.yaml does not exist"),
        (["train", "--config", "/nonexistent.yaml"], "config file /nonexistent.yaml does not exist"),
        (["train", "--resume", "/nonexistent/run"], "--resume needs the directory of an earlier run"),
        (["train", "--env-arg", "oops", "--out", "/tmp/never"], "KEY=VALUE"),
        (["evaluate", "--env", "DialogQA-v0", "--env-arg", "n_people=0"], "n_people must be an integer"),
    ],
)
def test_bad_command_lines_get_one_line_errors(argv, message):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_evaluating_a_run_on_an_env_it_cannot_read_is_explained(tiny_run):
    with pytest.raises(SystemExit, match="evaluate on settings whose dialogues fit"):
        main(["evaluate", str(tiny_run), "--env-arg", "question_len=4", "--episodes", "4"])
