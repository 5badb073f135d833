"""ONNX export: onnxruntime vs torch vs the numpy reconstruction pipeline, metadata, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import TINY, make_checkpoint, tiny_config
from xecreco.cli.main import main
from xecreco.models.base import Status
from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
from xecreco.models.export.regressor import export_onnx, sim_like_vertices
from xecreco.models.export.onnx import batch_from_raw, read_metadata, sim_like_inputs

torch.set_num_threads(1)
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    ckpt = folder / "tiny.pt"
    make_checkpoint(ckpt, tiny_config(uncertainty=True), seed=2)
    out = folder / "tiny.onnx"
    result = export_onnx(ckpt, out, check_events=16)
    return ckpt, out, result


def test_onnx_matches_torch_within_1e4(exported):
    _, out, result = exported
    assert out.is_file()
    assert result["max_rel_diff"] < 1e-4
    assert result["feature_max_diff"] < 1e-4
    assert not list(out.parent.glob(".*.tmp"))


@pytest.mark.parametrize("with_vertex", [False, True])
def test_onnx_matches_the_reconstructor_on_raw_inputs(exported, with_vertex):
    """Raw npho/time (sentinels, NaN) and the vertex through ONNX == reader +
    NormalizationSpec + torch model; an all-NaN vertex means the target centre, as no vertex."""
    ckpt, out, _ = exported
    npho, time = sim_like_inputs(20, seed=11)
    npho[4] = 1e10  # an event with every sensor dead
    time[4] = 1e10
    vertex = sim_like_vertices(20, seed=3)
    if not with_vertex:
        vertex[:] = np.nan
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["npho", "sensor_time", "vertex"]
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(None, {"npho": npho, "sensor_time": time,
                                                  "vertex": vertex})))
    batch = batch_from_raw(npho, time)
    reco = reconstructor_from_checkpoint(ckpt).reconstruct(
        batch.replace(vertex=vertex) if with_vertex else batch)
    np.testing.assert_array_equal(onnx_out["status"], reco["status"])
    assert onnx_out["status"][4] == Status.NO_VALID_SENSORS
    compared = ["energy", "u", "v", "w", "x", "y", "z", "time", "energy_err", "time_err"]
    if not with_vertex:  # with a vertex the reconstructor takes the angles from it
        compared += ["theta", "phi", "theta_err"]
    for name in compared:
        a = onnx_out[name].astype(np.float64)
        b = reco[name].astype(np.float64)
        assert np.all(np.abs(a - b) <= 1e-4 * (np.abs(b) + 1.0)), name


def test_a_vertex_blind_model_exports_without_the_vertex_input(tmp_path):
    """Only when no output depends on the vertex: with (u, v, w) and a time or direction head
    the graph takes it for the flight-time correction and the angles (test_export_agreement)."""
    ckpt = tmp_path / "blind.pt"
    make_checkpoint(ckpt, {**TINY, "summary": {"vertex": False}, "heads": ["energy", "u"]},
                    seed=6)
    export_onnx(ckpt, tmp_path / "blind.onnx", check_events=4)
    session = ort.InferenceSession(str(tmp_path / "blind.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["npho", "sensor_time"]
    assert set(read_metadata(tmp_path / "blind.onnx")["inputs"]) == {"npho", "sensor_time"}


def test_metadata(exported):
    _, out, _ = exported
    meta = read_metadata(out)
    assert meta["model_config"]["encoder"]["token_dim"] == 16
    assert meta["normalization"]["npho_scheme"] == "log1p"
    assert meta["target_scaling"]["mean"]["energy"] == pytest.approx(0.05)
    assert meta["outputs"]["energy"] == "GeV" and meta["outputs"]["time"] == "ns"
    assert meta["outputs"]["theta_err"] == "deg"
    assert "cm" in meta["inputs"]["vertex"]
    assert "xecreco_version" in meta


def test_dynamic_batch_axis(exported):
    _, out, _ = exported
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    npho, time = sim_like_inputs(3, seed=1)
    energies = session.run(["energy"], {"npho": npho, "sensor_time": time,
                                        "vertex": sim_like_vertices(3)})[0]
    assert energies.shape == (3,)


def test_cli_export(tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    make_checkpoint(ckpt, TINY, seed=4)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--check-events", "4"]) == 0
    assert out.is_file()
    assert "onnxruntime agrees with predict" in capsys.readouterr().out
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["export", str(bad), "-o", str(tmp_path / "bad.onnx")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and err.count("\n") == 1
    assert not (tmp_path / "bad.onnx").exists()


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["cpu", "upstream"])
def test_presets_export_with_all_heads(tmp_path, preset):
    ckpt = tmp_path / f"{preset}.pt"
    config = {"preset": preset, "uncertainty": True,
              "heads": ["energy", "time", "u", "v", "w", "direction", "npileup"]}
    make_checkpoint(ckpt, config, seed=1)
    result = export_onnx(ckpt, tmp_path / f"{preset}.onnx", check_events=8)
    assert result["max_rel_diff"] < 1e-4
    assert "npileup" in result["outputs"] and "npileup_err" in result["outputs"]


def test_save_checked_uses_a_fresh_temporary_name(tmp_path, monkeypatch):
    import onnx
    from onnx import TensorProto, helper

    from xecreco.errors import UserError
    from xecreco.models.export import onnx as export_onnx_module

    def proto():
        node = helper.make_node("Identity", ["x"], ["y"])
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
            "x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [1])])
        return helper.make_model(graph)

    names = []
    real_save = onnx.save
    monkeypatch.setattr(onnx, "save", lambda p, f: (names.append(f), real_save(p, f)))
    out = tmp_path / "m.onnx"
    for _ in range(2):
        assert export_onnx_module.save_checked(proto(), {"k": "v"}, lambda data: 1, out) == 1
    assert len(names) == 2 and names[0] != names[1]  # a random part, not only the pid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert read_metadata(str(out))["k"] == "v"

    def mismatch(data):
        raise UserError("disagrees")

    with pytest.raises(UserError):
        export_onnx_module.save_checked(proto(), {}, mismatch, tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
