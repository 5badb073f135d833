"""The validation report recovers the known resolutions of synthetic prediction files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import uproot

from xecreco.validation import validate
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file

from validation_helpers import BAD, GOOD, close

N_EVENTS = 6000


@pytest.fixture(scope="module")
def pred_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pred") / "pred.root"
    write_prediction_file(path, synthetic_predictions(N_EVENTS, {"good": GOOD, "bad": BAD}, seed=3))
    return path


@pytest.fixture(scope="module")
def report(pred_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    # PNG only here (PDF output is checked in test_validation_cli.py): drawing dominates the time
    summary = validate([pred_file], out, progress=False, bootstrap_replicas=15, formats=("png",))
    return out, summary


def test_report_recovers_energy_resolution_by_depth(report):
    _, summary = report
    good = summary["studies"]["energy"]["series"]["good"]["by_depth"]
    assert close(good["w<2cm"]["sigma_upper_percent"], 1.5)
    assert close(good["w>=2cm"]["sigma_upper_percent"], 1.0)
    bad = summary["studies"]["energy"]["series"]["bad"]["by_depth"]
    # "bad" adds the pile-up energy to its own: the resolution comes from pile-up-free events
    assert close(bad["w>=2cm"]["sigma_upper_percent"], 2.5)
    assert bad["w>=2cm"]["status"] in ("ok", "poor")
    notes = " ".join(summary["studies"]["energy"]["notes"])
    assert "without simulated pile-up" in notes
    n_used = summary["studies"]["energy"]["series"]["good"]["n_used"]
    assert n_used < summary["efficiency"]["good"]["n_ok"]  # pile-up events left out
    fwhm = good["w>=2cm"]["fwhm_percent"]["value"]
    assert 2.0 < fwhm < 3.0  # Gaussian-like upper side: FWHM ~ 2.35-2.6 sigma
    # the calorimeter fit ran on the energy scan and is reported with a status
    cal = summary["studies"]["energy"]["series"]["good"]["calorimeter_fit"]
    assert cal["status"] in ("ok", "poor", "failed")
    assert len(summary["studies"]["energy"]["series"]["good"]["vs_energy_MeV"]) == 9


def test_report_recovers_position_time_angle(report):
    _, summary = report
    pos = summary["studies"]["position"]["series"]["good"]
    assert close(pos["u"]["all"]["sigma_mm"], 2.5)
    assert close(pos["v"]["all"]["sigma_mm"], 2.0)
    assert close(pos["w"]["all"]["sigma_mm"], 5.0)
    assert pos["distance3d"]["r68_mm"]["value"] > 5.0
    timing = summary["studies"]["timing"]["series"]
    assert close(timing["good"]["sigma_ps"], 60.0)
    assert close(timing["bad"]["sigma_ps"], 120.0)
    ang = summary["studies"]["angle"]["series"]["good"]
    assert close(ang["theta"]["sigma_mrad"], 1000 * np.pi / 180)
    assert close(ang["phi"]["sigma_mrad"], 1000 * np.pi / 180)


def test_efficiency_and_status_selection(report):
    _, summary = report
    eff = summary["efficiency"]
    assert eff["bad"]["efficiency"] == 1.0
    assert 0.015 < 1 - eff["good"]["efficiency"] < 0.025
    # failed events (status 3, fill values) never enter the resolutions
    assert summary["studies"]["timing"]["series"]["good"]["n_used"] == eff["good"]["n_ok"]


def test_pileup_roc_and_tails(report):
    _, summary = report
    pu = summary["studies"]["pileup"]["series"]
    assert abs(pu["good"]["identification"]["auc"] - 0.921) < 0.02
    assert "identification" not in pu["bad"]
    # 'bad' leaks in-time pile-up energy into its energy: larger tail with pile-up
    assert pu["bad"]["with_pileup"]["tail_fraction"]["value"] > \
        pu["bad"]["no_pileup"]["tail_fraction"]["value"] + 0.05


def test_outputs_exist_and_are_consistent(report):
    out, summary = report
    html = (out / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', html)
    assert refs, "the report references no file"
    for ref in refs:
        assert (out / ref).is_file(), f"index.html references missing {ref}"
    assert "MEG II" in html and "good" in html and "bad" in html
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    assert len(pngs) >= 12
    assert not list((out / "plots").glob("*.pdf"))
    text = (out / "summary.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["n_events"] == N_EVENTS
    assert not list(out.glob(".xecreco-validate-*")), "temporary folder left behind"


def test_histograms_root_reads_back(report):
    out, _ = report
    with uproot.open(out / "histograms.root") as f:
        keys = {k.split(";")[0] for k in f.keys()}
        assert "energy/good/residual_all" in keys
        h = f["timing/good/residual"].to_hist()
    assert h.sum().value > 0.9 * N_EVENTS
    assert h.axes[0].label.endswith("(ps)")
