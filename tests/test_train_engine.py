"""Training engine: config schema, checkpoints, schedule, losses, EMA, loop, resume, DDP."""

from __future__ import annotations

import csv
import json
import os
import pickle

import numpy as np
import pytest
import torch
import yaml

from xecreco.errors import UserError
from xecreco.train.api import train
from xecreco.train.checkpoint import load_checkpoint, save_checkpoint
from xecreco.train.config import TrainConfig, apply_overrides, load_config
from xecreco.train.ema import ModelEma
from xecreco.train.losses import RegressionLoss, angular_distance, uvw_to_xyz_torch
from xecreco.train.metrics import physics_metrics, sigma68
from xecreco.train.schedule import lr_factor

from train_helpers import tiny_config, tiny_task

torch.set_num_threads(1)


# ----------------------------------------------------------------------------------- config


def test_unknown_key_suggests_closest(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lerning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"unknown config key 'optim.lerning_rate'"):
        load_config(path)
    path.write_text("optim:\n  weight_decy: 0.1\n")
    with pytest.raises(UserError, match=r"did you mean 'optim.weight_decay'"):
        load_config(path)
    with pytest.raises(UserError, match=r"did you mean 'augment'"):
        load_config({"augmnt": {}})


def test_bad_values_and_types_are_user_errors():
    with pytest.raises(UserError, match=r"'optim.lr': expected float"):
        load_config({"optim": {"lr": "fast"}})
    with pytest.raises(UserError, match=r"'optim.lr': must be > 0"):
        load_config({"optim": {"lr": -1}})
    with pytest.raises(UserError, match=r"'run.precision'"):
        load_config({"run": {"precision": "fp8"}})
    with pytest.raises(UserError, match=r"did you mean 'energy'"):
        load_config({"task": {"targets": ["enrgy"]}})
    with pytest.raises(UserError, match=r"loss.types.energy"):
        load_config({"loss": {"types": {"energy": "l7"}}})
    with pytest.raises(UserError, match=r"loss.target_beta.pileup.*not in task.targets"):
        load_config({"loss": {"target_beta": {"pileup": 0.1}}})
    with pytest.raises(UserError, match=r"loss.target_beta.energy.*> 0"):
        load_config({"loss": {"target_beta": {"energy": 0.0}}})


def test_overrides_and_file_untouched(tmp_path):
    path = tmp_path / "c.yaml"
    text = "optim:\n  lr: 0.001\ndata:\n  train_files: [a.root]\n"
    path.write_text(text)
    cfg = load_config(path, ["optim.lr=3e-4", "run.max_steps=7", "loss.weights.energy=2"])
    assert cfg.optim.lr == pytest.approx(3e-4)
    assert cfg.run.max_steps == 7
    assert cfg.loss.weights == {"energy": 2}
    assert cfg.data.train_files == [str(tmp_path / "a.root")]  # relative to the config's folder
    assert path.read_text() == text
    with pytest.raises(UserError, match="key.sub=value"):
        apply_overrides({}, ["optim.lr"])
    with pytest.raises(UserError, match="unknown config key 'optim.lrr'"):
        load_config(path, ["optim.lrr=1"])


def test_shipped_cpu_config_is_valid():
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "train-cpu.yaml")
    assert cfg.task.name == "regressor" and cfg.model.preset == "cpu"
    assert cfg.loss.reference_scale == "residual"  # the bundled recipe's scaling
    recipe = load_config(Path(__file__).resolve().parents[1] / "configs"
                         / "bundled-regressor-deadflag.yaml")
    assert recipe.augment.dead_fill == "inpainter" and recipe.model.overrides["dead_flag"]
    assert TrainConfig().to_dict()["optim"]["lr"] > 0


# ------------------------------------------------------------------------------ checkpoints


class Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/xecreco_pwned",))


def test_checkpoint_roundtrip_and_rejections(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"task": "regressor", "model_config": {"a": 1},
                                               "state_dict": {"w": torch.ones(3)}})
    payload = load_checkpoint(path)
    assert payload["format"] == "xecreco-checkpoint" and payload["format_version"] == 1
    assert torch.equal(payload["state_dict"]["w"], torch.ones(3))
    assert not list(tmp_path.glob("*.tmp"))

    truncated = tmp_path / "t.pt"
    truncated.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match="corrupt or truncated") as info:
        load_checkpoint(truncated)
    assert "\n" not in str(info.value)

    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a checkpoint \\(a text file\\)"):
        load_checkpoint(garbage)

    evil = tmp_path / "evil.pt"
    torch.save({"format": "xecreco-checkpoint", "x": Evil()}, evil)
    if os.path.exists("/tmp/xecreco_pwned"):
        os.remove("/tmp/xecreco_pwned")
    with pytest.raises(UserError, match="untrusted") as info:
        load_checkpoint(evil)
    assert "\n" not in str(info.value)
    assert not os.path.exists("/tmp/xecreco_pwned")

    raw_pickle = tmp_path / "p.pt"
    raw_pickle.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UserError):
        load_checkpoint(raw_pickle)
    assert not os.path.exists("/tmp/xecreco_pwned")

    foreign = tmp_path / "f.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(UserError, match="not an xecreco checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


# ---------------------------------------------------------------------------- small pieces


def test_schedule_warmup_and_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(99, 100, 10, "cosine", 0.01) == pytest.approx(0.01)
    assert lr_factor(54, 100, 10, "cosine", 0.0) == pytest.approx(0.5, abs=0.02)
    assert lr_factor(99, 100, 10, "linear", 0.0) == pytest.approx(0.0)
    assert lr_factor(50, 100, 0, "constant") == 1.0


def test_losses_values():
    true = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pred = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    assert torch.allclose(angular_distance(pred, true), torch.tensor([np.pi / 2, np.pi]), atol=1e-5)
    assert float(angular_distance(true, true).max()) < 1e-5
    loss = RegressionLoss(["energy", "direction"], types={"energy": "mse"}, weights={"energy": 2.0})
    outputs = {"energy": torch.tensor([1.0, 3.0]), "direction": true}
    total, parts = loss(outputs, {"energy": torch.tensor([0.0, 0.0]), "direction": true})
    assert parts["energy"] == pytest.approx(5.0)
    assert parts["direction"] == pytest.approx(0.0, abs=1e-5)
    assert float(total) == pytest.approx(10.0, abs=1e-4)
    nll = RegressionLoss(["energy"], types={"energy": "gaussian_nll"})
    out = {"energy": torch.tensor([1.0]), "energy_logvar": torch.tensor([np.log(4.0)])}
    _, parts = nll(out, {"energy": torch.tensor([0.0])})
    assert parts["energy"] == pytest.approx(0.5 * (np.log(4.0) + 0.25), rel=1e-5)
    learned = RegressionLoss(["energy", "u"], weighting="learned")
    assert learned.log_vars.shape == (2,)


def test_target_beta_overrides_the_smooth_l1_beta_of_one_target():
    # error 0.5: quadratic (0.5 * 0.25 / beta) under beta = 1, linear (0.5 - beta / 2) under 0.1
    loss = RegressionLoss(["energy", "u"], beta=1.0, target_beta={"energy": 0.1})
    outputs = {"energy": torch.tensor([0.5]), "u": torch.tensor([0.5])}
    _, parts = loss(outputs, {"energy": torch.tensor([0.0]), "u": torch.tensor([0.0])})
    assert parts["energy"] == pytest.approx(0.45, rel=1e-5)
    assert parts["u"] == pytest.approx(0.125, rel=1e-5)


def test_uvw_to_xyz_torch_matches_geometry():
    geometry = pytest.importorskip("xecreco.geometry")
    uvw = np.array([[1.0, 10.0, 3.0], [-20.0, -50.0, 30.0]])
    xyz = uvw_to_xyz_torch(torch.tensor(uvw), geometry.R_INNER).numpy()
    assert np.allclose(xyz, geometry.uvw_to_xyz(uvw), atol=1e-9)


def test_ema_tracks_average():
    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.zero_()
    ema = ModelEma(model, decay=0.5, warmup=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    ema.update(model)
    assert torch.allclose(ema.state_dict()["weight"], torch.full((1, 2), 0.75))


def test_metrics_sigma68():
    rng = np.random.default_rng(0)
    assert sigma68(rng.normal(0, 2.0, 200_000)) == pytest.approx(2.0, rel=0.02)
    m = physics_metrics({"energy": np.array([1.1, 0.9, 1.0]), "direction": np.array([[1.0, 0, 0]] * 3)},
                        {"energy": np.ones(3), "direction": np.array([[1.0, 0, 0]] * 3)},
                        {"energy_sigma68_rel": 2.0})
    assert m["energy_sigma68_rel"] == pytest.approx(0.1 * 0.6827, rel=0.01)
    assert m["angle_68"] == pytest.approx(0.0, abs=1e-6)
    assert m["weighted"] == pytest.approx(2 * m["energy_sigma68_rel"])


# ---------------------------------------------------------------------------------- the loop


def _final_weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["state_dict"]


def test_training_learns_and_writes_run_dir(tmp_path):
    result = train(tiny_config(epochs=3), run_dir=tmp_path / "run", task=tiny_task())
    run = tmp_path / "run"
    assert result["finished"] and result["step"] == result["total_steps"] == 3 * (256 // 16)
    assert (run / "config.yaml").exists() and (run / "best.pt").exists() and (run / "result.json").exists()
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == pytest.approx(1e-2)
    rows = list(csv.DictReader(open(run / "train.csv")))
    assert len(rows) == result["total_steps"] // 2
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.8 * first
    val = list(csv.DictReader(open(run / "val.csv")))
    assert len(val) == 3
    assert float(val[-1]["energy_sigma68_rel"]) == pytest.approx(result["last_metrics"]["energy_sigma68_rel"])
    best = load_checkpoint(run / "best.pt")
    assert best["task"] == "regressor" and best["model_config"] == {"preset": "tiny", "hidden": 16}
    assert best["normalization"] == {"scheme": "synthetic"} and "target_scaling" in best
    assert best["metrics"]["energy_sigma68_rel"] == pytest.approx(result["best_value"])
    with pytest.raises(UserError, match="already holds a run"):
        train(tiny_config(), run_dir=run, task=tiny_task())


def test_resume_matches_uninterrupted(tmp_path):
    cfg = tiny_config(epochs=2)
    cfg["optim"]["accumulation"] = 2
    full = train(cfg, run_dir=tmp_path / "full", task=tiny_task())
    k = 5  # mid-epoch (8 steps per epoch)
    part = train(cfg, overrides=[f"run.stop_at_step={k}"], run_dir=tmp_path / "part", task=tiny_task())
    assert part["step"] == k and not part["finished"]
    with pytest.raises(UserError, match="data.batch_size"):
        train(cfg, overrides=["data.batch_size=8"], run_dir=tmp_path / "part", resume=True,
              task=tiny_task())
    assert yaml.safe_load((tmp_path / "part" / "config.yaml").read_text())["data"]["batch_size"] == 16
    resumed = train(cfg, run_dir=tmp_path / "part", resume=True, task=tiny_task())
    assert resumed["finished"] and resumed["step"] == full["step"]
    a, b = _final_weights(tmp_path / "full"), _final_weights(tmp_path / "part")
    for name in a:
        assert torch.allclose(a[name], b[name], atol=1e-6, rtol=0), name
    ema_a = load_checkpoint(tmp_path / "full" / "last.pt")["ema_state_dict"]
    ema_b = load_checkpoint(tmp_path / "part" / "last.pt")["ema_state_dict"]
    assert all(torch.allclose(ema_a[n], ema_b[n], atol=1e-6, rtol=0) for n in ema_a)
    rows = list(csv.DictReader(open(tmp_path / "part" / "train.csv")))
    assert [int(r["step"]) for r in rows] == [int(r["step"]) for r in csv.DictReader(open(tmp_path / "full" / "train.csv"))]


def test_interrupt_callback_saves_last_and_resumes(tmp_path):
    def kill_at_3(step, trainer):
        if step == 3:
            raise KeyboardInterrupt

    cfg = tiny_config(epochs=1)
    cfg["checkpoint"]["every_steps"] = 2
    with pytest.raises(KeyboardInterrupt):
        train(cfg, run_dir=tmp_path / "r", task=tiny_task(), callbacks=[kill_at_3])
    assert load_checkpoint(tmp_path / "r" / "last.pt")["train_state"]["step"] == 2
    resumed = train(cfg, run_dir=tmp_path / "r", resume=True, task=tiny_task())
    full = train(cfg, run_dir=tmp_path / "f", task=tiny_task())
    assert resumed["step"] == full["step"] == 16
    a, b = _final_weights(tmp_path / "f"), _final_weights(tmp_path / "r")
    assert all(torch.allclose(a[n], b[n], atol=1e-6, rtol=0) for n in a)


def test_bf16_and_learned_weighting_run(tmp_path):
    cfg = tiny_config(epochs=1, precision="bf16")
    cfg["loss"] = {"weighting": "learned", "direction": "cosine"}
    result = train(cfg, run_dir=tmp_path / "r", task=tiny_task())
    assert result["finished"]
    state = load_checkpoint(tmp_path / "r" / "last.pt")["train_state"]
    log_vars = state["loss"]["loss.log_vars"]
    assert log_vars.shape == (6,) and float(log_vars.abs().sum()) > 0


def test_result_json_is_written_atomically(tmp_path, monkeypatch):
    import pathlib

    from xecreco.train.loop import write_result

    path = write_result(tmp_path, {"steps": 3, "best_value": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"steps": 3, "best_value": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]

    def fail(self, target):
        raise OSError("disk full")

    monkeypatch.setattr(pathlib.Path, "replace", fail)
    with pytest.raises(OSError):
        write_result(tmp_path, {"steps": 4})
    # the old result stays whole and no temporary name is left next to it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]
    assert json.loads(path.read_text())["steps"] == 3
