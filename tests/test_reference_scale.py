"""``loss.reference_scale: residual``: the referenced outputs (energy, u, v) are standardised by the
robust spread of target - light-summary reference, consistently in the loss, the checkpoint and
the model's reference buffers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import SCALING, tiny_config
from train_helpers import write_training_file

from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS
from xecreco.models.regressor.network import build_model
from xecreco.train.metrics import sigma68
from xecreco.normalization import NormalizationSpec

torch.set_num_threads(1)


def robust_spread(values: np.ndarray) -> float:
    """The residual spread as rescale_to_residuals takes it: sigma68 of the finite values."""
    return sigma68(values[np.isfinite(values)])


def test_robust_spread_is_the_gaussian_sigma_and_ignores_a_far_tail():
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 2.0, 40000)
    assert robust_spread(values) == pytest.approx(2.0, rel=0.03)
    tailed = np.concatenate([values, np.full(2000, 500.0), [np.nan, np.inf]])
    assert np.std(tailed[np.isfinite(tailed)]) > 50  # the plain spread follows the tail
    assert robust_spread(tailed) == pytest.approx(2.0, rel=0.1)


def test_reference_residuals_are_truth_minus_the_references():
    model = build_model(tiny_config())
    rng = np.random.default_rng(4)
    npho = rng.uniform(0, 3000, size=(5, N_SENSORS)).astype(np.float32)
    features = torch.zeros(5, N_SENSORS, 2)
    features[..., 0] = torch.from_numpy(NormalizationSpec().npho_forward(npho))
    energy = torch.from_numpy(rng.uniform(0.02, 0.06, 5))
    model.calibrate_references(features, energy, SCALING)
    truth = {"energy": energy.numpy(), "u": rng.normal(0, 5, 5), "v": rng.normal(0, 5, 5)}
    residuals = model.reference_residuals(features, truth)
    _, refs = model.summary(features)
    np.testing.assert_allclose(residuals["energy"],
                               truth["energy"] - model.light_gain.item() * refs["light"].numpy(),
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(residuals["u"], truth["u"] - refs["u"].numpy(), atol=1e-4)
    np.testing.assert_allclose(residuals["v"], truth["v"] - refs["v"].numpy(), atol=1e-4)


def _train(tmp_path, reference_scale):
    from xecreco.train.api import train

    tmp_path.mkdir()
    path = tmp_path / "train.root"
    write_training_file(path, 200)
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.2, "batch_size": 16,
                 "step_events": 64, "shuffle_buffer": 64, "scaling_events": 160},
        "model": {"overrides": {}},
        "loss": {"reference_scale": reference_scale},
        "optim": {"warmup_steps": 1},
        "run": {"max_steps": 2, "progress": False, "threads": 1, "log_every": 1},
        "checkpoint": {"eval_every_steps": 2},
    }
    train(cfg, run_dir=tmp_path / "run")
    from xecreco.train.checkpoint import load_checkpoint

    return load_checkpoint(tmp_path / "run" / "best.pt")


def test_residual_scales_reach_the_checkpoint_and_the_model_buffers(tmp_path):
    from xecreco.models.regressor.network import REFERENCED_OUTPUTS

    residual = _train(tmp_path / "res", "residual")
    plain = _train(tmp_path / "plain", "target")
    res_scale, plain_scale = residual["target_scaling"]["scale"], plain["target_scaling"]["scale"]
    # recomputed independently: the spread of truth - reference of the trained model's summary on
    # the first data.scaling_events (160) events of the file
    from xecreco.io.reader import iterate_batches
    from xecreco.normalization import NormalizationSpec

    batch = next(iterate_batches([tmp_path / "res" / "train.root"], step_events=160,
                                 truth=["energyTruth", "uvwTruth"], entry_stop=160))
    features = torch.from_numpy(
        NormalizationSpec.from_dict(residual["normalization"]).features(batch))
    model = build_model(residual["model_config"])
    model.load_state_dict(residual["state_dict"])
    truth = {"energy": batch.truth["energyTruth"], "u": batch.truth["uvwTruth"][:, 0],
             "v": batch.truth["uvwTruth"][:, 1]}
    for name, values in model.reference_residuals(features, truth).items():
        assert res_scale[name] == pytest.approx(robust_spread(values), rel=1e-3)
        assert res_scale[name] != plain_scale[name]
    # the energy is the light sum / 1.5e7 exactly: the residual of gain x light is far narrower
    assert res_scale["energy"] < 0.2 * plain_scale["energy"]
    for name in ("w", "time"):  # outputs without a reference keep the target spread
        assert res_scale[name] == plain_scale[name]
    for payload in (residual, plain):
        buffers = payload["state_dict"]["reference_scale"].numpy()
        expected = [payload["target_scaling"]["scale"][n] for n in REFERENCED_OUTPUTS]
        np.testing.assert_allclose(buffers, expected, rtol=1e-6)


def test_an_unknown_reference_scale_is_one_clear_error():
    from xecreco.train.config import config_from_dict

    with pytest.raises(UserError, match="loss.reference_scale"):
        config_from_dict({"data": {"train_files": ["x.root"]},
                          "loss": {"reference_scale": "residuals"}})
