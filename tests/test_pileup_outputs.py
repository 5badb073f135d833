"""The neural pile-up head downstream of training: ``pileup_prob`` from the checkpoint
reconstructor, in the prediction tree, in the ONNX export, and as the pile-up study's score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import TINY, make_checkpoint, sim_batch
from xecreco.models.base import Status
from xecreco.models.regressor.reconstructor import physical_outputs, reconstructor_from_checkpoint
from xecreco.models.regressor.network import build_model
from xecreco.normalization import NormalizationSpec

torch.set_num_threads(1)
HEADS = ["energy", "time", "u", "v", "w", "direction", "pileup"]


@pytest.fixture(scope="module")
def pileup_checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pileup_ckpt")
    paths = []
    for seed in (0, 1):
        path = folder / f"pu_{seed}.pt"
        make_checkpoint(path, {**TINY, "heads": HEADS}, seed=seed)
        paths.append(path)
    return paths


def _logits(path, batch):
    payload = torch.load(path, weights_only=True)
    model = build_model(payload["model_config"]).eval()
    model.load_state_dict(payload["state_dict"])
    spec = NormalizationSpec.from_dict(payload["normalization"])
    features = torch.from_numpy(spec.features(batch))
    vertex = None if batch.vertex is None else torch.from_numpy(
        np.asarray(batch.vertex, dtype=np.float32))
    with torch.inference_mode():
        raw = model(features, vertex) if model.uses_vertex else model(features)
    return raw["pileup"].double().numpy()


def test_pileup_prob_is_the_sigmoid_of_the_head(pileup_checkpoints):
    assert physical_outputs(HEADS)[-1] == "pileup_prob"
    assert "pileup_prob" not in physical_outputs(HEADS[:-1])
    batch = sim_batch(10, seed=4)
    batch.valid_npho[2] = False  # an event without a valid sensor: fill value, status 1
    batch.valid_time[2] = False
    reco = reconstructor_from_checkpoint(pileup_checkpoints[0])
    assert "pileup_prob" in reco.outputs and "pileup_prob_err" not in reco.error_outputs
    out = reco.reconstruct(batch)
    expected = 1.0 / (1.0 + np.exp(-_logits(pileup_checkpoints[0], batch)))
    ok = out["status"] == Status.OK
    assert ok.sum() == 9 and out["status"][2] == Status.NO_VALID_SENSORS
    np.testing.assert_allclose(out["pileup_prob"][ok], expected[ok], rtol=1e-5, atol=1e-6)
    assert np.all((out["pileup_prob"][ok] >= 0) & (out["pileup_prob"][ok] <= 1))
    assert np.ptp(out["pileup_prob"][ok]) > 0  # the events really differ
    assert out["pileup_prob"][2] < -1e9


def test_ensemble_averages_the_probabilities(pileup_checkpoints):
    batch = sim_batch(6, seed=8)
    single = [reconstructor_from_checkpoint(p).reconstruct(batch)["pileup_prob"]
              for p in pileup_checkpoints]
    both = reconstructor_from_checkpoint(pileup_checkpoints).reconstruct(batch)
    np.testing.assert_allclose(both["pileup_prob"], np.mean(single, axis=0), rtol=1e-5)
    assert "pileup_prob_err" not in both


def test_predict_writes_name_pileup_prob(pileup_checkpoints, tmp_path):
    import uproot

    from xecreco.cli.main import main
    from xecreco.sim import SimConfig, simulate_file

    sim = tmp_path / "pu.root"
    simulate_file(str(sim), 20, SimConfig(pileup_rate_hz=3e6), seed=3)
    out = tmp_path / "pred.root"
    assert main(["predict", str(sim), "-r", str(pileup_checkpoints[0]), "--name",
                 "pu_0=default", "-o", str(out), "--no-progress"]) == 0
    with uproot.open(out) as handle:
        tree = handle["reco"]
        prob = tree["default_pileup_prob"].array(library="np")
        assert "nPileup" in tree.keys()
    assert prob.dtype == np.float32 and prob.shape == (20,)
    assert np.all((prob >= 0) & (prob <= 1))
    # the validation loader reads the gate fractions and positions the pile-up study needs:
    # its positives are the training label of the same events (light inside the gate)
    from xecreco.train.targets import pileup_label
    from xecreco.validation.data import load_predictions

    data = load_predictions([out])
    for name in ("pileupGateFraction", "pileupU", "pileupV"):
        assert name in data.truth
    with uproot.open(sim) as handle:
        tree = handle["tree"]
        label = pileup_label(tree["pileupEnergy"].array(), tree["pileupGateFraction"].array())
    from xecreco.validation.studies.pileup import in_gate_energy_mev

    in_gate = np.asarray([sum(e) for e in in_gate_energy_mev(data).tolist()])
    np.testing.assert_array_equal(in_gate >= 5.0, label > 0.5)
    full = np.asarray([sum(e) * 1000 for e in data.truth["pileupEnergy"].tolist()])
    assert np.any(in_gate < full - 0.1)  # out-of-time photons count with f(t0) / f(0) < 1


def _onnx_against_predict(checkpoint, out, seed: int) -> tuple[dict, dict, dict]:
    """Export ``checkpoint`` to ``out``; (export result, ONNX outputs, predict outputs) on the
    same 7 sim-like events with vertices."""
    import onnxruntime as ort

    from xecreco.models.export.onnx import batch_from_raw, sim_like_inputs
    from xecreco.models.export.regressor import export_onnx, sim_like_vertices

    result = export_onnx(checkpoint, out, check_events=8)
    npho, time = sim_like_inputs(7, seed=seed)
    vertex = sim_like_vertices(7, seed=2)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"npho": npho, "sensor_time": time,
                                             "vertex": vertex})))
    want = reconstructor_from_checkpoint(checkpoint).reconstruct(
        batch_from_raw(npho, time).replace(vertex=vertex))
    return result, got, want


def test_onnx_export_has_pileup_prob(pileup_checkpoints, tmp_path):
    pytest.importorskip("onnxruntime")
    from xecreco.models.export.onnx import read_metadata

    out = tmp_path / "pu.onnx"
    result, got, want = _onnx_against_predict(pileup_checkpoints[1], out, seed=12)
    assert "pileup_prob" in result["outputs"] and result["tolerance_ratio"] <= 1.0
    assert read_metadata(out)["outputs"]["pileup_prob"] == "probability"
    np.testing.assert_allclose(got["pileup_prob"], want["pileup_prob"], atol=1e-5)


def test_onnx_export_carries_pileup_energy(tmp_path):
    pytest.importorskip("onnxruntime")
    from xecreco.models.export.onnx import read_metadata

    path = tmp_path / "pe.pt"
    make_checkpoint(path, {**TINY, "heads": ["energy", "u", "v", "w", "time", "pileup_energy"]})
    out = tmp_path / "pe.onnx"
    result, got, want = _onnx_against_predict(path, out, seed=13)
    assert "pileup_energy" in result["outputs"] and result["tolerance_ratio"] <= 1.0
    assert read_metadata(out)["outputs"]["pileup_energy"] == "GeV"
    for q in ("pileup_energy", "energy"):
        np.testing.assert_allclose(got[q], want[q], rtol=1e-4, atol=1e-6)


def test_pileup_study_scores_a_neural_reconstruction_with_the_training_label(tmp_path):
    """A neural reconstruction ``default`` with ``pileup_prob`` (and ``npileup``) is scored by
    ``default_pileup_prob``; the study's positives are exactly the ``pileup`` training label."""
    import awkward as ak

    from xecreco.train.targets import pileup_label
    from xecreco.validation.data import Dataset, Series
    from xecreco.validation.studies import pileup
    from xecreco.validation.studies.base import Context

    rng = np.random.default_rng(1)
    n = 800
    n_pu = rng.poisson(1.0, n)
    counts = n_pu.tolist()
    energy = ak.unflatten(rng.uniform(0.001, 0.02, n_pu.sum()), counts)
    gate = ak.unflatten(rng.uniform(0.0, 0.93, n_pu.sum()), counts)
    label = pileup_label(energy, gate) > 0.5
    score = np.clip(0.3 + 0.5 * label + rng.normal(0, 0.15, n), 0, 1)
    truth = {"nPileup": n_pu, "pileupEnergy": energy, "pileupGateFraction": gate,
             "pileupTime": ak.unflatten(rng.uniform(-200, 200, n_pu.sum()), counts),
             "timeTruth": np.zeros(n)}
    series = Series(name="default", reco="default", label=None,
                    values={"pileup_prob": score, "npileup": -score},
                    status=np.zeros(n, np.int32))
    data = Dataset(files=[], run=np.zeros(n, int), event=np.arange(n), truth=truth,
                   series=[series])
    res = pileup.run(data, Context(plot_dir=tmp_path, bootstrap_replicas=0, formats=("png",)))
    ident = res.summary["default"]["identification"]
    assert ident["score"] == "default_pileup_prob"
    assert ident["n_positive"] == int(label.sum()) > 50
    assert ident["n_negative"] == int((n_pu == 0).sum())
    assert ident["auc"] > 0.95
