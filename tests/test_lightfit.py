"""The one point-source light fit (xecreco.lightfit): recovers S and (u, v, w) of a known source,
keeps its bounds, skips rows without enough sensors, and weights by the documented variance."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.geometry import Face, design_geometry, face_ids
from xecreco.lightfit import (
    NOISE_PHOTONS,
    PHOTON_EFFICIENCY,
    W_MAX_CM,
    W_MIN_CM,
    fit_point_source,
    light_weights,
    omega_of,
)

GEO = design_geometry()
INNER = face_ids(Face.INNER)
UVW = np.asarray(GEO.uvw)


def _patch(u, v, radius=9.0):
    """Inner MPPCs within ``radius`` cm of (u, v), padded to one length with -1."""
    rows = []
    for a, b in zip(u, v):
        d = np.hypot(UVW[INNER, 0] - a, UVW[INNER, 1] - b)
        rows.append(INNER[d < radius])
    width = max(len(r) for r in rows)
    return np.array([np.pad(r, (0, width - len(r)), constant_values=-1) for r in rows])


def test_variance_model():
    npho = np.array([[-4.0, 0.0, 100.0, 2.0e4]])
    usable = np.array([[True, True, True, False]])
    n, w = light_weights(npho, usable, rel_sigma=0.05)
    want = 1.0 / (np.maximum(npho, 0.0) / PHOTON_EFFICIENCY + (0.05 * npho) ** 2
                  + NOISE_PHOTONS**2)
    np.testing.assert_allclose(w[0, :3], want[0, :3], rtol=1e-12)
    assert w[0, 3] == 0.0 and n[0, 3] == 0.0 and n[0, 0] == -4.0


def test_recovers_a_known_point_source():
    truth = np.array([[2.0, -5.0, 1.5], [-10.0, 20.0, 6.0], [5.0, 40.0, 15.0]])
    sensors = _patch(truth[:, 0], truth[:, 1])
    scale = np.array([3.0e6, 1.0e6, 5.0e5])
    light = scale[:, None] * omega_of(truth, sensors)
    usable = sensors >= 0
    light, weight = light_weights(light, usable)
    start = truth + np.array([1.2, -1.0, 2.0])
    fit = fit_point_source(light, weight, sensors, start, iterations=40)
    assert fit.ok.all()
    np.testing.assert_allclose(fit.uvw, truth, atol=0.02)
    np.testing.assert_allclose(fit.scale, scale, rtol=2e-3)
    assert (fit.chi2 < 1e-3).all()
    # several starting depths: each row starts from the best one and still converges
    scanned = fit_point_source(light, weight, sensors, start, iterations=40,
                               start_depths=(0.7, 3.0, 10.0))
    np.testing.assert_allclose(scanned.uvw, truth, atol=0.02)


def test_bounds_and_rows_without_sensors():
    truth = np.array([[0.0, 0.0, 8.0], [3.0, 3.0, 2.0]])
    sensors = _patch(truth[:, 0], truth[:, 1])
    light, weight = light_weights(2.0e6 * omega_of(truth, sensors), sensors >= 0)
    lower = np.array([[-1.0, -1.0, 0.0], [-np.inf, -np.inf, -np.inf]])
    upper = np.array([[1.0, 1.0, 4.0], [np.inf, np.inf, np.inf]])
    start = np.array([[0.5, 0.5, 1.0], [3.0, 3.0, 2.5]])
    fit = fit_point_source(light, weight, sensors, start, lower=lower, upper=upper)
    # the source at w = 8 cm lies beyond the first row's bound: the fit stops at it
    assert 3.5 < fit.uvw[0, 2] <= 4.0 and np.all(np.abs(fit.uvw[0, :2]) <= 1.0)
    np.testing.assert_allclose(fit.uvw[1], truth[1], atol=0.02)
    start[0, 2] = 100.0
    few = fit_point_source(light[:, :3], weight[:, :3], sensors[:, :3], start, min_sensors=4)
    assert not few.ok.any() and (few.scale == 0).all()
    np.testing.assert_array_equal(few.uvw[:, :2], start[:, :2])
    assert few.uvw[0, 2] == W_MAX_CM  # the start's w is clipped into the xenon


@pytest.mark.parametrize("noise_seed", [1, 2])
def test_noisy_light_fits_within_a_few_mm(noise_seed):
    rng = np.random.default_rng(noise_seed)
    truth = np.column_stack([rng.uniform(-15, 15, 20), rng.uniform(-50, 50, 20),
                             rng.uniform(0.5, 10, 20)])
    sensors = _patch(truth[:, 0], truth[:, 1])
    expected = 2.0e6 * omega_of(truth, sensors)
    observed = rng.poisson(expected * PHOTON_EFFICIENCY) / PHOTON_EFFICIENCY
    light, weight = light_weights(observed, sensors >= 0)
    start = np.column_stack([truth[:, :2] + rng.normal(0, 1.0, (20, 2)), np.full(20, 2.0)])
    fit = fit_point_source(light, weight, sensors, start, iterations=30,
                           start_depths=(0.7, 3.0, 10.0))
    assert fit.ok.all()
    assert np.median(np.abs(fit.uvw - truth)[:, :2]) < 0.15
    assert np.median(np.abs(fit.uvw - truth)[:, 2]) < 0.4
