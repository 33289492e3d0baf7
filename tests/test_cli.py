"""The dialog-gym command line: every command's help, and a tiny run driven end to end."""

import io
import subprocess
import sys

import pytest

from agents.cli import main, parse_env_args

COMMANDS = {
    "train": ["--total-steps", "--env-arg", "--config", "--resume", "--no-pretrain", "--seed", "--out"],
    "evaluate": ["RUN_DIR", "--env", "--episodes", "--greedy", "--split", "--env-arg"],
    "chat": ["RUN_DIR", "--episode"],
    "plot": ["RUN_DIR", "--output"],
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


def test_every_config_field_is_a_flag_with_its_documented_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for flag in ("--ppo.clip-coef", "--ppo.target-kl", "--model.n-layer", "--pretraining.demo-noise", "--lora.rank"):
        assert flag in text
    assert "Clip range of the probability ratio. (default: 0.2)" in text


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


def test_flags_override_the_config_file_and_resume_keeps_the_saved_config(tiny_run):
    config = (tiny_run / "config.yaml").read_text()
    assert "num_envs: 32" in config and "total_steps: 400" in config  # from the file, and from the flag
    with pytest.raises(SystemExit, match=r"drop \['total_steps'\]"):
        main(["train", "--resume", str(tiny_run), "--total-steps", "800"])


@pytest.mark.parametrize(
    "text,message",
    [
        ("ppo: {anneal_lr: 'no'}\n", "ppo.anneal_lr must be true or false, got 'no'"),
        ("ppo: {clip_coef: '0.2'}\n", "ppo.clip_coef must be a number, got '0.2'"),
        ("total_steps: 1000.5\n", "total_steps must be an integer, got 1000.5"),
        ("ppo: [1, 2\n", "not a valid YAML config at line"),
        ("!!python/object/apply:os.system ['true']\n", "not a valid YAML config"),
        ("- 1\n- 2\n", "the config must be a mapping"),
    ],
)
def test_bad_config_files_get_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as caught:
        main(["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert message in str(caught.value) and str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "run").exists()


def test_an_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    with pytest.raises(SystemExit, match="is a file"):
        main(["train", "--out", str(target), "--env", "DialogQA-Toy-v0"])
    assert target.read_text() == "keep me"


def test_a_flag_of_the_wrong_type_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "--ppo.clip-coef", "abc"])
    assert caught.value.code == 2
