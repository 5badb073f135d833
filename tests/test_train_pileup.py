"""Pile-up training pieces: the binary ``pileup`` target, its BCE loss and metrics, and
``model.init_from`` (fine-tuning from a checkpoint's weights)."""

from __future__ import annotations

import dataclasses

import awkward as ak
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from xecreco.errors import UserError
from xecreco.sim.config import SimConfig
from xecreco.sim.gate import in_time_fraction
from xecreco.train.api import train
from xecreco.train.checkpoint import load_checkpoint, save_checkpoint
from xecreco.train.config import load_config
from xecreco.train.init_from import (build_source, init_normalization, init_target_scaling,
                                     load_matching_weights)
from xecreco.train.losses import RegressionLoss
from xecreco.train.metrics import physics_metrics, rank_auc
from xecreco.train.targets import PILEUP_LABEL_MEV, compute_targets, truth_branches

from train_helpers import TinyRegressor, tiny_config, tiny_task

torch.set_num_threads(1)
F0 = in_time_fraction(SimConfig())


class _Batch:
    def __init__(self, truth, n):
        self.truth, self._n = truth, n

    def __len__(self):
        return self._n


# ------------------------------------------------------------------------------ target


def test_pileup_label_from_in_gate_energy():
    energy = ak.Array([[0.004], [0.003, 0.003], [0.010], [0.010], [], [0.0049, 0.030]])
    fraction = ak.Array([[F0], [F0, F0], [F0 / 2], [0.0], [], [F0, 0.1 * F0]])
    batch = _Batch({"pileupEnergy": energy, "pileupGateFraction": fraction}, 6)
    label = compute_targets(batch, ["pileup"])["pileup"]
    # in-gate MeV: 4, 6, 5 (at the threshold), 0, none, 4.9 + 3 = 7.9
    np.testing.assert_array_equal(label, [0, 1, 1, 0, 0, 1])
    assert label.dtype == np.float64 and PILEUP_LABEL_MEV == 5.0
    assert truth_branches(["energy", "pileup"]) == ["energyTruth", "pileupEnergy",
                                                    "pileupGateFraction"]


def test_pileup_label_names_the_missing_branch():
    batch = _Batch({"pileupEnergy": ak.Array([[0.01]])}, 1)
    with pytest.raises(UserError, match="truth branch 'pileupGateFraction'"):
        compute_targets(batch, ["pileup"])


def test_pileup_target_in_config():
    cfg = load_config({"task": {"targets": ["energy", "pileup"]}})
    assert cfg.task.targets == ["energy", "pileup"]
    with pytest.raises(UserError, match="loss.types.pileup"):
        load_config({"task": {"targets": ["energy", "pileup"]},
                     "loss": {"types": {"pileup": "mse"}}})


# ------------------------------------------------------------------------------ loss, metrics


def test_pileup_loss_is_bce_on_logits():
    logit = torch.tensor([-2.0, 0.5, 3.0, 0.0])
    label = torch.tensor([0.0, 1.0, 0.0, 1.0])
    loss = RegressionLoss(["pileup"], types={"pileup": "smooth_l1"})
    total, parts = loss({"pileup": logit}, {"pileup": label})
    expected = F.binary_cross_entropy_with_logits(logit, label)
    assert float(total) == pytest.approx(float(expected), rel=1e-6)
    assert parts["pileup"] == pytest.approx(float(expected), rel=1e-6)


def test_pileup_metrics_auc_and_bce():
    from xecreco.validation.studies.pileup import roc_curve

    rng = np.random.default_rng(3)
    label = rng.random(400) < 0.3
    score = np.round(rng.normal(size=400) + 1.2 * label, 1)  # with ties
    fake, eff, auc = roc_curve(score, label)
    trapezoid = float(np.sum(np.diff(fake) * 0.5 * (eff[1:] + eff[:-1])))  # area of the curve
    assert rank_auc(score, label) == pytest.approx(trapezoid, abs=1e-12)
    assert auc == rank_auc(score, label)
    assert rank_auc(np.array([0.0, 1.0]), np.array([False, True])) == 1.0
    assert np.isnan(rank_auc(score, np.zeros(400, bool)))
    metrics = physics_metrics({"pileup": score}, {"pileup": label.astype(float)})
    bce = F.binary_cross_entropy_with_logits(torch.tensor(score), torch.tensor(label, dtype=float))
    assert metrics["pileup_bce"] == pytest.approx(float(bce), rel=1e-9)
    assert metrics["pileup_auc"] == pytest.approx(trapezoid)


# ------------------------------------------------------------------------------ init_from


class _TinyWithPileup(TinyRegressor):
    def __init__(self, hidden):
        super().__init__(hidden=hidden)
        self.heads["pileup"] = nn.Linear(hidden, 1)


def _tiny_pileup_model(model_config):
    hidden = int(model_config.get("hidden", 16))
    return _TinyWithPileup(hidden) if model_config.get("pileup") else TinyRegressor(hidden=hidden)


def _task():
    return dataclasses.replace(tiny_task(), build_model=_tiny_pileup_model)


def test_init_from_loads_matching_tensors_and_leaves_new_heads_fresh(tmp_path, capsys):
    first = train(tiny_config(epochs=1), run_dir=tmp_path / "a", task=_task())
    source_ckpt = load_checkpoint(first["best_checkpoint"])
    cfg = tiny_config(max_steps=1)
    cfg["model"]["overrides"]["pileup"] = True
    cfg["model"]["init_from"] = first["best_checkpoint"]
    cfg["optim"].update(lr=1e-9, warmup_steps=0)
    train(cfg, run_dir=tmp_path / "b", task=_task())
    line = capsys.readouterr().out
    n_own = len(_TinyWithPileup(16).state_dict())
    assert f"{n_own - 2} tensors loaded, 2 fresh (heads.pileup)" in line
    tuned = load_checkpoint(tmp_path / "b" / "last.pt")["state_dict"]
    for name, value in source_ckpt["state_dict"].items():
        torch.testing.assert_close(tuned[name], value, atol=1e-6, rtol=0)
    # a fresh run without init_from starts elsewhere
    cfg["model"]["init_from"] = None
    train(cfg, run_dir=tmp_path / "c", task=_task())
    fresh = load_checkpoint(tmp_path / "c" / "last.pt")["state_dict"]
    assert not torch.allclose(fresh["body.0.weight"], source_ckpt["state_dict"]["body.0.weight"])


def test_init_from_refuses_foreign_files_and_networks(tmp_path):
    first = train(tiny_config(epochs=1), run_dir=tmp_path / "a", task=_task())
    cfg = tiny_config(max_steps=1)
    cfg["model"]["overrides"]["hidden"] = 8  # no tensor has the same shape
    cfg["model"]["init_from"] = first["best_checkpoint"]
    with pytest.raises(UserError, match=r"model.init_from.*does not match the configured "
                                        r"network \(tensors of the same name and shape hold 3 %"):
        train(cfg, run_dir=tmp_path / "b", task=_task())
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    cfg["model"]["init_from"] = str(text)
    with pytest.raises(UserError, match=r"notes.pt is not a checkpoint \(a text file\)"):
        train(cfg, run_dir=tmp_path / "c", task=_task())
    cfg["model"]["init_from"] = str(tmp_path / "missing.pt")
    with pytest.raises(UserError, match=r"'model.init_from': checkpoint .*missing.pt does not"):
        train(cfg, run_dir=tmp_path / "d", task=_task())


def test_init_from_prefers_ema_weights(tmp_path):
    model = TinyRegressor(hidden=4)
    ema = {k: torch.full_like(v, 0.5) for k, v in model.state_dict().items()}
    ckpt = {"task": "regressor", "state_dict": model.state_dict(), "ema_state_dict": ema}
    target = TinyRegressor(hidden=4)
    report = load_matching_weights(target, ckpt, "x.pt")
    assert report["fresh"] == [] and report["skipped"] == []
    assert torch.all(target.body[0].weight == 0.5)


def test_init_from_relative_path_in_yaml(tmp_path):
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"init_from": "start.pt"}}))
    assert load_config(path).model.init_from == str(tmp_path / "sub" / "start.pt")


def test_init_from_scaling_and_normalisation():
    ckpt = {"normalization": {"npho_scale": 1000.0, "time_scale_ns": 5.0},
            "target_scaling": {"version": 1, "mean": {"energy": 0.04, "u": 1.0},
                               "scale": {"energy": 0.01, "u": 15.0}}}
    assert init_normalization(ckpt, {"time_scale_ns": 2.0}) == {"npho_scale": 1000.0,
                                                               "time_scale_ns": 2.0}
    kept = init_target_scaling(ckpt, ["energy", "pileup", "time"], ("energy", "time", "u"))
    assert kept == {"version": 1, "mean": {"energy": 0.04}, "scale": {"energy": 0.01}}
    assert init_target_scaling(ckpt, ["time"], ("time",)) is None

    calls = []

    class _Source:
        def __init__(self, scaling):
            self.target_scaling = scaling or {"version": 1, "mean": {"energy": 0.05, "time": 3.0},
                                              "scale": {"energy": 0.02, "time": 0.5}}

    def fake_build(cfg, target_scaling=None):
        calls.append(target_scaling)
        return _Source(target_scaling)

    task = dataclasses.replace(tiny_task(), build_source=fake_build)
    cfg = load_config({"task": {"targets": ["energy", "time", "pileup"]}})
    source = build_source(task, cfg, ckpt)
    # energy from the checkpoint, time fitted on the training sample
    assert source.target_scaling["mean"] == {"energy": 0.04, "time": 3.0}
    assert source.target_scaling["scale"] == {"energy": 0.01, "time": 0.5}
    assert calls[0] is None and len(calls) == 2
    calls.clear()
    cfg = load_config({"task": {"targets": ["energy", "pileup"]}})
    assert build_source(task, cfg, ckpt).target_scaling["mean"] == {"energy": 0.04}
    assert len(calls) == 1


def test_save_checkpoint_helper_roundtrip(tmp_path):
    # a checkpoint from another task whose tensors match still initialises the network
    model = TinyRegressor(hidden=16)
    save_checkpoint(tmp_path / "other.pt", {"task": "mae", "model_config": {},
                                            "state_dict": model.state_dict()})
    target = TinyRegressor(hidden=16)
    report = load_matching_weights(target, load_checkpoint(tmp_path / "other.pt"), "other.pt")
    assert len(report["loaded"]) == len(model.state_dict())
    torch.testing.assert_close(target.body[0].weight, model.body[0].weight)


# ------------------------------------------------------------------------------ pileup_energy


def test_pileup_energy_target_is_the_summed_in_gate_energy():
    energy = ak.Array([[0.004], [0.003, 0.003], [0.010], [0.010], [], [0.0049, 0.030]])
    fraction = ak.Array([[F0], [F0, F0], [F0 / 2], [0.0], [], [F0, 0.1 * F0]])
    batch = _Batch({"pileupEnergy": energy, "pileupGateFraction": fraction}, 6)
    target = compute_targets(batch, ["pileup_energy"])["pileup_energy"]
    np.testing.assert_allclose(target, [0.004, 0.006, 0.005, 0.0, 0.0, 0.0079], atol=1e-9)
    assert truth_branches(["pileup", "pileup_energy"]) == ["pileupEnergy", "pileupGateFraction"]


def _pileup_energy_model():
    from _nn_helpers import tiny_config as tiny_model_config
    from xecreco.models.regressor.network import build_model
    from xecreco.normalization import TargetScaling

    model = build_model(tiny_model_config(heads=["energy", "pileup", "pileup_energy"])).eval()
    scaling = TargetScaling(mean={"energy": 0.05, "pileup_energy": 0.004},
                            scale={"energy": 0.003, "pileup_energy": 0.006})
    features = torch.rand(5, 4760, 2, generator=torch.Generator().manual_seed(3))
    model.calibrate_references(features, torch.full((5,), 0.05), scaling)
    return model, features


def test_energy_reference_leaves_out_the_estimated_pileup_energy():
    model, features = _pileup_energy_model()
    assert model.subtracts_pileup
    bias = model.heads["pileup_energy"].net[-1].bias
    with torch.no_grad():
        bias.fill_(5.0)  # an estimate well above 0 for every event
        high = model(features)
        bias.fill_(4.0)  # one standard deviation (6 MeV) less pile-up
        low = model(features)
        bias.fill_(-50.0)  # negative estimates count as no pile-up
        negative = model(features)
        bias.fill_(-60.0)
        more_negative = model(features)
    # 6 MeV less pile-up light subtracted = 6 MeV more energy = 2 energy standard deviations
    np.testing.assert_allclose((low["energy"] - high["energy"]).numpy(), 2.0, rtol=1e-4)
    np.testing.assert_allclose(negative["energy"].numpy(), more_negative["energy"].numpy(),
                               rtol=1e-6)
    assert "pileup_energy_affine" in model.state_dict()


def test_energy_loss_does_not_train_the_pileup_energy_head():
    model, features = _pileup_energy_model()
    model.train()
    model(features)["energy"].sum().backward()
    head = model.heads["pileup_energy"]
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in head.parameters())
    assert float(model.heads["energy"].net[-1].weight.grad.abs().max()) > 0


def test_reconstructor_writes_pileup_energy_in_gev(tmp_path):
    from _nn_helpers import TINY, make_checkpoint, sim_batch
    from xecreco.models.regressor.reconstructor import (physical_outputs,
                                                        reconstructor_from_checkpoint)

    heads = ["energy", "u", "v", "w", "time", "pileup", "pileup_energy"]
    assert physical_outputs(heads)[-1] == "pileup_energy"
    path = tmp_path / "pe.pt"
    payload = make_checkpoint(path, {**TINY, "heads": heads})
    reco = reconstructor_from_checkpoint(path)
    assert "pileup_energy" in reco.outputs
    batch = sim_batch(6, seed=5)
    out = reco.reconstruct(batch)
    from xecreco.models.regressor.network import build_model
    from xecreco.normalization import NormalizationSpec

    model = build_model(payload["model_config"]).eval()
    model.load_state_dict(payload["state_dict"])
    spec = NormalizationSpec.from_dict(payload["normalization"])
    features = torch.from_numpy(spec.features(batch))
    with torch.inference_mode():
        raw = model(features)["pileup_energy"].double().numpy()
    # the test scaling has no pileup_energy entry: mean 0, scale 1 GeV; negative -> 0
    np.testing.assert_allclose(out["pileup_energy"], np.maximum(raw, 0.0), rtol=1e-5, atol=1e-7)
