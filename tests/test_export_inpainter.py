"""ONNX export of the neural inpainter: onnxruntime vs the torch NeuralInpainter, static path, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import make_checkpoint, randomise

from xecreco.cli.main import main
from xecreco.io.schema import SENTINEL, BranchNames
from xecreco.models import bundled
from xecreco.models.export.onnx import batch_from_raw, read_metadata, sim_like_inputs
from xecreco.models.export.inpainter import (
    INPAINTER_INPUTS,
    INPAINTER_OUTPUTS,
    export_inpainter_onnx,
    sim_like_dead,
)
from xecreco.models.inpaint.neural import inpainter_from_checkpoint
from xecreco.models.pipelines.inpaint import apply_dead_mask, output_arrays
from xecreco.models.masked.network import build_masked_model, masked_inputs, resolve_masked_config
from xecreco.normalization import NormalizationSpec
from xecreco.train.checkpoint import save_checkpoint

torch.set_num_threads(1)
ort = pytest.importorskip("onnxruntime")

BUNDLED = bundled.BUNDLED_INPAINTER
SMALL = {"preset": "local", "local": {"hidden": 16, "context_dim": 8, "k_inner": 12, "k_pmt": 6}}


def _inpainter_checkpoint(path, config: dict, seed: int = 0) -> None:
    """A hand-made inpainter checkpoint with random (non-zero) weights."""
    config = resolve_masked_config(config, task="inpainter")
    torch.manual_seed(seed)
    model = randomise(build_masked_model(config), seed)
    spec = NormalizationSpec(time_scale_ns=5.0)
    save_checkpoint(path, {
        "format": "xecreco-checkpoint", "format_version": 1, "task": "inpainter",
        "model_config": config, "normalization": spec.to_dict(), "target_scaling": {},
        "state_dict": model.state_dict(), "ema_state_dict": None, "train_state": {},
        "metrics": {}, "xecreco_version": "test"})


@pytest.fixture(scope="module")
def tiny_local(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx_inpainter")
    ckpt = folder / "local.pt"
    _inpainter_checkpoint(ckpt, SMALL, seed=3)
    out = folder / "local.onnx"
    return ckpt, out, export_inpainter_onnx(ckpt, out, check_events=8)


def _expected(ckpt, npho, time, dead):
    """What ``xecreco inpaint`` with the torch NeuralInpainter writes for these raw inputs."""
    batch = apply_dead_mask(batch_from_raw(npho, time), dead > 0.5)
    names = BranchNames()
    arrays = output_arrays(batch, inpainter_from_checkpoint(ckpt).inpaint(batch), names, [], {})
    return arrays[names.npho], arrays[names.time], arrays["inpainted"], batch


def _run(path, npho, time, dead):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPAINTER_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(INPAINTER_OUTPUTS)
    return session.run(None, {"npho": npho, "sensor_time": time, "dead": dead})


def _assert_matches(ckpt, path, n, seed):
    npho, time = sim_like_inputs(n, seed)
    dead = sim_like_dead(n, seed)
    npho[2, :300] = np.inf  # a run of invalid inputs and a NaN time
    time[3, 7] = np.nan
    got_npho, got_time, got_mask = _run(path, npho, time, dead)
    want_npho, want_time, want_mask, batch = _expected(ckpt, npho, time, dead)
    np.testing.assert_array_equal(got_mask, want_mask)
    assert got_mask.sum() == (~batch.valid_npho).sum() > 0.02 * npho.size
    assert not got_mask[batch.valid_npho].any()
    np.testing.assert_allclose(got_npho, want_npho, rtol=1e-4, atol=1e-4)
    # untouched sensors pass through bit for bit; no sentinel left in the repaired npho
    keep = batch.valid_npho
    np.testing.assert_array_equal(got_npho[keep], npho[keep])
    assert np.isfinite(got_npho).all() and (got_npho < 9e9).all()
    timed = want_time < 9e9
    np.testing.assert_array_equal(got_time < 9e9, timed)
    assert (got_time[~timed] == np.float32(SENTINEL)).all()
    np.testing.assert_allclose(got_time[timed] * 1e9, want_time[timed] * 1e9, rtol=1e-4,
                               atol=1e-4)
    # repaired sensors get a time exactly where the predicted light reaches 50 photons
    filled = got_mask & ~batch.valid_npho
    assert ((got_time[filled] < 9e9) == (got_npho[filled] >= 50.0)).all()
    return got_npho, got_mask


def test_tiny_local_export_matches_the_torch_inpainter(tiny_local):
    ckpt, out, result = tiny_local
    assert out.is_file() and not list(out.parent.glob(".*.tmp"))
    assert result["max_rel_diff"] < 1e-4 and result["repaired"] > 0
    _assert_matches(ckpt, out, n=6, seed=21)


def test_dynamic_event_axis_and_metadata(tiny_local):
    _, out, _ = tiny_local
    npho, time = sim_like_inputs(3, seed=4)
    dead = np.zeros_like(npho)
    single = _run(out, npho[:1], time[:1], dead[:1])
    triple = _run(out, npho, time, dead)
    assert single[0].shape == (1, 4760) and triple[0].shape == (3, 4760)
    np.testing.assert_allclose(single[0][0], triple[0][0], rtol=1e-5)
    meta = read_metadata(out)
    assert meta["task"] == "inpainter" and meta["model_config"]["preset"] == "local"
    assert meta["model_config"]["local"]["k_inner"] == 12
    assert meta["normalization"]["time_scale_ns"] == 5.0
    assert set(meta["inputs"]) == set(INPAINTER_INPUTS)
    assert "seconds" in meta["outputs"]["sensor_time_repaired"]
    assert meta["min_time_npho"] == 50.0 and meta["sentinel"] == 1e10


def test_static_path_gives_the_same_values_at_the_queries(tiny_local):
    ckpt, _, _ = tiny_local
    inpainter = inpainter_from_checkpoint(ckpt)
    npho, time = sim_like_inputs(3, seed=9)
    batch = apply_dead_mask(batch_from_raw(npho, time), sim_like_dead(3, 9) > 0.5)
    x = torch.from_numpy(masked_inputs(inpainter.spec, batch))
    query = torch.from_numpy(~batch.valid_npho)
    body = inpainter.model.local
    with torch.no_grad():
        dynamic = body(x, query)
        static = body.forward_static(x, query)
    assert not body.static_queries
    torch.testing.assert_close(static, dynamic, rtol=1e-5, atol=1e-5)
    assert (static[query] != x[..., :2][query]).any()
    torch.testing.assert_close(static[~query], x[..., :2][~query], rtol=0, atol=0)


@pytest.mark.skipif(not BUNDLED.is_file(), reason="no bundled default_inpainter.pt")
def test_bundled_inpainter_export_matches(tmp_path):
    out = tmp_path / "default_inpainter.onnx"
    result = export_inpainter_onnx(BUNDLED, out, check_events=8, seed=5)
    assert result["max_rel_diff"] < 1e-4
    got_npho, got_mask = _assert_matches(BUNDLED, out, n=8, seed=31)
    # a trained model repairs a dead inner sensor of a bright event to the right order of
    # magnitude of its neighbours' light
    npho, _ = sim_like_inputs(8, seed=31)
    bright = got_mask[0, :4092] & (npho[0, :4092] > 500) & (npho[0, :4092] < 9e9)
    if bright.any():
        ratio = got_npho[0, :4092][bright] / npho[0, :4092][bright]
        assert 0.3 < np.median(ratio) < 3.0


def test_cli_exports_an_inpainter_checkpoint(tiny_local, tmp_path, capsys):
    ckpt, _, _ = tiny_local
    out = tmp_path / "cli.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--check-events", "4"]) == 0
    text = capsys.readouterr().out
    assert "npho_repaired" in text and "onnxruntime agrees with inpaint" in text
    assert read_metadata(out)["task"] == "inpainter"


def test_cli_rejects_wrong_task_and_foreign_files(tmp_path, capsys):
    ckpt = tmp_path / "pretrain.pt"
    make_checkpoint(ckpt, task="regressor")
    payload = torch.load(ckpt, weights_only=True)
    payload["task"] = "calibration"
    save_checkpoint(ckpt, payload)
    out = tmp_path / "x.onnx"
    assert main(["export", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "calibration" in err and "inpainter" in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert main(["export", str(foreign), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an xecreco checkpoint" in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_cpu_preset_exports_and_sensors_average_their_cells(tmp_path):
    """Encoder presets: the outer PMTs covering several cells are averaged correctly, in torch
    (checked against face_image_index) and in ONNX (checked against torch)."""
    from xecreco.geometry import Face, face_image_index
    from xecreco.models.nn.encoder import FACE_NAMES, HEX_FACES, RECT_FACES

    ckpt, out = tmp_path / "cpu.pt", tmp_path / "cpu.onnx"
    _inpainter_checkpoint(ckpt, {"preset": "cpu"}, seed=1)
    result = export_inpainter_onnx(ckpt, out, check_events=3, seed=2)
    assert result["max_rel_diff"] < 1e-4
    _assert_matches(ckpt, out, n=4, seed=8)
    model = inpainter_from_checkpoint(ckpt).model
    rng = np.random.default_rng(0)
    faces = {}
    for face in RECT_FACES:
        faces[FACE_NAMES[face]] = torch.from_numpy(
            rng.normal(size=(1, face_image_index(face).size, 2)).astype(np.float32))
    for face in HEX_FACES:
        n_nodes = len(getattr(model, f"ids_{FACE_NAMES[face]}"))
        faces[FACE_NAMES[face]] = torch.from_numpy(rng.normal(size=(1, n_nodes, 2)).astype(
            np.float32))
    sensors = model._assemble(faces)[0].numpy()
    index = face_image_index(Face.OUTER).reshape(-1)
    cells = faces["outer"][0].numpy()
    counts = np.bincount(index[index >= 0])
    several = np.flatnonzero(counts > 1)
    assert several.size > 100  # the coarse outer PMTs cover several cells
    for sensor in several[:: max(1, several.size // 20)]:
        np.testing.assert_allclose(sensors[sensor], cells[index == sensor].mean(axis=0),
                                   rtol=1e-5, atol=1e-6)
