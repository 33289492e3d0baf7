"""End-to-end training: PPO learns, pretraining helps, resume is exact, bad checkpoints and NaNs are caught."""

import csv
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from agents.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from agents.config import TrainConfig
from agents.metrics import TIMING_COLUMNS
from agents.policy import PolicyConfig, TransformerPolicy
from agents.ppo import NonFiniteError
from agents.pretrain import PretrainConfig, answer_loss, pretrain
from agents.token_run import TokenRun
from agents.train import train

TOY = {"vocab_size": 8, "answer_len": 1, "n_questions": 0}


def small_config(**overrides) -> TrainConfig:
    data = {
        "env": "DialogQA-Toy-v0",
        "env_args": TOY,
        "total_steps": 3000,
        "num_envs": 64,
        "eval_episodes": 64,
        "checkpoint_every": 2,
        "model": {"d_model": 32, "n_head": 2, "n_layer": 1},
        "pretraining": {"demonstrations": 256, "epochs": 1, "demo_noise": 0.2},
    }
    data.update(overrides)
    return TrainConfig.from_dict(data)


def test_ppo_from_scratch_solves_the_toy_task(tmp_path):
    config = TrainConfig.from_dict(
        {
            "env": "DialogQA-Toy-v0",
            "env_args": TOY,
            "total_steps": 40_000,
            "num_envs": 256,
            "pretrain": False,
            "eval_episodes": 500,
            "ppo": {"ent_coef": 0.05, "kl_coef": 0.0, "learning_rate": 1e-3},
        }
    )
    results = train(config, tmp_path, progress=False)
    assert results["ppo"]["success_rate"] >= 0.9
    assert results["random"]["success_rate"] < 0.2
    with open(tmp_path / "metrics.csv", newline="") as handle:
        first = next(csv.DictReader(handle))
    assert float(first["success_rate"]) < 0.3  # it learned; it did not start there


def test_pretraining_lowers_the_answer_loss():
    env = gym.make("DialogQA-v0", n_events=2).unwrapped
    torch.manual_seed(0)
    policy = TransformerPolicy(
        PolicyConfig(vocab_size=env.tokenizer.vocab_size, context_len=env.kernel.max_len, d_model=32, n_head=2),
        torch.tensor(np.array(env.kernel.action_mask)),
    )
    held_out = env.demonstrations(300, seed=99)
    tensors = [torch.as_tensor(x) for x in (held_out.ids, held_out.lengths, held_out.answer_mask)]
    with torch.no_grad():
        before = float(answer_loss(policy, *tensors))
    pretrain(
        policy,
        env.demonstrations(3000, seed=0),
        PretrainConfig(demonstrations=3000, epochs=1),
        torch.Generator().manual_seed(0),
        torch.device("cpu"),
    )
    with torch.no_grad():
        after = float(answer_loss(policy, *tensors))
    assert after < 0.5 * before


def read_metrics(path: Path) -> list[dict[str, str]]:
    with open(path / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def final_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(path / "checkpoints") / "model.safetensors")


def test_a_resumed_run_continues_exactly(tmp_path):
    config = small_config()
    straight = train(config, tmp_path / "straight", progress=False)
    # Stop after 5 updates: the last checkpoint is update 4, so update 5 is redone on resume.
    assert train(config, tmp_path / "resumed", progress=False, stop_after=5) == {}
    assert latest_checkpoint(tmp_path / "resumed" / "checkpoints").name == "update-000004"
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_metrics(tmp_path / "straight") == read_metrics(tmp_path / "resumed")
    assert len(read_metrics(tmp_path / "straight")) >= 8
    assert straight["ppo"] == resumed["ppo"]


def test_the_same_seed_gives_the_same_training_curve(tmp_path):
    config = small_config(total_steps=1000)
    train(config, tmp_path / "a", progress=False)
    train(config, tmp_path / "b", progress=False)
    assert read_metrics(tmp_path / "a") == read_metrics(tmp_path / "b")
    other = small_config(total_steps=1000, seed=1)
    train(other, tmp_path / "c", progress=False)
    assert read_metrics(tmp_path / "a") != read_metrics(tmp_path / "c")


def test_run_directory_holds_what_the_recipe_promises(tmp_path):
    results = train(small_config(total_steps=1000), tmp_path, progress=False)
    assert {"config.yaml", "metrics.csv", "eval.json", "checkpoints", "tensorboard"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert any((tmp_path / "tensorboard").iterdir())
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved) >= {"random", "pretrained", "ppo", "demonstrations"}
    assert set(saved["ppo"]) >= {"mean_return", "answer_accuracy", "success_rate", "mean_answer_tokens"}
    assert saved == json.loads(json.dumps({k: v for k, v in results.items() if k != "pretraining"}))
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in (
        "return",
        "answer_accuracy",
        "kl",
        "beta",
        "entropy",
        "policy_loss",
        "value_loss",
        "clip_fraction",
        "explained_variance",
        "steps_per_second",
    ):
        assert column in header


def test_first_minibatch_ratio_is_one_and_nothing_is_clipped(tmp_path):
    run = TokenRun(small_config(), tmp_path, progress=False)
    run.run_pretraining()
    rollout = run.collect()
    from agents.ppo import ppo_update

    stats = ppo_update(run.policy, run.optimizer, rollout, run.config.ppo, torch.Generator().manual_seed(0), 0)
    assert stats.first_ratio_max_error < 1e-5
    assert stats.first_clip_fraction == 0.0
    assert stats.minibatches == run.config.ppo.update_epochs * run.config.ppo.num_minibatches


# -- bad checkpoints ------------------------------------------------------------------------------


@pytest.fixture()
def trained_run(tmp_path):
    config = small_config(total_steps=1000)
    train(config, tmp_path, progress=False)
    return config, tmp_path


def fresh_policy(config: TrainConfig, run_dir: Path):
    return TokenRun(config, run_dir / "scratch", progress=False).policy


def test_missing_checkpoint(trained_run):
    config, run_dir = trained_run
    with pytest.raises(CheckpointError, match="state.json: missing"):
        load_checkpoint(run_dir / "checkpoints" / "update-999999", fresh_policy(config, run_dir))


def test_truncated_weights_are_detected(trained_run):
    config, run_dir = trained_run
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="model.safetensors: checksum mismatch"):
        load_checkpoint(checkpoint, fresh_policy(config, run_dir))


def test_tampered_state_is_detected(trained_run):
    config, run_dir = trained_run
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    (checkpoint / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json: not valid JSON"):
        load_checkpoint(checkpoint, fresh_policy(config, run_dir))


def test_garbage_weights_with_a_matching_checksum_are_detected(trained_run):
    config, run_dir = trained_run
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 64)
    meta = json.loads((checkpoint / "state.json").read_text())
    import hashlib

    meta["files"]["model.safetensors"] = hashlib.sha256(b"\x00" * 64).hexdigest()
    (checkpoint / "state.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_checkpoint(checkpoint, fresh_policy(config, run_dir))


def test_shape_mismatch_names_the_tensor(trained_run):
    config, run_dir = trained_run
    bigger = small_config(total_steps=1000, model={"d_model": 48, "n_head": 2, "n_layer": 1})
    with pytest.raises(CheckpointError, match=r"has shape \(.*\) but the configured model needs"):
        load_checkpoint(latest_checkpoint(run_dir / "checkpoints"), fresh_policy(bigger, run_dir))


def test_a_failed_save_leaves_the_last_good_checkpoint_intact(trained_run, monkeypatch):
    config, run_dir = trained_run
    checkpoints = run_dir / "checkpoints"
    good = latest_checkpoint(checkpoints)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    policy = fresh_policy(config, run_dir)
    import agents.checkpoint as module

    def broken_save(tensors, path):
        Path(path).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(module, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(good, policy, None, {"update": 99})
    assert latest_checkpoint(checkpoints) == good
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert not [p for p in checkpoints.iterdir() if p.name.startswith(".")]
    load_checkpoint(good, policy)


# -- non-finite values and bad configs --------------------------------------------------------------


def test_a_nan_reward_stops_training_and_saves_nothing(tmp_path, monkeypatch):
    import agents.token_run as module

    real = module.collect_episodes

    def poisoned(*args, **kwargs):
        rollout = real(*args, **kwargs)
        rollout.env_rewards[0, 0] = float("nan")
        return rollout

    monkeypatch.setattr(module, "collect_episodes", poisoned)
    with pytest.raises(NonFiniteError, match="reward became non-finite at update 0"):
        train(small_config(), tmp_path, progress=False)
    assert not list((tmp_path / "checkpoints").glob("update-*"))


def test_a_nan_loss_stops_training_with_the_update_number(tmp_path, monkeypatch):
    import agents.ppo as module

    real = module.gae

    def poisoned(*args, **kwargs):
        advantages, returns = real(*args, **kwargs)
        return advantages * float("nan"), returns

    config = small_config()
    train(config, tmp_path, progress=False, stop_after=2)
    monkeypatch.setattr(module, "gae", poisoned)
    with pytest.raises(NonFiniteError, match="PPO loss became nan at update 2"):
        train(config, tmp_path, resume=True, progress=False)
    assert latest_checkpoint(tmp_path / "checkpoints").name == "update-000002"


@pytest.mark.parametrize(
    "data,message",
    [
        ({"total_step": 5}, r"unknown key\(s\) \['total_step'\] in the config"),
        ({"ppo": {"clip": 0.2}}, r"unknown key\(s\) \['clip'\] in ppo; expected some of"),
        ({"num_envs": 0}, "num_envs must be a positive integer"),
        ({"device": "tpu"}, "device must be"),
        ({"ppo": {"gae_lambda": 2.0}}, "ppo.gae_lambda"),
        ({"pretraining": {"demo_noise": -1}}, "pretraining.demo_noise|pretrain.demo_noise"),
        ({"model": {"d_model": 30, "n_head": 4}}, "divisible by model.n_head"),
        ({"lora": {"rank": 4}}, "lora.rank applies to hf: policies"),
        ({"model": {"vocab_size": 7}}, "model.vocab_size=7 does not match the env's"),
    ],
)
def test_bad_config_values_are_named(tmp_path, data, message):
    with pytest.raises(ValueError, match=message):
        config = TrainConfig.from_dict({"env": "DialogQA-Toy-v0", **data})
        TokenRun(config, tmp_path, progress=False)


def test_resume_of_a_directory_that_holds_no_run_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--resume needs the directory of an earlier run"):
        train(small_config(), tmp_path, resume=True, progress=False)


def test_the_same_ppo_solves_cartpole_with_an_mlp(tmp_path):
    """The sanity check every PPO implementation is held to: mean return >= 475 on CartPole-v1."""
    import yaml

    config = TrainConfig.from_dict(
        yaml.safe_load((Path(__file__).parents[1] / "examples" / "cartpole.yaml").read_text())
    )
    results = train(config, tmp_path, progress=False)
    assert results["ppo"]["mean_return"] >= 475


def test_training_stops_at_the_asked_number_of_env_steps(tmp_path):
    train(small_config(total_steps=700), tmp_path, progress=False)
    rows = read_metrics(tmp_path)
    assert int(rows[-1]["env_steps"]) >= 700 > int(rows[-2]["env_steps"])


def test_an_existing_run_directory_is_not_overwritten(trained_run):
    config, run_dir = trained_run
    with pytest.raises(ValueError, match="already holds a run; continue it with --resume"):
        train(config, run_dir, progress=False)


def test_resume_is_exact_with_dropout_too(tmp_path):
    config = small_config(model={"d_model": 32, "n_head": 2, "n_layer": 1, "dropout": 0.2})
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "resumed", progress=False, stop_after=3)
    train(config, tmp_path / "resumed", resume=True, progress=False)
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_dataset_without_test_lines_is_refused_before_training(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text(
        '{"context": "Paris is in France.", "question": "Where is Paris?", "answer": "France", "split": "train"}\n'
    )
    config = TrainConfig.from_dict({"env": "DialogQA-v0", "env_args": {"dataset": str(data)}})
    with pytest.raises(ValueError, match='\'test\' split holds no episode; .* "split": "test"'):
        train(config, tmp_path / "run", progress=False)


def test_demo_noise_as_an_env_argument_is_refused(tmp_path):
    config = TrainConfig.from_dict({"env": "DialogQA-Toy-v0", "env_args": {"demo_noise": 0.5}})
    with pytest.raises(ValueError, match="pretraining.demo_noise"):
        train(config, tmp_path, progress=False)


def edit_state(checkpoint: Path, change) -> None:
    meta = json.loads((checkpoint / "state.json").read_text())
    change(meta)
    (checkpoint / "state.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda meta: meta.pop("episodes"), "'episodes' must be a non-negative integer"),
        (lambda meta: meta.update(update="7"), "'update' must be a non-negative integer"),
        (lambda meta: meta.update(files={}), "lists no checksum for model.safetensors"),
    ],
)
def test_edited_state_files_are_refused(trained_run, change, message):
    config, run_dir = trained_run
    edit_state(latest_checkpoint(run_dir / "checkpoints"), change)
    with pytest.raises(CheckpointError, match=message):
        train(config, run_dir, resume=True, progress=False)


def test_non_finite_weights_are_refused(trained_run):
    import hashlib

    from safetensors.torch import save_file

    config, run_dir = trained_run
    checkpoint = latest_checkpoint(run_dir / "checkpoints")
    weights = load_file(checkpoint / "model.safetensors")
    weights["value_head.bias"] = torch.tensor([float("nan")])
    save_file(weights, checkpoint / "model.safetensors")
    digest = hashlib.sha256((checkpoint / "model.safetensors").read_bytes()).hexdigest()
    edit_state(checkpoint, lambda meta: meta["files"].update({"model.safetensors": digest}))
    with pytest.raises(CheckpointError, match="value_head.bias holds NaN"):
        load_checkpoint(checkpoint, fresh_policy(config, run_dir))


# -- a run stopped at any moment can be resumed ---------------------------------------------------


class Killed(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


def kill_at(monkeypatch, module, name: str, when=lambda *args, **kwargs: True) -> None:
    real = getattr(module, name)

    def killed(*args, **kwargs):
        if when(*args, **kwargs):
            raise Killed
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, killed)


def test_a_run_killed_before_its_first_update_resumes_from_the_pretrained_policy(tmp_path, monkeypatch):
    import agents.token_run as module

    config = small_config(total_steps=1000)
    straight = train(config, tmp_path / "straight", progress=False)
    with monkeypatch.context() as patch:
        kill_at(patch, module, "ppo_update")
        with pytest.raises(Killed):
            train(config, tmp_path / "killed", progress=False)
    assert (tmp_path / "killed" / "checkpoints" / "pretrained" / "state.json").exists()
    assert not list((tmp_path / "killed" / "checkpoints").glob("update-*"))
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed["ppo"] == straight["ppo"]
    assert read_metrics(tmp_path / "killed") == read_metrics(tmp_path / "straight")


def test_a_run_killed_during_pretraining_resumes_by_pretraining_again(tmp_path, monkeypatch):
    import agents.token_run as module

    config = small_config(total_steps=500)
    straight = train(config, tmp_path / "straight", progress=False)
    with monkeypatch.context() as patch:
        kill_at(patch, module, "pretrain")
        with pytest.raises(Killed):
            train(config, tmp_path / "killed", progress=False)
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed["ppo"] == straight["ppo"] and resumed["pretrained"] == straight["pretrained"]


def test_a_kill_while_latest_is_written_resumes_from_the_newest_complete_checkpoint(tmp_path, monkeypatch):
    import agents.token_run as module

    config = small_config(total_steps=1500)
    straight = train(config, tmp_path / "straight", progress=False)
    with monkeypatch.context() as patch:
        kill_at(patch, module, "mark_latest")  # update-000002/ is complete, latest never written
        with pytest.raises(Killed):
            train(config, tmp_path / "killed", progress=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    assert (checkpoints / "update-000002" / "state.json").exists() and not (checkpoints / "latest").exists()
    resumed = train(config, tmp_path / "killed", resume=True, progress=False)
    assert resumed["ppo"] == straight["ppo"]


def test_a_metrics_row_cut_short_by_a_kill_is_dropped_on_resume(tmp_path):
    config = small_config(total_steps=1500)
    train(config, tmp_path / "straight", progress=False)
    train(config, tmp_path / "killed", progress=False, stop_after=3)
    with open(tmp_path / "killed" / "metrics.csv", "a") as handle:
        handle.write("4,12")  # the start of the next row, as a kill during the write leaves it
    train(config, tmp_path / "killed", resume=True, progress=False)
    assert read_metrics(tmp_path / "killed") == read_metrics(tmp_path / "straight")


def test_a_latest_pointing_outside_the_run_is_refused(trained_run, tmp_path):
    config, run_dir = trained_run
    (run_dir / "checkpoints" / "latest").write_text(str(tmp_path / "elsewhere" / "update-000001"))
    with pytest.raises(CheckpointError, match="not a checkpoint directory inside"):
        train(config, run_dir, resume=True, progress=False)


def test_resuming_with_another_config_is_refused(trained_run):
    config, run_dir = trained_run
    with pytest.raises(ValueError, match=r"differs in \['total_steps'\]"):
        train(small_config(total_steps=5000), run_dir, resume=True, progress=False)


@pytest.mark.parametrize("section", ["pretraining", "ppo"])
def test_a_learning_rate_that_blows_up_saves_no_broken_weights(tmp_path, section):
    overrides = {"pretraining": {"demonstrations": 256, "epochs": 1, "learning_rate": 1e30}}
    if section == "ppo":
        overrides = {"ppo": {"learning_rate": 1e30}}
    with pytest.raises(NonFiniteError, match="nothing was saved"):
        train(small_config(**overrides), tmp_path, progress=False)
    checkpoints = tmp_path / "checkpoints"
    assert not list(checkpoints.glob("update-*"))
    if section == "pretraining":
        assert not (checkpoints / "pretrained").exists()


@pytest.mark.parametrize(
    "data,message",
    [
        ({"ppo": {"anneal_lr": "no"}}, "ppo.anneal_lr must be true or false, got 'no'"),
        ({"ppo": {"clip_coef": "0.2"}}, "ppo.clip_coef must be a number, got '0.2'"),
        ({"pretraining": {"epochs": 2.5}}, "pretraining.epochs must be an integer, got 2.5"),
        ({"seed": True}, "seed must be an integer, got True"),
        ({"env_args": ["n_people=2"]}, "env_args must be dict"),
        ({"ppo": {"target_kl": "none"}}, "ppo.target_kl must be a number or null"),
    ],
)
def test_config_values_of_the_wrong_type_are_named(data, message):
    with pytest.raises(TypeError, match=message):
        TrainConfig.from_dict({"env": "DialogQA-Toy-v0", **data})


def test_integers_are_accepted_for_float_settings():
    config = TrainConfig.from_dict({"ppo": {"learning_rate": 1, "target_kl": 1}})
    assert config.ppo.learning_rate == 1.0 and isinstance(config.ppo.learning_rate, float)
