"""Checkpoint -> Reconstructor: units, time reference, status codes, ensembles, bad checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import SCALING, TINY, make_checkpoint, sim_batch, tiny_config
from xecreco.errors import UserError
from xecreco.geometry import direction_to_angles, uvw_to_xyz
from xecreco.models.base import FILL_VALUE, Reconstructor, Status
from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
from xecreco.models.registry import create_reconstructor
from xecreco.models.regressor.network import build_model
from xecreco.normalization import NormalizationSpec

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    paths = []
    for seed in (0, 1):
        path = folder / f"model_{seed}.pt"
        make_checkpoint(path, TINY, seed=seed)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def blind_checkpoint(tmp_path_factory):
    """A network that does not see the vertex (no incidence inputs in its light summary)."""
    path = tmp_path_factory.mktemp("blind") / "blind.pt"
    make_checkpoint(path, {**TINY, "summary": {"vertex": False}}, seed=3)
    return path


@pytest.fixture(scope="module")
def batch():
    b = sim_batch(12, seed=5)
    # event 3: every sensor dead; event 7: no valid time anywhere
    b.valid_npho[3] = False
    b.valid_time[3] = False
    b.npho[3] = 0.0
    b.valid_time[7] = False
    return b


def _network_outputs(path, batch):
    payload = torch.load(path, weights_only=True)
    model = build_model(payload["model_config"])
    model.load_state_dict(payload["state_dict"])
    spec = NormalizationSpec.from_dict(payload["normalization"])
    with torch.inference_mode():
        raw = model.eval()(torch.from_numpy(spec.features(batch)))
    return {k: v.double().numpy() for k, v in raw.items()}, spec.time_reference_ns(batch)


def test_single_checkpoint_outputs_in_file_units(checkpoints, batch):
    reco = reconstructor_from_checkpoint(checkpoints[0])
    assert isinstance(reco, Reconstructor)
    assert reco.name == "model_0"
    assert reco.outputs == ("energy", "u", "v", "w", "x", "y", "z", "time", "theta", "phi")
    out = reco.reconstruct(batch)
    raw, ref_ns = _network_outputs(checkpoints[0], batch)
    ok = out["status"] == Status.OK
    assert ok.sum() == 10
    for q in ("energy", "u", "v", "w"):
        expected = raw[q] * SCALING.scale[q] + SCALING.mean[q]
        assert out[q].dtype == np.float32
        np.testing.assert_allclose(out[q][ok], expected[ok], rtol=1e-5, atol=1e-5)
    # time: destandardised relative time plus the per-event reference (ns)
    expected_time = raw["time"] * SCALING.scale["time"] + SCALING.mean["time"] + ref_ns
    time_ok = ok & (out["status"] != Status.NO_VALID_TIME)
    np.testing.assert_allclose(out["time"][time_ok], expected_time[time_ok], rtol=1e-6, atol=1e-4)
    assert np.ptp(ref_ns[time_ok]) > 1.0  # the reference really varies from event to event
    xyz = uvw_to_xyz(np.stack([out["u"], out["v"], out["w"]], axis=1).astype(np.float64))
    np.testing.assert_allclose(np.stack([out["x"], out["y"], out["z"]], 1)[ok], xyz[ok],
                               rtol=1e-5, atol=1e-4)
    theta, phi = direction_to_angles(raw["direction"])
    np.testing.assert_allclose(out["theta"][ok], theta[ok], atol=1e-3)
    np.testing.assert_allclose(out["phi"][ok], phi[ok], atol=1e-3)
    assert not any(k.endswith("_err") for k in out)


def test_angles_and_time_use_the_vertex_when_it_is_known(blind_checkpoint, batch):
    reco = reconstructor_from_checkpoint(blind_checkpoint)
    assert not reco.members[0].model.uses_vertex
    without = reco.reconstruct(batch.replace(vertex=None))
    vertex = np.zeros((len(batch), 3), np.float32)
    vertex[:, 2] = np.linspace(-10.0, 10.0, len(batch))
    vertex[5] = np.nan  # unknown vertex: the direction head's angles
    out = reco.reconstruct(batch.replace(vertex=vertex))
    ok = out["status"] == Status.OK
    xyz = np.stack([out["x"], out["y"], out["z"]], axis=1).astype(np.float64)
    theta, phi = direction_to_angles(xyz - vertex)
    known = ok & np.isfinite(vertex).all(axis=1)
    np.testing.assert_allclose(out["theta"][known], theta[known], atol=1e-3)
    np.testing.assert_allclose(out["phi"][known], phi[known], atol=1e-3)
    assert out["theta"][5] == pytest.approx(without["theta"][5], abs=1e-4)
    assert not np.allclose(out["theta"][known], without["theta"][known], atol=0.1)
    # time of flight corrected from the target centre to the measured vertex (c in cm/ns)
    timed = known & (out["status"] == Status.OK)
    flight = (np.linalg.norm(xyz, axis=1) - np.linalg.norm(xyz - vertex, axis=1)) / 29.9792458
    np.testing.assert_allclose(out["time"][timed], without["time"][timed] + flight[timed],
                               atol=2e-3)
    assert np.ptp(flight[timed]) > 0.01  # ns: the correction is not negligible
    assert out["time"][5] == pytest.approx(without["time"][5], abs=1e-4)


def test_a_vertex_aware_network_gets_the_vertex_and_no_posthoc_flight_correction(
        checkpoints, batch):
    reco = reconstructor_from_checkpoint(checkpoints[0])
    model = reco.members[0].model
    assert model.uses_vertex
    vertex = np.zeros((len(batch), 3), np.float32)
    vertex[:, 2] = np.linspace(-10.0, 10.0, len(batch))
    vertex[5] = np.nan  # unknown: the network gets the target centre
    out = reco.reconstruct(batch.replace(vertex=vertex))
    spec = reco.members[0].normalization
    features = torch.from_numpy(spec.features(batch))
    centre = torch.zeros(len(batch), 3)
    with torch.inference_mode():
        seen = model(features, torch.from_numpy(np.nan_to_num(vertex, nan=0.0)))
        at_centre = model(features, centre)
    ok = out["status"] == Status.OK
    time = SCALING.destandardize("time", seen["time"].double().numpy())
    time = time + spec.time_reference_ns(batch)
    np.testing.assert_allclose(out["time"][ok], time[ok], atol=2e-3)  # no extra flight term
    energy = SCALING.destandardize("energy", seen["energy"].double().numpy())
    np.testing.assert_allclose(out["energy"][ok], energy[ok], rtol=1e-5)
    assert not torch.allclose(seen["energy"], at_centre["energy"])  # the vertex matters
    assert seen["energy"][5].item() == pytest.approx(at_centre["energy"][5].item(), abs=1e-6)


def test_status_codes_and_fill_values(checkpoints, batch):
    out = reconstructor_from_checkpoint(checkpoints[0], name="nn").reconstruct(batch)
    assert out["status"].dtype == np.int32
    assert out["status"][3] == Status.NO_VALID_SENSORS
    assert out["status"][7] == Status.NO_VALID_TIME
    for q in ("energy", "u", "x", "time", "theta"):
        assert out[q][3] == np.float32(FILL_VALUE)
    assert out["time"][7] == np.float32(FILL_VALUE)
    assert out["energy"][7] != np.float32(FILL_VALUE)
    assert all(np.isfinite(v).all() for v in out.values())


def test_ensemble_mean_and_spread(checkpoints, batch):
    single = [reconstructor_from_checkpoint(p).reconstruct(batch) for p in checkpoints]
    ens = reconstructor_from_checkpoint(checkpoints, batch_size=5)
    assert ens.name == "model_0_ens2"
    out = ens.reconstruct(batch)
    ok = out["status"] == Status.OK
    for q in ("energy", "u", "v", "w", "time"):
        a, b = single[0][q][ok].astype(np.float64), single[1][q][ok].astype(np.float64)
        np.testing.assert_allclose(out[q][ok], (a + b) / 2, rtol=1e-5, atol=1e-4)
        # sample standard deviation of two members: |a - b| / sqrt(2)
        np.testing.assert_allclose(out[q + "_err"][ok], np.abs(a - b) / np.sqrt(2), rtol=1e-4,
                                   atol=1e-4)
        assert (out[q + "_err"][ok] > 0).all()
    assert "theta_err" in out and "phi_err" in out
    assert (out["theta_err"][ok] > 0).all()


def test_uncertainty_heads_give_errors(tmp_path, batch):
    path = tmp_path / "unc.pt"
    make_checkpoint(path, tiny_config(uncertainty=True))
    out = reconstructor_from_checkpoint(path).reconstruct(batch)
    raw, _ = _network_outputs(path, batch)
    ok = out["status"] == Status.OK
    expected = np.exp(0.5 * raw["energy_logvar"]) * SCALING.scale["energy"]
    np.testing.assert_allclose(out["energy_err"][ok], expected[ok], rtol=1e-5)
    assert (out["theta_err"][ok] > 0).all()


def test_registry_accepts_checkpoint_paths(checkpoints):
    reco = create_reconstructor(str(checkpoints[1]), name="second")
    assert reco.name == "second"


def _one_line(exc) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_state_dict_of_another_preset_is_a_user_error(tmp_path):
    wrong = build_model(tiny_config(encoder={"token_dim": 32})).state_dict()
    path = tmp_path / "wrong.pt"
    make_checkpoint(path, TINY, state_dict=wrong)
    with pytest.raises(UserError) as exc:
        reconstructor_from_checkpoint(path)
    message = _one_line(exc)
    assert "wrong.pt" in message and "do not match" in message and "wrong shape" in message


def test_unknown_model_config_and_wrong_task(tmp_path):
    path = tmp_path / "bad_config.pt"
    payload = make_checkpoint(path, TINY)
    payload["model_config"] = {**payload["model_config"], "encoder_size": 3}
    torch.save(payload, path)
    with pytest.raises(UserError) as exc:
        reconstructor_from_checkpoint(path)
    assert "encoder_size" in _one_line(exc)
    mae = tmp_path / "mae.pt"
    make_checkpoint(mae, TINY, task="mae")
    with pytest.raises(UserError) as exc:
        reconstructor_from_checkpoint(mae)
    assert "'mae' checkpoint" in _one_line(exc)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError) as exc:
        reconstructor_from_checkpoint(bad)
    assert "corrupt.pt" in _one_line(exc)
    with pytest.raises(UserError):
        reconstructor_from_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(UserError, match="no checkpoint"):
        reconstructor_from_checkpoint([])


def test_name_must_be_an_identifier(checkpoints):
    with pytest.raises(UserError, match="identifier"):
        reconstructor_from_checkpoint(checkpoints[0], name="a-b")


def test_empty_batch_keeps_the_output_keys(checkpoints, batch):
    ens = reconstructor_from_checkpoint(checkpoints)
    full = ens.reconstruct(batch)
    empty = ens.reconstruct(batch.select(slice(0, 0)))
    assert set(empty) == set(full)
    assert all(len(v) == 0 for v in empty.values())
    assert set(ens.error_outputs) == {k for k in full if k.endswith("_err")}
