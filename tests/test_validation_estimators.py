"""Estimators of the validation suite recover known widths and report failures as failures."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xecreco.validation import estimators as est
from xecreco.validation.estimators.fits import _gauss_exp_tail_fwhm as gauss_exp_tail_fwhm
from xecreco.validation.report import jsonable
from xecreco.validation.studies.base import binned_resolution, wrap_degrees
from xecreco.validation.studies.pileup import roc_curve


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(12345)


def test_gauss_core_fit_recovers_width(rng):
    x = rng.normal(0.7, 2.5, 50_000)
    fit = est.gauss_core_fit(x)
    assert fit.status == "ok"
    sigma, err = fit.get("sigma")
    assert abs(sigma / 2.5 - 1) < 0.03
    assert abs(fit.values["mu"] - 0.7) < 0.05
    # the Hesse error matches the expected statistical precision within a factor 2
    assert 0.5 < err / (2.5 / math.sqrt(2 * 50_000 * 0.95)) < 3.0


def test_gauss_core_fit_ignores_tails(rng):
    x = np.concatenate([rng.normal(0.0, 1.0, 40_000), rng.normal(0.0, 8.0, 4_000)])
    fit = est.gauss_core_fit(x)
    assert fit.ok
    assert abs(fit.values["sigma"] - 1.0) < 0.05


@pytest.mark.parametrize("k", [0.6, 1.2, 2.0])
def test_gauss_exp_tail_fit_recovers_upper_sigma_and_fwhm(rng, k):
    sigma = 0.012
    x = est.sample_gauss_exp_tail(60_000, 1.0, sigma, k, rng)
    fit = est.gauss_exp_tail_fit(x)
    assert fit.status == "ok", fit.message
    assert abs(fit.values["sigma"] / sigma - 1) < 0.03
    assert abs(fit.values["k"] / k - 1) < 0.06
    assert abs(fit.values["mu"] - 1.0) < 0.1 * sigma
    true_fwhm = gauss_exp_tail_fwhm(1.0, sigma, k)
    fwhm, fwhm_err = fit.get("fwhm")
    assert abs(fwhm / true_fwhm - 1) < 0.03
    assert fwhm_err > 0


def test_gauss_exp_tail_sampler_matches_pdf(rng):
    x = est.sample_gauss_exp_tail(200_000, 0.0, 1.0, 0.8, rng)
    counts, edges = np.histogram(x, bins=60, range=(-6, 3))
    centers = 0.5 * (edges[1:] + edges[:-1])
    expected = est.gauss_exp_tail_pdf(centers, 0.0, 1.0, 0.8) * x.size * (edges[1] - edges[0])
    good = expected > 50
    pulls = (counts[good] - expected[good]) / np.sqrt(expected[good])
    assert np.mean(pulls**2) < 2.0
    # the pdf integrates to one
    grid = np.linspace(-60, 10, 200_001)
    integral = np.sum(est.gauss_exp_tail_pdf(grid, 0.0, 1.0, 0.8)) * (grid[1] - grid[0])
    assert abs(integral - 1) < 1e-4


def test_robust_widths_of_a_gaussian(rng):
    x = rng.normal(0.0, 3.0, 40_000)
    w = est.robust_widths(x, replicas=40)
    assert abs(w["sigma68"].value / 3.0 - 1) < 0.03
    assert abs(w["sigma_eff"].value / 3.0 - 1) < 0.03
    assert abs(w["iqr"].value / (1.34898 * 3.0) - 1) < 0.03
    # bootstrap error of sigma68 ~ 1.1 sigma / sqrt(n) for a Gaussian
    expected = 1.1 * 3.0 / math.sqrt(x.size)
    assert 0.4 < w["sigma68"].error / expected < 2.5


def test_sigma_eff_smaller_than_sigma68_for_skewed_data(rng):
    x = np.concatenate([rng.normal(0.0, 1.0, 20_000), -rng.exponential(5.0, 6_000)])
    assert est.sigma_eff(x).value < est.sigma68(x).value


def test_failed_fits_are_reported_as_failed(rng):
    for fit in (est.gauss_core_fit([1.0, 2.0, 3.0]), est.gauss_exp_tail_fit([1.0, 2.0, 3.0])):
        assert fit.status == "failed"
        assert fit.get("sigma") == (None, None)
        assert "entries" in fit.message
    flat = rng.uniform(-1.0, 1.0, 20_000)
    for fit in (est.gauss_core_fit(flat), est.gauss_exp_tail_fit(flat)):
        assert fit.status == "failed", fit.to_dict()
        assert fit.to_dict().get("values") is None
    assert est.gauss_core_fit(np.ones(100)).status == "failed"
    assert est.sigma68([1.0, 2.0]).value is None


def test_calorimeter_fit_recovers_terms(rng):
    e = np.linspace(0.015, 0.080, 12)
    a, b, c = 0.0015, 0.008, 0.0002
    res = est.calorimeter_resolution(e, a, b, c)
    err = 0.01 * res
    fit = est.calorimeter_fit(e, res * (1 + rng.normal(0, 0.002, e.size)), err)
    assert fit.ok
    assert abs(fit.values["b"] / b - 1) < 0.05
    assert abs(fit.values["a"] / a - 1) < 0.3
    few = est.calorimeter_fit(e[:3], res[:3], err[:3])
    assert few.status == "failed" and "at least 4" in few.message
    with_gaps = est.calorimeter_fit(e, [None] * 10 + list(res[10:]), err)
    assert with_gaps.status == "failed"


def test_binned_resolution_marks_empty_bins(rng):
    x = rng.uniform(0, 1, 5_000)
    r = rng.normal(0, 1 + x, 5_000)
    bins = binned_resolution(x, r, [0.0, 0.5, 1.0, 2.0], replicas=10)
    assert [b["status"] for b in bins][:2] == ["ok", "ok"]
    assert bins[2]["status"] == "empty" and bins[2]["sigma"]["value"] is None
    assert bins[1]["sigma"]["value"] > bins[0]["sigma"]["value"]


def test_roc_curve_and_auc(rng):
    label = rng.random(40_000) < 0.3
    score = rng.normal(0, 1, label.size) + 2.0 * label
    fake, eff, auc = roc_curve(score, label)
    # AUC of two unit Gaussians 2 apart: Phi(2 / sqrt(2))
    assert abs(auc - 0.5 * math.erfc(-1.0)) < 0.01
    assert fake[0] == 0 and eff[-1] == pytest.approx(1.0) and fake[-1] == pytest.approx(1.0)
    assert np.all(np.diff(fake) >= 0) and np.all(np.diff(eff) >= 0)


def test_wrap_and_json_cleaning():
    np.testing.assert_allclose(wrap_degrees([179.0 - (-179.0), -350.0, 10.0]), [-2.0, 10.0, 10.0])
    raw = {"a": float("nan"), "b": [np.float32(1.5), np.inf], "c": np.int64(3)}
    text = json.dumps(jsonable(raw), allow_nan=False)
    assert json.loads(text) == {"a": None, "b": [1.5, None], "c": 3}
