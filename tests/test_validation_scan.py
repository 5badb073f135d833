"""The energy-scan study on synthetic scan samples with a known scale error per line."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.validation.api import validate
from xecreco.validation.studies.scan import line_edges, line_index, scan_lines
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file

from validation_helpers import BAD, GOOD, close

LINES_MEV = (15.0, 30.0, 60.0, 90.0)
#: known median(E/E_true) - 1 of "good" at each line, %.
BIAS_PERCENT = (1.0, 0.5, -0.3, -0.8)
PER_LINE = 900


def _scan_arrays(seed: int = 11) -> dict:
    """Synthetic predictions whose true energies are LINES_MEV, "good" scaled by BIAS_PERCENT."""
    n = PER_LINE * len(LINES_MEV)
    arrays = synthetic_predictions(n, {"good": GOOD, "bad": BAD}, seed=seed)
    which = np.repeat(np.arange(len(LINES_MEV)), PER_LINE)
    old = arrays["energyTruth"]
    new = np.asarray(LINES_MEV)[which] / 1000.0
    for name, bias in (("good", np.asarray(BIAS_PERCENT)[which] / 100.0),
                       ("bad", np.zeros(n))):
        e = arrays[f"{name}_energy"].astype(np.float64)
        ok = np.abs(e) < 1e9
        e[ok] = e[ok] / old[ok] * new[ok] * (1.0 + bias[ok])
        arrays[f"{name}_energy"] = e.astype(np.float32)
    arrays["energyTruth"] = new
    arrays["nPileup"] = np.zeros(n, np.int32)  # the pile-up leak of "bad" would bias it
    return arrays


def test_scan_lines_detects_discrete_energies_only():
    rng = np.random.default_rng(0)
    e = np.repeat([17.6, 52.83, 83.0], 50).astype(np.float32).astype(np.float64)
    assert np.allclose(scan_lines(e), [17.6, 52.83, 83.0], atol=1e-4)
    assert scan_lines(rng.uniform(15, 60, 1000)) is None  # a continuous spectrum
    assert scan_lines(np.full(100, 52.83)) is None  # one line is no scan
    assert scan_lines(np.r_[np.full(100, 10.0), np.full(5, 20.0)]) is None  # a line too thin
    idx = line_index(np.array([17.6, 83.0, 40.0]), [17.6, 52.83, 83.0])
    assert idx.tolist() == [0, 2, -1]
    edges = line_edges([10.0, 20.0, 50.0])
    assert np.allclose(edges, [5.0, 15.0, 35.0, 65.0])


def test_scan_recovers_known_bias_resolution_and_depth_bins(tmp_path):
    path = write_prediction_file(tmp_path / "scan.root", _scan_arrays())
    summary = validate([path], tmp_path / "report", studies=["scan", "energy"], progress=False,
                       formats=("png",), bootstrap_replicas=20)
    study = summary["studies"]["scan"]
    assert np.allclose(study["overall"]["lines_MeV"], LINES_MEV, atol=1e-3)
    good = study["series"]["good"]
    for line, bias in zip(good["lines"], BIAS_PERCENT):
        assert line["n"] > 0.95 * PER_LINE
        median = line["all"]["energy"]["median_percent"]
        assert abs(median["value"] - bias) <= 4 * median["error"] + 0.05, (line["energy_MeV"],
                                                                         median)
        deep = line["w>=2cm"]["energy"]
        assert close(deep["sigma_upper_percent"], 100 * GOOD.energy_sigma_deep, rel=0.08)
        peak = deep["peak_percent"]  # the scale error moves the peak of the response too
        assert abs(peak["value"] - bias) <= 4 * peak["error"] + 0.1, (line["energy_MeV"], peak)
        assert close(line["all"]["position"]["u"]["sigma_mm"], 10 * GOOD.position_sigma[0],
                     rel=0.08)
    for line in study["series"]["bad"]["lines"]:  # no scale error: medians near 0
        median = line["all"]["energy"]["median_percent"]
        assert abs(median["value"]) <= 4 * median["error"] + 0.05
    bins = good["depth_bins"]["w"]
    assert sum(b["n"] for b in bins) == good["n_used"]
    filled = [b for b in bins if b["sigma"]["value"] is not None]
    assert len(filled) >= 4
    for b in filled:
        assert close(b["sigma"], 10 * GOOD.position_sigma[2], rel=0.1, pulls=4.0)
    # the energy study bins resolution vs energy at the lines
    vs_e = summary["studies"]["energy"]["series"]["good"]["vs_energy_MeV"]
    assert np.allclose([b["center"] for b in vs_e], LINES_MEV, atol=1e-3)
    assert abs(vs_e[0]["median"]["value"] - BIAS_PERCENT[0]) < 0.3
    assert "scan_energy" in " ".join(summary["outputs"]["plots"])


def test_scan_is_skipped_on_a_continuous_spectrum(tmp_path):
    path = write_prediction_file(tmp_path / "flat.root",
                                 synthetic_predictions(400, {"good": GOOD}, seed=3))
    summary = validate([path], tmp_path / "report", studies=["scan", "energy"], progress=False,
                       formats=("png",), bootstrap_replicas=5)
    assert "not an energy scan" in summary["skipped"]["scan"]
    with pytest.raises(UserError, match="no validation study can run"):
        validate([path], tmp_path / "report2", studies=["scan"], progress=False,
                 formats=("png",))
