"""Streaming prediction (xecreco.models.pipelines.predict) and the `xecreco predict` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.errors import UserError
from xecreco.geometry import solid_angle_fraction, uvw_to_xyz
from xecreco.io.schema import SENTINEL
from xecreco.io.writer import RootWriter, read_provenance
from xecreco.models.base import FILL_VALUE, Status
from xecreco.models.pipelines.predict import predict_files

REPO = Path(__file__).resolve().parents[1]
LIGHT_SPEED = 8.5  # cm/ns used by the synthetic inputs


def synthetic_events(n: int, seed: int = 0, dead=(), empty_events=()) -> dict:
    """Point-source events: npho = S * Omega/4pi (Gaussian photon noise), propagated times,
    truth and jagged pile-up branches. ``dead`` sensors get the sentinel; ``empty_events`` have
    every sensor invalid."""
    rng = np.random.default_rng(seed)
    uvw = np.column_stack([rng.uniform(-15, 15, n), rng.uniform(-40, 40, n), rng.uniform(0.5, 15, n)])
    xyz = uvw_to_xyz(uvw)
    omega = solid_angle_fraction(xyz)
    npho = 2.0e7 * omega
    npho = npho + rng.normal(size=npho.shape) * np.sqrt(npho / 0.15 + 100.0)
    t0 = rng.uniform(-5, 5, n)
    vertex = np.zeros((n, 3))
    from xecreco.geometry import design_geometry

    dist = np.linalg.norm(design_geometry().position[None] - xyz[:, None], axis=2)
    tof = np.linalg.norm(xyz - vertex, axis=1) / 29.9792458
    time = (t0 + tof)[:, None] + dist / LIGHT_SPEED + rng.normal(0, 0.1, dist.shape)
    time = np.where(npho > 50, time * 1e-9, SENTINEL)
    npho[:, list(dead)] = SENTINEL
    time[:, list(dead)] = SENTINEL
    for k in empty_events:
        npho[k] = SENTINEL
        time[k] = SENTINEL
    counts = rng.integers(0, 3, n)
    return {
        "npho": npho.astype(np.float32),
        "time": time.astype(np.float32),
        "run": np.full(n, 7, dtype=np.int32),
        "event": np.arange(100, 100 + n, dtype=np.int32),
        "energyTruth": np.full(n, 0.05283, dtype=np.float32),
        "timeTruth": t0.astype(np.float32),
        "uvwTruth": uvw.astype(np.float32),
        "xyzTruth": xyz.astype(np.float32),
        "xyzVTX": vertex.astype(np.float32),
        "nPileup": counts.astype(np.int32),
        "pileupEnergy": ak.Array([rng.uniform(0.001, 0.01, c).astype(np.float32) for c in counts]),
    }


def write_input(path: Path, n: int, seed: int = 0, **kwargs) -> Path:
    """Write :func:`synthetic_events` to ``path`` (tree ``tree``)."""
    with RootWriter(path, tree="tree") as writer:
        if n:
            writer.write(synthetic_events(n, seed, **kwargs))
        else:
            writer.write({"npho": np.zeros((0, 4760), np.float32), "time": np.zeros((0, 4760), np.float32),
                          "run": np.zeros(0, np.int32), "event": np.zeros(0, np.int32)})
    return path


class ToyReconstructor:
    """Energy = photon sum * 1e-9 GeV, u = entry; raises on the batch holding ``fail_at``."""

    outputs = ("energy", "u", "v", "w")

    def __init__(self, name: str = "toy", fail_at: int | None = None):
        self.name = name
        self.fail_at = fail_at

    def reconstruct(self, batch):
        if self.fail_at is not None and np.any(batch.entry == self.fail_at):
            raise RuntimeError("toy failure")
        n = len(batch)
        energy = np.where(batch.valid_npho, batch.npho, 0).sum(axis=1) * 1e-9
        u = batch.entry.astype(np.float32)
        v = np.full(n, np.nan, dtype=np.float32)  # NaN must never reach the file
        return {"energy": energy, "u": u, "v": v, "w": np.ones(n), "u_err": np.full(n, 0.5),
                "status": np.zeros(n, dtype=np.int32)}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_inputs")
    a = write_input(folder / "a.root", 23, seed=1, dead=(5, 900, 4500), empty_events=(3,))
    b = write_input(folder / "b.root", 14, seed=2)
    return a, b


def read(path, tree="reco"):
    with uproot.open(path) as handle:
        return handle[tree].arrays(library="np")


def test_predict_branches_order_truth_and_provenance(inputs, tmp_path):
    out = tmp_path / "pred.root"
    summary = predict_files(list(inputs), out, [ToyReconstructor(), "classical"], step_events=10,
                            progress=False)
    assert summary["events"] == 37
    data = read(out)
    np.testing.assert_array_equal(data["entry"], np.arange(37))
    np.testing.assert_array_equal(data["event"], np.r_[np.arange(100, 123), np.arange(100, 114)])
    assert data["run"][0] == 7
    for name in ("toy", "classical"):
        for q in ("energy", "u", "v", "w", "x", "y", "z", "status"):
            assert f"{name}_{q}" in data, f"{name}_{q}"
    assert "toy_u_err" in data and "toy_time" not in data
    for q in ("time", "theta", "phi", "pileup_prob"):
        assert f"classical_{q}" in data
    # NaN from the toy became the fill value with a FIT_FAILED status
    assert np.all(data["toy_v"] == np.float32(FILL_VALUE))
    assert np.all(data["toy_status"] == Status.FIT_FAILED)
    np.testing.assert_array_equal(data["toy_u"], np.arange(37, dtype=np.float32))
    # truth copied, jagged pile-up included; nothing is NaN
    expected = synthetic_events(23, 1, dead=(5, 900, 4500), empty_events=(3,))
    np.testing.assert_allclose(data["uvwTruth"][:23], expected["uvwTruth"])
    assert len(data["pileupEnergy"]) == 37
    for key, values in data.items():
        if values.dtype.kind == "f":
            assert np.all(np.isfinite(values)), key
    # the all-invalid event: status and fill values
    assert data["classical_status"][3] == Status.NO_VALID_SENSORS
    assert data["classical_energy"][3] == np.float32(FILL_VALUE)
    prov = read_provenance(out)
    assert [r["name"] for r in prov["reconstructors"]] == ["toy", "classical"]
    assert prov["reconstructors"][1]["checksum"]
    assert len(prov["inputs"]) == 2
    assert prov["xecreco_version"]


def test_classical_positions_on_point_sources(inputs, tmp_path):
    out = tmp_path / "pred.root"
    predict_files([inputs[0]], out, ["classical"], progress=False)
    data = read(out)
    ok = data["classical_status"] == Status.OK
    assert ok.sum() >= 20
    du = data["classical_u"][ok] - data["uvwTruth"][ok, 0]
    dv = data["classical_v"][ok] - data["uvwTruth"][ok, 1]
    # point sources, a calibration made for showers: a few mm at most
    assert np.median(np.abs(du)) < 0.5 and np.median(np.abs(dv)) < 0.5
    xyz = uvw_to_xyz(np.column_stack([data["classical_u"], data["classical_v"], data["classical_w"]])[ok])
    np.testing.assert_allclose(xyz[:, 0], data["classical_x"][ok], atol=1e-3)


def test_empty_input_gives_valid_empty_output(tmp_path):
    empty = write_input(tmp_path / "empty.root", 0)
    out = tmp_path / "pred.root"
    summary = predict_files([empty], out, ["classical"], progress=False)
    assert summary["events"] == 0
    with uproot.open(out) as handle:
        tree = handle["reco"]
        assert tree.num_entries == 0
        assert {"entry", "classical_energy", "classical_x", "classical_status"} <= set(tree.keys())


def test_two_processes_match_single_process(inputs, tmp_path):
    single, double = tmp_path / "one.root", tmp_path / "two.root"
    predict_files(list(inputs), single, ["classical"], step_events=8, progress=False)
    summary = predict_files(list(inputs), double, ["classical"], step_events=8, nproc=2,
                            progress=False)
    assert summary["events"] == 37
    a, b = read(single), read(double)
    assert set(a) == set(b)
    for key in a:
        if a[key].dtype == object:
            assert [list(x) for x in a[key]] == [list(x) for x in b[key]], key
        else:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_interrupted_prediction_leaves_no_output(inputs, tmp_path):
    out = tmp_path / "pred.root"
    with pytest.raises(RuntimeError, match="toy failure"):
        predict_files(list(inputs), out, [ToyReconstructor(fail_at=30)], step_events=10,
                      progress=False)
    assert list(tmp_path.iterdir()) == []


def test_rename_and_name_errors(inputs, tmp_path):
    out = tmp_path / "pred.root"
    predict_files([inputs[1]], out, ["classical", ToyReconstructor()],
                  names={"classical": "cl2"}, progress=False)
    data = read(out)
    assert "cl2_energy" in data and "toy_energy" in data and "classical_energy" not in data
    with pytest.raises(UserError, match="not an identifier"):
        predict_files([inputs[1]], out, ["classical"], names={"classical": "bad-name"})
    with pytest.raises(UserError, match="different names"):
        predict_files([inputs[1]], out, [ToyReconstructor(), ToyReconstructor()])
    with pytest.raises(UserError, match="unknown reconstructor 'nosuch'"):
        predict_files([inputs[1]], out, ["nosuch"])


def _cli(capsys, *args) -> tuple[int, list[str]]:
    """Run ``xecreco ARGS`` in-process; (exit status, stderr lines)."""
    from xecreco.cli.main import main

    capsys.readouterr()
    status = main([str(a) for a in args])
    return status, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_cli_predict_and_one_line_errors(inputs, tmp_path, capsys):
    out = tmp_path / "cli.root"
    status, _ = _cli(capsys, "predict", inputs[1], "-o", out, "-r", "classical", "--name",
                     "classical=cl", "--no-progress")
    assert status == 0
    assert read(out)["cl_energy"].shape == (14,)
    bad = tmp_path / "x.root"
    cases = {
        "nope.root": ("predict", tmp_path / "nope.root", "-o", bad, "-r", "classical"),
        "unknown reconstructor 'nosuch'": ("predict", inputs[1], "-o", bad, "-r", "nosuch"),
        "t2": ("predict", inputs[1], "-o", bad, "-r", "classical", "--tree", "t2"),
        "RECONSTRUCTOR=NEWNAME": ("predict", inputs[1], "-o", bad, "-r", "classical", "--name", "oops"),
    }
    with uproot.recreate(tmp_path / "nonpho.root") as handle:
        handle.mktree("tree", {"time": np.dtype((np.float32, (4760,)))})
        handle["tree"].extend({"time": np.zeros((2, 4760), np.float32)})
    cases["'npho'"] = ("predict", tmp_path / "nonpho.root", "-o", bad, "-r", "classical")
    for expected, args in cases.items():
        status, lines = _cli(capsys, *args)
        assert status == 2, (expected, lines)
        assert len(lines) == 1 and expected in lines[0], (expected, lines)
        assert lines[0].startswith("xecreco: error:")
    assert not bad.exists()


@pytest.mark.slow
def test_torchrun_ranks_merge_in_order(inputs, tmp_path):
    """Two ranks launched like torchrun (RANK/WORLD_SIZE/MASTER_*) give the single-process file."""
    single, ranked = tmp_path / "one.root", tmp_path / "ranked.root"
    predict_files(list(inputs), single, ["classical"], progress=False)
    env = dict(os.environ, WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="29517")
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "xecreco.cli.main", "predict", *map(str, inputs), "-o",
             str(ranked), "-r", "classical", "--no-progress"],
            env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)), cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for rank in (0, 1)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    a, b = read(single), read(ranked)
    for key in ("entry", "classical_energy", "classical_u", "classical_time", "energyTruth"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_entry_ranges_cover_everything_once():
    from xecreco.models.pipelines.sharding import entry_ranges as _ranges

    for total, parts in ((37, 2), (5, 3), (1, 4), (0, 2)):
        ranges = _ranges(total, parts)
        assert len(ranges) == parts
        covered = [e for a, b in ranges for e in range(a, b)]
        assert covered == list(range(total))
        sizes = [b - a for a, b in ranges]
        assert max(sizes) - min(sizes) <= 1
