"""Classical reconstruction: fit maths, dead-channel recovery, timing, calibration I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.geometry import R_INNER, design_geometry, solid_angle_fraction, uvw_to_xyz
from xecreco.io.batch import EventBatch
from xecreco.models.base import FILL_VALUE, Status
from xecreco.models.classical import (
    ClassicalCalibration,
    ClassicalReconstructor,
    default_calibration,
    load_calibration,
    save_calibration,
)
from xecreco.models.classical.energy import group_sums, recover_dead, sensor_groups
from xecreco.models.classical.fit import fit_timing, robust_centre
from xecreco.models.classical.position import (
    box_sum,
    correct_position,
    find_seed,
    fit_lsaf,
    inner_grid,
    weighted_mean_uv,
    window_data,
)
from xecreco.models.classical.timing import combine_times
from xecreco.models.registry import create_reconstructor


def point_source_npho(uvw, scale=2.0e7, seed=0):
    rng = np.random.default_rng(seed)
    mu = scale * solid_angle_fraction(uvw_to_xyz(uvw))
    return np.maximum(rng.poisson(mu * 0.15) / 0.15, 0.0)


def test_box_sum_matches_brute_force():
    rng = np.random.default_rng(1)
    image = rng.random((2, 7, 5))
    out = box_sum(image, 1)
    padded = np.pad(image, ((0, 0), (1, 1), (1, 1)))
    expected = sum(padded[:, i : i + 7, j : j + 5] for i in range(3) for j in range(3))
    np.testing.assert_allclose(out, expected, atol=1e-12)


def test_lsaf_recovers_point_sources():
    rng = np.random.default_rng(2)
    n = 120
    uvw = np.column_stack([rng.uniform(-25, 25, n), rng.uniform(-60, 60, n), rng.uniform(0.3, 25, n)])
    npho = point_source_npho(uvw, seed=3)
    valid = np.ones_like(npho, dtype=bool)
    valid[:, ::37] = False  # dead sensors are ignored by the fit
    grid = inner_grid(5)
    rows, cols = find_seed(npho, valid)
    data = window_data(npho, valid, rows, cols, grid, 0.05)
    start = weighted_mean_uv(data, grid)
    result = fit_lsaf(data, start, grid, 10)
    assert result.ok.all()
    err = np.abs(result.uvw - uvw)
    # photon statistics only: sub-millimetre in u, v; 1-2 mm in w (up to 25 cm deep)
    assert np.percentile(err[:, 0], 68) < 0.05 and np.percentile(err[:, 1], 68) < 0.05
    assert np.percentile(err[:, 2], 68) < 0.2
    assert np.max(err[:, :2]) < 0.5
    # the start (weighted mean) is much worse than the fit
    assert np.percentile(np.abs(start - uvw[:, :2]), 68) > 5 * np.percentile(err[:, :2], 68)


def test_depth_corrections_apply_tables():
    cal = ClassicalCalibration(w_table_cm=[0.0, 10.0], w_shift_cm=[-1.0, -3.0],
                               u_table_cm=[0.0, 10.0], u_offset_cm=[0.1, 0.1], u_incidence_cm=[0.0, -1.0],
                               v_table_cm=[0.0, 10.0], v_offset_cm=[0.0, 0.0], v_incidence_cm=[0.0, -2.0])
    uvw = np.array([[10.0, 0.0, 5.0], [2.0, 0.0, 0.5]])
    vertex = np.array([[0.0, 0.0, 0.0], [0.0, 3.0, 1.0]])
    out = correct_position(uvw, vertex, cal)
    depth = R_INNER + uvw[:, 2]
    # from the origin: tan_u = z / r, tan_v = 0
    np.testing.assert_allclose(out[0], [10.0 + 0.1 - 0.5 * 10.0 / depth[0], 0.0, 3.0])
    # vertex 3 cm up (+y, towards +v at v = 0) and 1 cm downstream; w clipped at 0
    np.testing.assert_allclose(out[1], [2.0 + 0.1 - 0.05 * 1.0 / depth[1], -0.1 * -3.0 / depth[1], 0.0])


def test_dead_channel_recovery_follows_solid_angle():
    uvw = np.array([[3.0, -10.0, 1.5], [-8.0, 20.0, 12.0]])
    xyz = uvw_to_xyz(uvw)
    truth = 2.0e7 * solid_angle_fraction(xyz)
    valid = np.ones_like(truth, dtype=bool)
    geometry = design_geometry()
    # the hottest inner sensor of each event and a few PMTs die
    hottest = truth[:, :4092].argmax(axis=1)
    dead = np.unique(np.r_[hottest, 4400, 4700])
    valid[:, dead] = False
    cal = ClassicalCalibration()
    out = recover_dead(np.where(valid, truth, 0.0), valid, xyz, np.array([True, True]), cal)
    for k in range(2):
        assert out[k, hottest[k]] == pytest.approx(truth[k, hottest[k]], rel=0.03)
    np.testing.assert_array_equal(out[valid], truth[valid])
    # without a point the plain neighbour mean is used: far from the truth at the peak
    plain = recover_dead(np.where(valid, truth, 0.0), valid, xyz, np.array([False, False]), cal)
    assert plain[0, hottest[0]] < 0.8 * truth[0, hottest[0]]
    assert geometry.face[4400] == 2


def test_sensor_groups_and_sums():
    groups = sensor_groups()
    counts = np.bincount(groups, minlength=7)
    # inner, outer coarse, outer centre (18 + 12), US, DS, top, bottom
    np.testing.assert_array_equal(counts, [4092, 216 - 12, 30, 144, 144, 73, 73])
    sums = group_sums(np.ones((2, 4760)))
    np.testing.assert_array_equal(sums[0], counts)


def test_timing_combination_rejects_outliers():
    rng = np.random.default_rng(5)
    n = 50
    light = uvw_to_xyz(np.column_stack([rng.uniform(-10, 10, n), rng.uniform(-30, 30, n),
                                        rng.uniform(1, 10, n)]))
    pos = design_geometry().position
    dist = np.linalg.norm(pos[None] - light[:, None], axis=2)
    t0 = rng.uniform(-3, 3, n)
    cal = ClassicalCalibration(light_speed_cm_ns=8.5, walk_log10_npho=[2, 6], walk_mppc_ns=[0.5, 0.5],
                               walk_pmt_ns=[0.5, 0.5], sigma_mppc_ns=[0.2, 0.2],
                               sigma_pmt_ns=[0.2, 0.2], time_min_npho=100.0, time_offset_ns=0.1)
    vertex = np.zeros((n, 3))
    tof = np.linalg.norm(light - vertex, axis=1) / 29.9792458
    times = (t0 + tof + 0.1)[:, None] + dist / 8.5 + 0.5 + rng.normal(0, 0.2, dist.shape)
    npho = np.full(times.shape, 1000.0)
    valid = rng.random(times.shape) < 0.3
    times[:, :40] += 30.0  # late outliers (e.g. pile-up) on 40 valid-ish sensors
    result = combine_times(times * 1e-9, valid, npho, light, light, vertex, cal)
    n_valid = valid.sum(axis=1)
    expected_sigma = 0.2 / np.sqrt(n_valid)
    assert np.all(np.abs(result.time_ns - t0) < 5 * expected_sigma + 1e-3)
    assert np.all(result.n_used <= n_valid - valid[:, :40].sum(axis=1))
    assert np.all(np.abs(result.chi2_ndf - 1.0) < 0.3)


def test_fit_timing_recovers_speed_and_walk():
    rng = np.random.default_rng(6)
    m = 40000
    dist = rng.uniform(2, 80, m)
    log_npho = rng.uniform(2, 5.5, m)
    is_mppc = rng.random(m) < 0.7
    walk = np.where(is_mppc, 1.2 - 0.2 * log_npho, 2.0)
    resid = dist / 9.0 + walk + rng.normal(0, 0.3, m)
    resid[:500] += 20.0  # outliers
    out = fit_timing(resid, dist, log_npho, is_mppc)
    assert out["light_speed_cm_ns"] == pytest.approx(9.0, rel=0.01)
    x = np.asarray(out["walk_log10_npho"])
    inside = (x > 2.1) & (x < 5.4)
    np.testing.assert_allclose(np.asarray(out["walk_mppc_ns"])[inside], 1.2 - 0.2 * x[inside], atol=0.06)
    np.testing.assert_allclose(np.asarray(out["sigma_pmt_ns"])[inside], 0.3, rtol=0.15)


def test_robust_centre_ignores_tail():
    rng = np.random.default_rng(7)
    values = np.r_[rng.normal(1.0, 0.02, 5000), rng.uniform(0.5, 0.9, 1500)]
    centre, sigma = robust_centre(values)
    assert centre == pytest.approx(1.0, abs=0.003)
    assert sigma == pytest.approx(0.02, rel=0.15)


def test_calibration_json_round_trip_and_errors(tmp_path):
    cal = ClassicalCalibration(time_offset_ns=1.25, group_weights=[1, 2, 3, 4, 5, 6, 7])
    path = save_calibration(cal, tmp_path / "c.json")
    assert load_calibration(path) == cal
    payload = json.loads(path.read_text())
    payload["bogus"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(payload))
    with pytest.raises(UserError, match="unknown calibration keys"):
        load_calibration(tmp_path / "bad.json")
    (tmp_path / "notjson.json").write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        load_calibration(tmp_path / "notjson.json")
    with pytest.raises(UserError, match="does not exist"):
        load_calibration(tmp_path / "missing.json")
    shipped = default_calibration()
    assert shipped.source != ClassicalCalibration().source, "shipped calibration file missing"


def _batch(npho, valid, time=None):
    n = len(npho)
    time = np.zeros_like(npho, dtype=np.float32) if time is None else time
    return EventBatch(npho=npho.astype(np.float32), time=time.astype(np.float32), valid_npho=valid,
                      valid_time=valid & (npho > 50), run=np.zeros(n, np.int64),
                      event=np.arange(n), entry=np.arange(n))


def test_invalid_and_dark_events_get_status_and_fill_values():
    npho = np.zeros((3, 4760))
    valid = np.zeros((3, 4760), dtype=bool)
    valid[1] = True  # valid but no light
    npho[2] = point_source_npho(np.array([[0.0, 0.0, 5.0]]))[0]
    valid[2] = True
    reco = create_reconstructor("classical")
    out = reco.reconstruct(_batch(npho, valid))
    assert list(out["status"][:2]) == [Status.NO_VALID_SENSORS, Status.TOO_LITTLE_LIGHT]
    assert out["energy"][0] == np.float32(FILL_VALUE)
    assert out["u"][1] == np.float32(FILL_VALUE)
    for key, values in out.items():
        assert np.all(np.isfinite(values)), key
        assert values.shape == (3,)
    empty = reco.reconstruct(_batch(np.zeros((0, 4760)), np.zeros((0, 4760), bool)))
    assert all(len(v) == 0 for v in empty.values())


def test_calibration_from_environment(tmp_path, monkeypatch):
    cal = ClassicalCalibration(time_offset_ns=3.5, source="env test")
    save_calibration(cal, tmp_path / "env.json")
    monkeypatch.setenv("XECRECO_CLASSICAL_CALIBRATION", str(tmp_path / "env.json"))
    reco = ClassicalReconstructor()
    assert reco.calibration.source == "env test"
    assert reco.checksum != ClassicalReconstructor(calibration=ClassicalCalibration()).checksum
