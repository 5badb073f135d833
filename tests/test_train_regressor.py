"""The real CPU regressor trains through the full pipeline and its best.pt predicts through
xecreco.models.regressor.reconstructor (the `xecreco predict -r runs/X/best.pt` path)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_helpers import write_training_file

torch.set_num_threads(1)


def test_real_regressor_trains_and_predicts(tmp_path):
    from xecreco.io.reader import iterate_batches
    from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
    from xecreco.train.api import train

    path = tmp_path / "train.root"
    arrays = write_training_file(path, 200)
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 16, "step_events": 64,
                 "shuffle_buffer": 64, "scaling_events": 160},
        "augment": {"dead_fraction": 0.01},
        "optim": {"warmup_steps": 1},
        "run": {"max_steps": 3, "progress": False, "threads": 1, "log_every": 1},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": 3},
    }
    result = train(cfg, run_dir=tmp_path / "run")
    assert result["step"] == 3 and result["finished"]
    assert np.isfinite(result["best_value"]) and result["best_metrics"]["val_events"] == 40
    reco = reconstructor_from_checkpoint(tmp_path / "run" / "best.pt", name="nn")
    batch = next(iterate_batches([path], step_events=20))
    out = reco.reconstruct(batch)
    assert out["energy"].shape == (20,) and np.all(np.isfinite(out["energy"]))
    # three steps from a fresh network: energies stay within a few standard deviations of the
    # training mean, i.e. the stored target scaling is applied
    mean, std = arrays["energyTruth"][:160].mean(), arrays["energyTruth"][:160].std()
    assert np.all(np.abs(out["energy"] - mean) < 10 * std)


def test_regressor_model_config_follows_targets_and_losses():
    from xecreco.train.config import load_config
    from xecreco.train.tasks import get_task

    task = get_task("regressor")
    cfg = load_config({"task": {"targets": ["energy", "u"]}, "loss": {"types": {"energy": "gaussian_nll"}}})
    resolved = task.resolved_model_config(cfg)
    assert resolved["heads"] == ["energy", "u"] and resolved["uncertainty"] is True
    model = task.build_model(resolved)
    out = model(torch.zeros(2, 4760, 2))
    assert set(out) == {"energy", "u", "energy_logvar", "u_logvar"}
    plain = task.resolved_model_config(load_config({"model": {"overrides": {"heads": ["energy"]}},
                                                    "task": {"targets": ["energy"]}}))
    assert plain["heads"] == ["energy"] and plain["uncertainty"] is False


@pytest.mark.slow
def test_cpu_regressor_learns_on_simulated_photons(tmp_path):
    """A few epochs of the cpu preset on 15-60 MeV simulated photons beat the trivial predictor
    (the training mean) in position and energy resolution on the held-out events."""
    import uproot

    from xecreco.sim import SimConfig, simulate_file
    from xecreco.train.api import train
    from xecreco.train.metrics import sigma68

    data = tmp_path / "train.root"
    simulate_file(data, 1000, config=SimConfig(source="flat"), seed=5, progress=False)
    cfg = {
        "data": {"train_files": [str(data)], "val_fraction": 0.2, "batch_size": 32,
                 "scaling_events": 800},
        "optim": {"lr": 2e-3, "warmup_steps": 10},
        "ema": {"decay": 0.98},
        "run": {"epochs": 5, "progress": False, "log_every": 25},
        "checkpoint": {"best_metric": "weighted"},
    }
    best = train(cfg, run_dir=tmp_path / "run")["best_metrics"]
    with uproot.open(data) as handle:
        truth = handle["tree"].arrays(["uvwTruth", "energyTruth"], library="np")
    u, energy = np.stack(truth["uvwTruth"])[:, 0], truth["energyTruth"]
    trivial_u = sigma68(u[800:] - u[:800].mean())
    trivial_e = sigma68((energy[:800].mean() - energy[800:]) / energy[800:])
    assert best["val_events"] == 200
    assert best["u_sigma68"] < 0.7 * trivial_u
    assert best["energy_sigma68_rel"] < 0.9 * trivial_e


def test_training_without_a_vertex_branch_is_one_clear_error_before_training(sim_file_small,
                                                                             tmp_path):
    """The light summary's vertex input needs xyzVTX: said up front, with both ways out."""
    import uproot

    from xecreco.errors import UserError
    from xecreco.train.api import train

    with uproot.open(sim_file_small) as handle:
        arrays = handle["tree"].arrays(library="np")
    arrays = {k: v for k, v in arrays.items() if k != "xyzVTX" and v.dtype != object}
    novertex = tmp_path / "novertex.root"
    with uproot.recreate(novertex) as handle:
        handle.mktree("tree", {k: (v.dtype, v.shape[1:]) for k, v in arrays.items()})
        handle["tree"].extend(arrays)
    config = {"data": {"train_files": [str(novertex)], "batch_size": 16},
              "run": {"max_steps": 1, "progress": False}}
    with pytest.raises(UserError, match="no vertex branch 'xyzVTX'.*summary.vertex=false"):
        train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()
