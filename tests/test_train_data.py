"""Training data pipeline on ROOT files: targets, augmentations, sharded shuffled streams, and a
short end-to-end training of the real regressor whose best.pt predicts through checkpoint_reco."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.errors import UserError
from xecreco.train.config import AugmentConfig, DataConfig, load_config

from train_helpers import write_training_file

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("traindata") / "train.root"
    arrays = write_training_file(path, 200)
    return path, arrays


def _source(path, targets=("energy", "time", "u", "v", "w", "direction"), **data):
    from xecreco.train.data import RootSource

    cfg = DataConfig(train_files=[str(path)], val_fraction=0.2, step_events=32, shuffle_buffer=48,
                     batch_size=8, scaling_events=200, **data)
    return RootSource(cfg, AugmentConfig(), list(targets), {}, seed=3)


def test_targets_from_truth(train_file):
    from xecreco.geometry import angles_to_direction
    from xecreco.io.reader import iterate_batches
    from xecreco.normalization import NormalizationSpec
    from xecreco.train.targets import compute_targets

    path, arrays = train_file
    batch = next(iterate_batches([path], truth=["energyTruth", "timeTruth", "uvwTruth", "emiAng"], step_events=50))
    spec = NormalizationSpec()
    ref = spec.time_reference_ns(batch)
    t = compute_targets(batch, ["energy", "time", "w", "direction"], ref)
    assert np.allclose(t["energy"], arrays["energyTruth"][:50])
    assert np.allclose(t["time"], arrays["timeTruth"][:50] - ref, atol=1e-4)
    assert np.allclose(t["w"], arrays["uvwTruth"][:50, 2])
    ang = arrays["emiAng"][:50].astype(np.float64)
    assert np.allclose(t["direction"], angles_to_direction(ang[:, 0], ang[:, 1]), atol=1e-6)
    assert np.allclose(np.linalg.norm(t["direction"], axis=1), 1.0)
    with pytest.raises(UserError, match="nPileup"):
        compute_targets(batch, ["npileup"], ref)


def test_stream_covers_each_entry_once_and_is_reproducible(train_file):
    path, arrays = train_file
    source = _source(path, targets=("energy",))
    assert source.train_range == (0, 160) and source.val_range == (160, 200)
    lookup = {round(float(e), 7): i for i, e in enumerate(arrays["energyTruth"])}

    def entries(epoch, rank, world):
        seen = []
        for batch in source.train_batches(epoch, rank, world):
            assert batch["features"].shape == (8, 4760, 2) and batch["features"].dtype == torch.float32
            energy = source.to_physical("energy", batch["targets"]["energy"].numpy().astype(np.float64))
            seen += [lookup[round(float(e), 7)] for e in np.float32(energy)]
        return seen

    r0, r1 = entries(0, 0, 2), entries(0, 1, 2)
    assert len(r0) == len(r1) == source.steps_per_epoch(2) * 8 == 80
    assert set(r0) == set(range(0, 80)) and set(r1) == set(range(80, 160))
    assert r0 != sorted(r0)  # shuffled across chunks
    assert entries(0, 0, 2) == r0  # reproducible
    assert entries(1, 0, 2) != r0  # new order each epoch
    val = list(source.val_batches(0, 1))
    assert sum(len(b["features"]) for b in val) == 40
    assert np.allclose(np.concatenate([b["truth"]["energy"] for b in val]), arrays["energyTruth"][160:])


def test_worker_sharding_covers_entries(train_file):
    path, _ = train_file
    source = _source(path, targets=("energy",), workers=2)
    batches = list(source.train_batches(0, 0, 1))
    assert len(batches) == source.steps_per_epoch(1) == 2 * (80 // 8)
    energies = np.sort(np.concatenate([source.to_physical("energy", b["targets"]["energy"].numpy()) for b in batches]))
    assert len(np.unique(np.round(energies, 6))) == 160


def test_augmentations():
    from xecreco.io.batch import EventBatch
    from xecreco.train.augment import augment_batch

    rng = np.random.default_rng(0)
    n = 50
    batch = EventBatch(npho=np.full((n, 4760), 100.0, np.float32), time=np.full((n, 4760), 1e-7, np.float32),
                       valid_npho=np.ones((n, 4760), bool), valid_time=np.ones((n, 4760), bool),
                       run=np.zeros(n, np.int64), event=np.arange(n), entry=np.arange(n))
    cfg = AugmentConfig(dead_fraction=0.05, npho_noise=0.1, time_jitter_ns=1.0, energy_scale=0.05)
    out, factor = augment_batch(batch, cfg, rng)
    dead = ~out.valid_npho
    assert dead.mean() == pytest.approx(0.05, abs=0.005)
    assert np.array_equal(dead, ~out.valid_time)
    assert np.all(out.npho[dead] == 0) and np.all(out.time[dead] == 0)
    assert batch.valid_npho.all() and np.all(batch.npho == 100.0)  # input untouched
    ratio = out.npho[~dead].reshape(-1) / 100.0
    assert np.std(ratio) == pytest.approx(np.sqrt(0.1**2 + 0.05**2), rel=0.1)
    per_event = np.array([out.npho[i][~dead[i]].mean() / 100.0 for i in range(n)])
    assert np.allclose(per_event, factor, atol=0.01)  # npho and energy scale together
    jitter = (out.time[~dead] - 1e-7) * 1e9
    assert np.std(jitter) == pytest.approx(1.0, rel=0.05)
    same, none = augment_batch(batch, AugmentConfig(), rng)
    assert same is batch and none is None


def test_cli_train_and_config_errors(train_file, tmp_path, capsys):
    from xecreco.cli.main import main

    path, _ = train_file
    config = tmp_path / "cfg.yaml"
    config.write_text(f"data:\n  train_files: [{path}]\n  batch_size: 16\n  scaling_events: 64\n"
                      "optim:\n  warmup_steps: 1\nrun:\n  progress: false\n  threads: 1\n")
    code = main(["train", str(config), "--set", "run.max_steps=2", "--set", "ema.enabled=false",
                 "-o", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert "trained 2/2 steps" in capsys.readouterr().out
    assert (tmp_path / "run" / "last.pt").exists()
    code = main(["train", str(config), "--set", "optim.lrate=1", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean 'optim.lr'" in err and len(err.strip().splitlines()) == 1
    code = main(["train", str(config), "--resume", "-o", str(tmp_path / "nothing")])
    assert code == 2 and "last.pt" in capsys.readouterr().err
    cfg = load_config(config)
    assert cfg.data.train_files == [str(path)]


def test_resume_exact_with_root_workers_and_augmentation(train_file, tmp_path):
    import dataclasses

    from train_helpers import tiny_model
    from xecreco.train.api import train
    from xecreco.train.checkpoint import load_checkpoint
    from xecreco.train.tasks import get_task

    task = dataclasses.replace(get_task("regressor"), build_model=tiny_model, model_config=None)
    path, _ = train_file
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 8, "step_events": 32,
                 "shuffle_buffer": 48, "workers": 2},
        "model": {"preset": "tiny"},
        "augment": {"dead_fraction": 0.02, "npho_noise": 0.05, "time_jitter_ns": 0.5, "energy_scale": 0.02},
        "run": {"epochs": 1, "progress": False, "threads": 1},
    }
    full = train(cfg, run_dir=tmp_path / "full", task=task)
    part = train(cfg, overrides=["run.stop_at_step=7"], run_dir=tmp_path / "part", task=task)
    assert part["step"] == 7 and full["step"] == 2 * (80 // 8)
    train(cfg, run_dir=tmp_path / "part", resume=True, task=task)
    a = load_checkpoint(tmp_path / "full" / "last.pt")
    b = load_checkpoint(tmp_path / "part" / "last.pt")
    assert a["target_scaling"] == b["target_scaling"]
    for name in a["state_dict"]:
        assert torch.allclose(a["state_dict"][name], b["state_dict"][name], atol=1e-6, rtol=0), name
