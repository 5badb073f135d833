"""The worst-event gallery of ``xecreco validate --input SIM.root --worst N``: N images per
observable, the events with the largest |residual| (checked against a direct computation),
found in the input by (run, event), and an HTML page that references every image it has."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.validation.synthetic import (
    SyntheticReco,
    synthetic_predictions,
    write_prediction_file,
)

N_EVENTS = 120
WORST = 2
OBSERVABLES = ("energy", "u", "v", "w", "time")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A synthetic prediction file of one reconstruction and an input file holding the same
    (run, event) in a shuffled order (so input entry != prediction row)."""
    from xecreco.io.writer import RootWriter

    tmp = tmp_path_factory.mktemp("worst")
    spec = SyntheticReco(failure_fraction=0.05, pileup_separation=None)
    arrays = synthetic_predictions(N_EVENTS, {"fast": spec}, seed=11)
    pred = write_prediction_file(tmp / "pred.root", arrays)
    rng = np.random.default_rng(2)
    order = rng.permutation(N_EVENTS)
    n_in = N_EVENTS
    inp = {
        "npho": rng.exponential(200.0, (n_in, 4760)).astype(np.float32),
        "time": np.full((n_in, 4760), 1e-8, np.float32),
        "run": np.asarray(arrays["run"])[order],
        "event": np.asarray(arrays["event"])[order],
        "energyTruth": np.asarray(arrays["energyTruth"])[order],
        "uvwTruth": np.asarray(arrays["uvwTruth"])[order],
    }
    with RootWriter(tmp / "sim.root", tree="tree") as w:
        w.write(inp)
    return tmp, pred, tmp / "sim.root", arrays, order


def _expected_worst(arrays, observable: str, n: int) -> list[int]:
    """Prediction rows of the n largest |residual|, computed straight from the branches."""
    ok = np.asarray(arrays["fast_status"]) == 0
    reco = np.asarray(arrays[f"fast_{observable}"], dtype=np.float64)
    if observable == "energy":
        true = np.asarray(arrays["energyTruth"], dtype=np.float64)
        resid = (reco - true) / true
    elif observable == "time":
        resid = reco - np.asarray(arrays["timeTruth"], dtype=np.float64)
    else:
        resid = reco - np.asarray(arrays["uvwTruth"], dtype=np.float64)[:, "uvw".index(observable)]
    resid = np.where(ok, np.abs(resid), -1.0)
    return list(np.argsort(-resid, kind="stable")[:n])


def test_gallery_holds_the_worst_events_and_the_page_shows_them(files):
    from xecreco.validation.api import validate

    tmp, pred, sim, arrays, order = files
    out = tmp / "report"
    summary = validate([pred], out, studies=["energy"], progress=False, bootstrap_replicas=2,
                       formats=("png",), input_files=[sim], worst=WORST)
    worst = summary["worst_events"]["fast"]
    assert sorted(worst) == sorted(OBSERVABLES)
    entry_of_event = {int(e): i for i, e in enumerate(np.asarray(arrays["event"])[order])}
    for obs in OBSERVABLES:
        items = worst[obs]
        assert len(items) == WORST
        rows = _expected_worst(arrays, obs, WORST)
        assert [it["event"] for it in items] == [int(arrays["event"][r]) for r in rows], obs
        # found in the shuffled input at the entry holding the same (run, event)
        assert [it["entry"] for it in items] == [entry_of_event[it["event"]] for it in items]
        assert all(it["input_file"] == str(sim) for it in items)
        assert abs(items[0]["residual"]) >= abs(items[1]["residual"])
        r = rows[0]
        if obs == "energy":
            expected = 100 * (arrays["fast_energy"][r] - arrays["energyTruth"][r]) \
                / arrays["energyTruth"][r]
        elif obs == "time":
            expected = 1000 * (arrays["fast_time"][r] - arrays["timeTruth"][r])
        else:
            expected = 10 * (arrays[f"fast_{obs}"][r] - arrays["uvwTruth"][r]["uvw".index(obs)])
        assert items[0]["residual"] == pytest.approx(float(expected), rel=1e-4, abs=1e-3)
    # every image the page references exists, and every gallery image is on the page
    page = (out / "index.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', page)
    assert all((out / s).is_file() for s in sources)
    gallery = sorted(p.name for p in (out / "plots").glob("worst_*.png"))
    assert len(gallery) == WORST * len(OBSERVABLES)
    assert sorted(Path(s).name for s in sources if "worst_" in s) == gallery
    images = [it["image"] for obs in OBSERVABLES for it in worst[obs]]
    assert sorted(Path(i).name for i in images) == gallery
    # each caption names the event, the truth, the reco and the residual
    first = worst["u"][0]
    caption = re.search(rf'{re.escape(first["image"])}".*?<figcaption>(.*?)</figcaption>', page,
                        re.S).group(1)
    assert f"run {first['run']}, event {first['event']}" in caption
    assert f"residual {first['residual']:+.2f} mm" in caption
    assert f"true {first['truth']:.2f} mm" in caption and f"fast {first['reco']:.2f}" in caption
    assert json.loads((out / "summary.json").read_text())["worst_events"]["fast"]["u"][0] == first


def test_gallery_is_drawn_in_every_plot_format(files, tmp_path):
    from xecreco.validation.api import validate

    _, pred, sim, _, _ = files
    out = tmp_path / "report"
    summary = validate([pred], out, studies=["energy"], progress=False, bootstrap_replicas=2,
                       formats=("svg", "png"), input_files=[sim], worst=1)
    images = [Path(it["image"]) for obs in OBSERVABLES
              for it in summary["worst_events"]["fast"][obs]]
    assert len(images) == len(OBSERVABLES) and all(i.suffix == ".svg" for i in images)
    for image in images:
        assert (out / image).is_file() and (out / image.with_suffix(".png")).is_file()
    page = (out / "index.html").read_text()
    assert f'<img src="{images[0]}"' in page
    assert f'<a href="{images[0].with_suffix(".png")}">PNG</a>' in page


def test_worst_needs_the_input_and_events_that_are_in_it(files, tmp_path):
    from xecreco.cli.main import main
    from xecreco.io.writer import RootWriter
    from xecreco.validation.api import validate

    _, pred, _, _, _ = files
    with pytest.raises(UserError, match="--input SIM.root"):
        validate([pred], tmp_path / "r", studies=["energy"], progress=False, worst=2)
    other = tmp_path / "other.root"
    with RootWriter(other, tree="tree") as w:
        w.write({"npho": np.zeros((3, 4760), np.float32), "time": np.zeros((3, 4760), np.float32),
                 "run": np.full(3, 99, np.int32), "event": np.arange(3, dtype=np.int64)})
    with pytest.raises(UserError, match="none of the .* events .* is in the input"):
        validate([pred], tmp_path / "r", studies=["energy"], progress=False,
                 bootstrap_replicas=2, input_files=[other], worst=1)
    assert main(["validate", str(pred), "-o", str(tmp_path / "r2"), "--worst", "1",
                 "--no-progress"]) == 2


def test_branch_with_input_but_no_worst_is_a_user_error(files, tmp_path, capsys):
    from xecreco.cli.main import main

    _, pred, sim, _, _ = files
    rc = main(["validate", str(pred), "-o", str(tmp_path / "r"), "--input", str(sim),
               "--branch", "npho=nphoton", "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "--branch" in err and "--worst N" in err
    assert not (tmp_path / "r").exists()  # refused before any work
