"""``inpaint_file`` / ``xecreco inpaint``: streaming repaired copies of simulated files."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.cli.main import main
from xecreco.errors import UserError
from xecreco.io.writer import read_provenance
from xecreco.models.inpaint.baselines import NeighbourAverageInpainter
from xecreco.validation.inpainting import score_file
from xecreco.models.pipelines.inpaint import inpaint_file, read_dead_list, resolve_inpainter


def _arrays(path, tree="tree"):
    with uproot.open(path) as handle:
        return handle[tree].arrays(library="ak"), handle[tree].keys()


@pytest.fixture(scope="module")
def repaired(sim_file_pileup_dead, tmp_path_factory):
    out = tmp_path_factory.mktemp("inpaint") / "repaired.root"
    stats = inpaint_file(sim_file_pileup_dead, out, "neighbour-average", dead_branch="dead",
                         step_events=64, progress=False)
    return out, stats


def test_repaired_copy_keeps_every_branch_and_fills_the_dead(sim_file_pileup_dead, repaired):
    out, stats = repaired
    before, keys_in = _arrays(sim_file_pileup_dead)
    after, keys_out = _arrays(out)
    assert set(keys_out) == set(keys_in) | {"inpainted"}
    assert stats["events"] == len(before) == len(after)
    for name in keys_in:
        assert str(ak.type(before[name])) == str(ak.type(after[name])), name
        if name in ("npho", "time"):
            continue
        assert ak.all(ak.ravel(before[name] == after[name])), name
    dead = ak.to_numpy(before["dead"])
    inpainted = ak.to_numpy(after["inpainted"])
    assert dead.any()
    assert np.array_equal(inpainted, dead)
    assert sum(stats["inpainted"].values()) == dead.sum() and stats["still_invalid"] == 0
    npho_in, npho_out = ak.to_numpy(before["npho"]), ak.to_numpy(after["npho"])
    assert np.array_equal(npho_out[~dead], npho_in[~dead])
    assert np.all(npho_in[dead] > 9e9)
    assert np.all(np.abs(npho_out[dead]) < 9e9)
    time_out = ak.to_numpy(after["time"])
    assert np.isfinite(time_out).all()
    assert np.array_equal(time_out[~dead], ak.to_numpy(before["time"])[~dead])
    # dead sensors that had a time before masking get one back (they have enough light)
    had_time = ak.to_numpy(before["timeClean"])[dead] < 9e9
    got_time = time_out[dead] < 9e9
    assert had_time.sum() > 100
    assert got_time[had_time].mean() > 0.9
    assert np.all(npho_out[dead][got_time] >= 50)
    provenance = read_provenance(out)
    assert provenance["inpainter"] == "neighbour-average"
    assert provenance["dead_branch"] == "dead"
    assert [p.name for p in out.parent.iterdir()] == [out.name]


def test_scores_of_the_baselines_on_simulated_photons(sim_file_pileup_dead, repaired, tmp_path):
    scores = {"neighbour-average": score_file(repaired[0])}
    for name in ("solid-angle", "local-fit"):
        out = tmp_path / f"{name}.root"
        inpaint_file(sim_file_pileup_dead, out, name, progress=False)
        scores[name] = score_file(out)
    for name, faces in scores.items():
        assert faces["inner"]["n"] > 1000, name
        assert faces["inner"]["mae"] < 40.0, name
        assert faces["all"]["rel68"] < 0.3, name
        assert abs(faces["all"]["rel_bias"]) < 0.1, name
        assert faces["all"]["time_mae_ns"] < 4.0, name
    # the local fit (neighbour average for dim MPPCs, solid angle on the PMT faces) has the
    # lowest MAE overall; with pile-up the global point-source model of solid-angle fails on
    # the inner face (the RMSE ranking of local-fit and neighbour-average near the core needs
    # more than 200 events to be stable: see docs/inpainting.md)
    best = scores["local-fit"]
    assert best["all"]["mae"] <= min(s["all"]["mae"] for s in scores.values())
    assert best["inner"]["rmse"] < 0.8 * scores["solid-angle"]["inner"]["rmse"]
    assert best["inner"]["rel68"] < scores["solid-angle"]["inner"]["rel68"]


def test_dead_list_marks_extra_sensors(sim_file_pileup_dead, tmp_path):
    listing = tmp_path / "dead.txt"
    listing.write_text("# extra dead channels\n100, 101\n4700\n\n")
    assert read_dead_list(listing).tolist() == [100, 101, 4700]
    out = tmp_path / "out.root"
    inpaint_file(sim_file_pileup_dead, out, NeighbourAverageInpainter(), dead_file=listing,
                 progress=False)
    after, _ = _arrays(out)
    before, _ = _arrays(sim_file_pileup_dead)
    inpainted = ak.to_numpy(after["inpainted"])
    assert inpainted[:, [100, 101, 4700]].all()
    assert np.array_equal(inpainted | False, inpainted)
    assert np.array_equal(inpainted[:, 102], ak.to_numpy(before["dead"])[:, 102])
    assert np.all(np.abs(ak.to_numpy(after["npho"])[:, [100, 101, 4700]]) < 9e9)


@pytest.mark.parametrize("text, fragment", [
    ("1, 2, x", "'x' is not a sensor id"),
    ("4760", "outside 0-4759"),
])
def test_dead_list_errors_name_the_file(tmp_path, text, fragment):
    listing = tmp_path / "bad.txt"
    listing.write_text(text)
    with pytest.raises(UserError, match=fragment) as info:
        read_dead_list(listing)
    assert "bad.txt" in str(info.value)
    with pytest.raises(UserError, match="cannot read"):
        read_dead_list(tmp_path / "missing.txt")


def test_option_errors(sim_file_pileup_dead, tmp_path):
    listing = tmp_path / "dead.txt"
    listing.write_text("1")
    with pytest.raises(UserError, match="not both"):
        inpaint_file(sim_file_pileup_dead, tmp_path / "o.root", "solid-angle", dead_file=listing,
                     dead_branch="dead", progress=False)
    with pytest.raises(UserError, match="no branch 'deadMask'.*npho"):
        inpaint_file(sim_file_pileup_dead, tmp_path / "o.root", "solid-angle",
                     dead_branch="deadMask", progress=False)
    with pytest.raises(UserError, match="unknown inpainter 'nope'"):
        inpaint_file(sim_file_pileup_dead, tmp_path / "o.root", "nope", progress=False)
    assert list(tmp_path.iterdir()) == [listing]


def test_failure_leaves_nothing_behind(sim_file_pileup_dead, tmp_path):
    class Broken:
        name = "broken"
        calls = 0

        def inpaint(self, batch):
            Broken.calls += 1
            if Broken.calls > 1:
                raise RuntimeError("boom")
            return NeighbourAverageInpainter().inpaint(batch)

    with pytest.raises(RuntimeError, match="boom"):
        inpaint_file(sim_file_pileup_dead, tmp_path / "o.root", Broken(), step_events=50,
                     progress=False)
    assert list(tmp_path.iterdir()) == []


def test_default_inpainter_is_documented_fallback():
    from xecreco.models.registry import available_inpainters

    expected = "default" if "default" in available_inpainters() else "local-fit"
    assert resolve_inpainter(None).name == expected


def test_cli_inpaint_and_score(sim_file_pileup_dead, tmp_path, capsys):
    out = tmp_path / "cli.root"
    code = main(["inpaint", str(sim_file_pileup_dead), "-o", str(out), "-m", "neighbour-average",
                 "--dead-branch", "dead", "--score", "--no-progress", "--step", "80"])
    assert code == 0
    captured = capsys.readouterr()
    assert "inpainted" in captured.err and "neighbour-average" in captured.err
    rows = {line.split()[0]: line.split() for line in captured.out.splitlines()[1:]}
    assert {"inner", "all"} <= set(rows)
    assert int(rows["all"][1]) == int(ak.sum(_arrays(sim_file_pileup_dead)[0]["dead"]))


def test_cli_errors_are_one_line(tmp_path, capsys):
    code = main(["inpaint", str(tmp_path / "missing.root"), "-o", str(tmp_path / "o.root"),
                 "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.root" in err[0]


def _tiny_file(path, n=4, relative=True):
    from xecreco.io.writer import RootWriter

    rng = np.random.default_rng(0)
    npho = rng.uniform(100, 1000, (n, 4760)).astype(np.float32)
    time = (rng.uniform(30, 40, (n, 4760)) * 1e-9).astype(np.float32)
    arrays = {"npho": npho, "time": time, "run": np.zeros(n, np.int32), "event": np.arange(n)}
    if relative:
        arrays["relative_time"] = (time - 29e-9).astype(np.float32)
    with RootWriter(path, tree="tree") as writer:
        writer.write(arrays)
    return npho, time


def test_relative_time_follows_the_repaired_time(tmp_path):
    source = tmp_path / "in.root"
    _tiny_file(source)
    listing = tmp_path / "dead.txt"
    listing.write_text("10\n2000\n")
    out = tmp_path / "out.root"
    inpaint_file(source, out, "neighbour-average", dead_file=listing, progress=False)
    after, _ = _arrays(out)
    time = ak.to_numpy(after["time"]).astype(np.float64)
    relative = ak.to_numpy(after["relative_time"]).astype(np.float64)
    np.testing.assert_allclose(time[:, [10, 2000]] - relative[:, [10, 2000]], 29e-9, atol=1e-15)
    assert ak.to_numpy(after["inpainted"]).sum() == 8


def test_empty_input_is_a_user_error(tmp_path):
    source = tmp_path / "empty.root"
    with uproot.recreate(source) as handle:
        handle.mktree("tree", {"npho": ("float32", (4760,)), "time": ("float32", (4760,))})
    with pytest.raises(UserError, match="no entries"):
        inpaint_file(source, tmp_path / "o.root", "solid-angle", progress=False)
    assert not (tmp_path / "o.root").exists()
