"""Calibration study: pulls and 68 % / 95 % coverage of R_<q>_err on synthetic predictions whose
errors are known: right when the errors are the true widths, wrong when they are scaled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xecreco.validation.api import STUDY_NAMES, validate
from xecreco.validation.data import load_predictions
from xecreco.validation.studies import calibration
from xecreco.validation.studies.base import Context
from xecreco.validation.synthetic import SyntheticReco, synthetic_predictions, write_prediction_file

N = 4000
TIME_SIGMA = 0.07  # ns
U_SIGMA = 0.25  # cm


def _arrays(seed=0):
    """Three reconstructions with the same Gaussian responses; their errors are the true widths
    (right), twice them (wide) or half of them (narrow); 'plain' writes none."""
    spec = SyntheticReco(energy_tail_k=50.0, time_sigma=TIME_SIGMA, pileup_energy_leak=0.0,
                         position_sigma=(U_SIGMA, 0.25, 0.5), with_errors=True)
    recos = {"right": spec, "wide": spec, "narrow": spec,
             "plain": SyntheticReco(energy_tail_k=50.0)}
    arrays = synthetic_predictions(N, recos, seed=seed)
    for name, factor in (("right", 1.0), ("wide", 2.0), ("narrow", 0.5)):
        failed = arrays[f"{name}_status"] != 0
        for q, sigma in (("time", TIME_SIGMA), ("u", U_SIGMA)):
            err = np.full(N, factor * sigma, np.float32)
            err[failed] = -1.0e10
            arrays[f"{name}_{q}_err"] = err
        energy_err = arrays[f"{name}_energy_err"]
        arrays[f"{name}_energy_err"] = np.where(failed, energy_err, factor * energy_err)
    return arrays


@pytest.fixture(scope="module")
def prediction_file(tmp_path_factory):
    return write_prediction_file(tmp_path_factory.mktemp("calib") / "pred.root", _arrays())


def test_pulls_and_coverage_follow_the_error_scale(prediction_file, tmp_path):
    data = load_predictions([prediction_file])
    res = calibration.run(data, Context(plot_dir=tmp_path / "plots", bootstrap_replicas=20,
                                        formats=("png",)))
    assert res.skipped is None
    assert set(res.summary) == {"right", "wide", "narrow"}  # 'plain' has no _err branch
    expected = {"right": (1.0, 0.6827, 0.9545), "wide": (0.5, 0.9545, 0.99994),
                "narrow": (2.0, 0.3829, 0.6827)}
    good = {s.name: int((s.status == 0).sum()) for s in data.series}
    for name, (width, cov68, cov95) in expected.items():
        assert set(res.summary[name]) == {"energy", "time", "u"}
        for q, st in res.summary[name].items():
            n = st["n"]
            assert n == good[name] < N  # failed events (status 3, fill values) left out
            assert st["std"]["value"] == pytest.approx(width, rel=0.05), (name, q)
            assert st["sigma68"]["value"] == pytest.approx(width, rel=0.08), (name, q)
            assert abs(st["mean"]["value"]) < 4 * width / np.sqrt(n), (name, q)
            tol = 4 * np.sqrt(cov68 * (1 - cov68) / n) + 1e-3
            assert st["coverage68"]["value"] == pytest.approx(cov68, abs=tol), (name, q)
            assert st["coverage95"]["value"] == pytest.approx(cov95, abs=0.02), (name, q)
            assert 0 < st["coverage68"]["error"] < 0.02
            bins = st["coverage_vs_error"]
            assert sum(b["n"] for b in bins) == n
    # constant time errors: one bin holds them all; the energy error varies, every quintile
    # of the right errors covers 68 %
    assert len(res.summary["right"]["time"]["coverage_vs_error"]) == 1
    right_bins = res.summary["right"]["energy"]["coverage_vs_error"]
    assert len(right_bins) == calibration.N_ERROR_BINS
    assert all(abs(b["coverage68"]["value"] - 0.6827) < 0.06 for b in right_bins)
    assert "calibration/right/time_pull" in res.histograms
    assert (tmp_path / "plots" / "calibration_pulls.png").is_file()
    table = res.tables[0]
    assert len(table.rows) == 9


def test_validate_runs_the_calibration_study(prediction_file, tmp_path):
    assert "calibration" in STUDY_NAMES
    summary = validate([prediction_file], tmp_path / "report", studies=["calibration"],
                       progress=False, bootstrap_replicas=10, formats=("png",))
    series = summary["studies"]["calibration"]["series"]
    assert series["narrow"]["time"]["coverage68"]["value"] < 0.45
    written = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert written["studies"]["calibration"]["series"]["right"]["u"]["n"] > 0.9 * N
    assert "Uncertainty calibration" in (tmp_path / "report" / "index.html").read_text()


def test_skipped_without_error_branches(tmp_path):
    arrays = synthetic_predictions(200, {"plain": SyntheticReco()}, seed=1)
    path = write_prediction_file(tmp_path / "plain.root", arrays)
    res = calibration.run(load_predictions([path]), Context(plot_dir=tmp_path / "plots"))
    assert res.skipped and "R_<quantity>_err" in res.skipped


def test_cli_study_choices_match_the_studies(prediction_file, tmp_path):
    from xecreco.cli.main import main
    from xecreco.cli.validate import STUDY_CHOICES

    assert set(STUDY_CHOICES) == set(STUDY_NAMES)
    code = main(["validate", str(prediction_file), "-o", str(tmp_path / "r"), "--study",
                 "calibration", "--format", "png", "--bootstrap", "5"])
    assert code == 0
    assert (tmp_path / "r" / "plots" / "calibration_pulls.png").is_file()
