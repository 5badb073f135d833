"""Physics-informed loss terms: timing consistency (causality of the sensor times) and energy
conservation (predicted energy vs the collected light): values and gradients on events built
from the physics they encode, and their place in the regression loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.errors import UserError
from xecreco.geometry import design_geometry
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS, SPEED_OF_LIGHT_CM_PER_NS
from xecreco.normalization import NormalizationSpec
from xecreco.train.config import load_config
from xecreco.train.losses import (
    PhysicsTerms,
    RegressionLoss,
    collected_light,
    energy_violation,
    fit_light_gain,
    timing_violation,
    uvw_to_xyz_torch,
)

R_INNER = 64.97


def _event(n=3, seed=0):
    """Emission times (ns), first-interaction points (u, v, w cm -> xyz), vertices and the sensor
    times of light that left the point at t_emit + flight and travelled at v_eff, plus a
    non-negative constant-fraction delay."""
    rng = np.random.default_rng(seed)
    sensors = torch.tensor(np.array(design_geometry().position), dtype=torch.float64)
    uvw = torch.as_tensor(np.stack([rng.uniform(-20, 20, n), rng.uniform(-60, 60, n),
                                    rng.uniform(0.5, 10, n)], 1))
    xyz = uvw_to_xyz_torch(uvw, R_INNER)
    vertex = torch.as_tensor(rng.normal(0, 1.0, (n, 3)))
    t_emit = torch.as_tensor(rng.normal(0, 2.0, n))
    flight = (xyz - vertex).norm(dim=-1) / SPEED_OF_LIGHT_CM_PER_NS
    path = (sensors[None] - xyz[:, None]).norm(dim=-1)
    delay = torch.as_tensor(rng.uniform(0.0, 2.0, path.shape))
    times = t_emit[:, None] + flight[:, None] + path / LXE_LIGHT_SPEED_CM_PER_NS + delay
    return t_emit, uvw, xyz, vertex, times, sensors


def test_timing_violation_zero_for_causal_times_and_quadratic_beyond_tolerance():
    t_emit, _, xyz, vertex, times, sensors = _event()
    valid = torch.ones_like(times, dtype=torch.bool)
    args = (xyz, vertex, times, valid, sensors, LXE_LIGHT_SPEED_CM_PER_NS)
    assert float(timing_violation(t_emit, *args, tolerance_ns=0.0)) == 0.0
    # emitted 5 ns later than the light allows: every sensor fires 5 - delay_i ns too early
    late = (t_emit + 5.0).requires_grad_()
    value = timing_violation(late, *args, tolerance_ns=1.0)
    arrival_minus_time = 5.0 - (times - (t_emit[:, None] + (xyz - vertex).norm(dim=-1)[:, None]
                                         / SPEED_OF_LIGHT_CM_PER_NS
                                         + (sensors[None] - xyz[:, None]).norm(dim=-1)
                                         / LXE_LIGHT_SPEED_CM_PER_NS))
    excess = torch.relu(arrival_minus_time - 1.0)
    expected = (excess ** 2).mean(1).mean()
    torch.testing.assert_close(value, expected)
    value.backward()
    torch.testing.assert_close(late.grad, 2 * excess.mean(1) / len(late))
    assert (late.grad > 0).all()  # pushes the emission time earlier
    # invalid sensors do not count; an event without valid sensors contributes 0
    none = torch.zeros_like(valid)
    assert float(timing_violation(t_emit + 5.0, xyz, vertex, times, none, sensors,
                                  LXE_LIGHT_SPEED_CM_PER_NS, 1.0)) == 0.0


def test_timing_violation_gradient_in_position_matches_finite_differences():
    t_emit, _, xyz, vertex, times, sensors = _event(n=2)
    valid = torch.ones_like(times, dtype=torch.bool)
    sensors, times, valid = sensors[::40], times[:, ::40], valid[:, ::40]
    shifted = (xyz + torch.tensor([0.0, 0.0, 4.0])).requires_grad_()
    torch.autograd.gradcheck(
        lambda p: timing_violation(t_emit + 1.0, p, vertex, times, valid, sensors,
                                   LXE_LIGHT_SPEED_CM_PER_NS, 0.5), (shifted,))


def test_energy_violation_value_and_gradient():
    light = torch.tensor([1.0e5, 2.0e5, 0.0], dtype=torch.float64)
    gain = 5.0e-7  # GeV per photon: 0.05 and 0.1 GeV
    inside = torch.tensor([0.052, 0.095, 0.05], dtype=torch.float64)
    assert float(energy_violation(inside, light, gain, 0.1)) == 0.0
    energy = torch.tensor([0.065, 0.1, 1.0], dtype=torch.float64, requires_grad=True)
    value = energy_violation(energy, light, gain, 0.1)  # 30 % high, exact, no light (ignored)
    torch.testing.assert_close(value, torch.tensor(0.2 ** 2 / 2, dtype=torch.float64))
    value.backward()
    torch.testing.assert_close(energy.grad, torch.tensor([2 * 0.2 / 0.05 / 2, 0.0, 0.0],
                                                         dtype=torch.float64))


def _features(spec, npho, time_ns, valid_time):
    f = np.zeros(npho.shape + (2,), np.float32)
    f[..., 0] = spec.npho_forward(npho)
    f[..., 1] = np.where(valid_time, spec.time_forward(time_ns), spec.time_sentinel)
    return torch.from_numpy(f)


def test_physics_terms_from_features_and_standardised_outputs():
    spec = NormalizationSpec()
    t_emit, uvw, xyz, vertex, times, _ = _event(n=4, seed=1)
    rng = np.random.default_rng(2)
    npho = rng.exponential(20.0, times.shape)
    valid = rng.random(times.shape) > 0.2
    features = _features(spec, npho, times.numpy(), valid)
    affine = {"time": (0.5, 2.0), "u": (0.0, 10.0), "v": (1.0, 30.0), "w": (4.0, 3.0),
              "energy": (0.04, 0.01)}
    energy = torch.tensor([0.05, 0.03, 0.045, 0.06], dtype=torch.float64)
    truth = {"time": t_emit + 3.0, "u": uvw[:, 0], "v": uvw[:, 1], "w": uvw[:, 2],
             "energy": energy}
    outputs = {k: ((v - affine[k][0]) / affine[k][1]).float().requires_grad_()
               for k, v in truth.items()}
    light = npho.sum(1)
    terms = PhysicsTerms(spec, affine, timing=2.0, timing_tolerance_ns=0.5, energy=3.0,
                         energy_tolerance=0.05, light_gain=float(np.median(energy.numpy() / light)))
    parts = terms(outputs, features, vertex.float())
    direct = timing_violation(truth["time"], xyz, vertex, times,
                              torch.as_tensor(valid), terms.sensor_xyz.double(),
                              LXE_LIGHT_SPEED_CM_PER_NS, 0.5)
    torch.testing.assert_close(parts["timing"].double(), direct, rtol=2e-3, atol=1e-4)
    assert float(parts["timing"].detach()) > 0
    assert float(parts["energy_conservation"].detach()) > 0
    total = terms.weighted(parts)
    torch.testing.assert_close(total, 2.0 * parts["timing"] + 3.0 * parts["energy_conservation"])
    total.backward()
    for name in ("time", "u", "v", "w", "energy"):
        assert outputs[name].grad is not None and torch.isfinite(outputs[name].grad).all(), name
        assert float(outputs[name].grad.abs().sum()) > 0, name
    # light and gain helpers: the sentinel counts 0 photons, the gain is energy / light
    torch.testing.assert_close(collected_light(features, spec.npho_scheme, spec.npho_scale),
                               torch.as_tensor(light, dtype=torch.float32), rtol=1e-4, atol=0.1)
    one = np.array([[1000.0, 3000.0, 0.0]], np.float32)
    gain = fit_light_gain(_features(spec, one, np.zeros((1, 3)), np.ones((1, 3), bool)),
                          [0.02], spec.npho_scheme, spec.npho_scale)
    assert gain == pytest.approx(0.02 / 4000.0, rel=1e-5)
    with pytest.raises(UserError, match="loss.energy_conservation"):
        fit_light_gain(_features(spec, np.zeros((1, 3)), np.zeros((1, 3)), np.ones((1, 3), bool)),
                       [0.02], spec.npho_scheme, spec.npho_scale)


def test_regression_loss_adds_physics_terms_only_when_given():
    spec = NormalizationSpec()
    t_emit, uvw, _, vertex, times, _ = _event(n=2, seed=3)
    features = _features(spec, np.full(times.shape, 10.0), times.numpy(),
                         np.ones(times.shape, bool))
    affine = {k: (0.0, 1.0) for k in ("time", "u", "v", "w", "energy")}
    outputs = {"time": (t_emit + 4.0).float(), "u": uvw[:, 0].float(), "v": uvw[:, 1].float(),
               "w": uvw[:, 2].float(), "energy": torch.tensor([0.05, 0.05])}
    targets = {k: v.detach().clone() for k, v in outputs.items()}
    plain = RegressionLoss(list(outputs))
    base, base_parts = plain(outputs, targets, vertex.float())
    physics = PhysicsTerms(spec, affine, timing=0.5, light_gain=1e-6)
    with_terms = RegressionLoss(list(outputs), physics=physics)
    total, parts = with_terms(outputs, targets, vertex.float(), features=features)
    assert "timing" in parts and "energy_conservation" not in parts  # energy weight 0: off
    assert parts["timing"] > 0
    assert float(total) == pytest.approx(float(base) + 0.5 * parts["timing"], rel=1e-5)
    same, _ = with_terms(outputs, targets, vertex.float())  # no features: no physics terms
    assert float(same) == pytest.approx(float(base))


def test_physics_config_keys_default_off_and_are_checked():
    lo = load_config({}).loss
    assert lo.timing == 0.0 and lo.energy_conservation == 0.0 and lo.light_gain is None
    with pytest.raises(UserError, match="loss.timing"):
        load_config({"loss": {"timing": -1}})
    with pytest.raises(UserError, match="loss.light_gain"):
        load_config({"loss": {"light_gain": 0}})


def test_regressor_trains_with_physics_terms(tmp_path):
    """Both terms on through the training config: logged, finite, the fitted light gain kept in
    the loss state of last.pt (energy = light / 1.5e7 photons/GeV in these files)."""
    import csv

    from train_helpers import write_training_file

    from xecreco.train.api import train
    from xecreco.train.checkpoint import load_checkpoint

    path = tmp_path / "train.root"
    write_training_file(path, 120)
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 16,
                 "step_events": 64, "shuffle_buffer": 64, "scaling_events": 96},
        "loss": {"timing": 0.01, "timing_tolerance_ns": 1.0, "energy_conservation": 1.0,
                 "energy_tolerance": 0.05},
        "optim": {"warmup_steps": 1},
        "run": {"max_steps": 2, "progress": False, "threads": 1, "log_every": 1},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": 2},
    }
    result = train(cfg, run_dir=tmp_path / "run")
    assert result["finished"]
    with open(tmp_path / "run" / "train.csv") as handle:
        rows = list(csv.DictReader(handle))
    for key in ("loss_timing", "loss_energy_conservation"):
        assert all(np.isfinite(float(r[key])) for r in rows), key
    state = load_checkpoint(tmp_path / "run" / "last.pt")["train_state"]["loss"]
    gain = float(state["loss.physics.light_gain"])
    assert gain == pytest.approx(1 / 1.5e7, rel=0.02)
    with pytest.raises(UserError, match="loss.timing"):
        train({**cfg, "task": {"targets": ["energy", "time"]}}, run_dir=tmp_path / "run2")
