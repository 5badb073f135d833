"""NormalizationSpec and TargetScaling: formulas, inverses, references, features, serialisation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS, EventBatch
from xecreco.normalization import NPHO_SCHEMES, NormalizationSpec, TargetScaling

NPHO = np.array([0.0, 1.0, 10.0, 333.0, 1000.0, 2.5e4, 1.5e5])


def _batch(npho, time_s, valid_npho=None, valid_time=None):
    npho = np.asarray(npho, np.float32)
    n = npho.shape[0]
    valid_npho = np.ones_like(npho, bool) if valid_npho is None else valid_npho
    valid_time = valid_npho.copy() if valid_time is None else valid_time
    return EventBatch(npho=npho, time=np.asarray(time_s, np.float32), valid_npho=valid_npho,
                      valid_time=valid_time, run=np.zeros(n, np.int64), event=np.arange(n),
                      entry=np.arange(n))


@pytest.mark.parametrize("scheme, expected", [
    ("log1p", lambda x: np.log1p(x)),
    ("sqrt", lambda x: np.sqrt(x)),
    ("anscombe", lambda x: 2 * (np.sqrt(x + 0.375) - np.sqrt(0.375))),
    ("linear", lambda x: x),
])
def test_npho_forward_matches_formula_and_inverts(scheme, expected):
    spec = NormalizationSpec(npho_scheme=scheme, npho_scale=500.0)
    y64 = spec.npho_forward(NPHO)
    np.testing.assert_allclose(y64, expected(NPHO / 500.0), rtol=1e-12, atol=0)
    assert y64[0] == 0.0 and np.all(np.diff(y64) > 0)
    np.testing.assert_allclose(spec.npho_inverse(y64), NPHO, rtol=1e-10, atol=1e-9)
    y32 = spec.npho_forward(NPHO.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, rtol=1e-6, atol=3e-7)
    np.testing.assert_allclose(spec.npho_inverse(y32), NPHO, rtol=2e-5, atol=1e-3)


def test_default_log1p_values():
    spec = NormalizationSpec()
    assert spec.npho_scheme == "log1p" and spec.npho_scale == 1000.0
    assert spec.npho_forward(np.array([1000.0]))[0] == pytest.approx(math.log(2.0), abs=1e-12)


def test_negative_npho_is_clipped_and_inverse_never_below_min():
    spec = NormalizationSpec(npho_scheme="sqrt")
    assert spec.npho_forward(np.array([-5.0]))[0] == 0.0
    assert spec.npho_inverse(np.array([-0.3]))[0] == 0.0
    shifted = NormalizationSpec(npho_scheme="log1p", npho_min=-50.0)
    y = shifted.npho_forward(np.array([-80.0, -20.0]))
    np.testing.assert_allclose(y, np.log1p(np.array([-50.0, -20.0]) / 1000.0))
    np.testing.assert_allclose(shifted.npho_inverse(y), [-50.0, -20.0])


def test_time_forward_inverse():
    spec = NormalizationSpec(time_scale_ns=4.0, time_shift_ns=2.0)
    t = np.array([[100.0, 104.0, 130.0]])
    ref = np.array([[98.0]])
    y = spec.time_forward(t, ref)
    np.testing.assert_allclose(y, [[0.0, 1.0, 7.5]])
    np.testing.assert_allclose(spec.time_inverse(y, ref), t)


def test_time_reference_mean_of_k_earliest_lit():
    spec = NormalizationSpec(reference_k=3, reference_npho_threshold=300.0)
    npho = np.full((1, N_SENSORS), 1000.0)
    time = np.full((1, N_SENSORS), 50e-9)
    time[0, :5] = [10e-9, 11e-9, 12e-9, 13e-9, 14e-9]
    npho[0, 0] = 100.0  # earliest but below the threshold: not used
    time[0, 7] = 1e-9
    valid_time = np.ones((1, N_SENSORS), bool)
    valid_time[0, 7] = False  # invalid time: not used
    ref = spec.time_reference_ns(_batch(npho, time, valid_time=valid_time))
    assert ref.dtype == np.float64
    assert ref[0] == pytest.approx(12.0, abs=1e-5)


def _pileup_event():
    """One event: 40 bright signal sensors at 20-21.9 ns, 30 dimmer sensors lit by a pile-up
    photon at 5 ns (earlier), the rest dark (valid, late, below the threshold)."""
    npho = np.full((1, N_SENSORS), 100.0)
    time = np.full((1, N_SENSORS), 90e-9)
    npho[0, :40] = 5000.0 + np.arange(40)
    time[0, :40] = (20.0 + 0.05 * np.arange(40)) * 1e-9
    npho[0, 100:130] = 800.0
    time[0, 100:130] = 5e-9
    return npho, time


def test_pileup_window_keeps_an_earlier_pileup_photon_out_of_the_reference():
    npho, time = _pileup_event()
    batch = _batch(npho, time)
    earliest = NormalizationSpec(reference_k=3).time_reference_ns(batch)
    windowed = NormalizationSpec(reference_k=3, reference_window_ns=4.0).time_reference_ns(batch)
    assert earliest[0] == pytest.approx(5.0, abs=1e-4)  # set by the pile-up photon
    assert windowed[0] == pytest.approx(20.05, abs=1e-4)  # the three earliest signal sensors
    # without pile-up the window changes nothing
    npho_clean, time_clean = npho.copy(), time.copy()
    time_clean[0, 100:130] = 90e-9
    npho_clean[0, 100:130] = 100.0
    both = [NormalizationSpec(reference_window_ns=w).time_reference_ns(
        _batch(npho_clean, time_clean)) for w in (None, 4.0)]
    assert both[0][0] == both[1][0]


def test_brightest_median_time_numpy_and_torch():
    torch = pytest.importorskip("torch")
    from xecreco.earliest import brightest_median_time

    rng = np.random.default_rng(5)
    npho = rng.uniform(0, 1e4, (6, 200)).astype(np.float32)
    time = rng.uniform(0, 1e-7, (6, 200)).astype(np.float32)
    valid = rng.random((6, 200)) > 0.3
    valid[4] = False
    valid[4, :3] = True  # fewer valid sensors than k
    valid[5] = False  # none
    got = brightest_median_time(npho, time, valid, 30)
    for row in range(4):
        ids = np.flatnonzero(valid[row])
        top = ids[np.argsort(-npho[row, ids])[:30]]
        assert got[row] == pytest.approx(np.median(time[row, top].astype(np.float64)))
    assert got[4] == pytest.approx(np.median(time[4, :3].astype(np.float64)))
    assert got[5] == -np.inf
    tensor = brightest_median_time(torch.from_numpy(npho), torch.from_numpy(time),
                                   torch.from_numpy(valid), 30).numpy()
    np.testing.assert_allclose(tensor[:5], got[:5], rtol=1e-6)
    assert tensor[5] == -np.inf


def test_pileup_window_torch_reference_matches_numpy():
    torch = pytest.importorskip("torch")
    npho, time = _pileup_event()
    npho = np.repeat(npho, 2, axis=0).astype(np.float32)
    time = np.repeat(time, 2, axis=0).astype(np.float32)
    time[1, 100:130] = 90e-9  # second event without the pile-up
    valid = np.ones_like(npho, bool)
    spec = NormalizationSpec(reference_window_ns=4.0)
    want = spec.time_reference_ns(_batch(npho, time))
    _, got = spec.raw_features(torch.from_numpy(npho), torch.from_numpy(time),
                               torch.from_numpy(valid), torch.from_numpy(valid))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_time_reference_fallbacks():
    spec = NormalizationSpec(reference_k=10, reference_npho_threshold=300.0)
    npho = np.full((3, N_SENSORS), 100.0)  # nothing above threshold
    time = np.full((3, N_SENSORS), 80e-9)
    time[:, :2] = 20e-9
    npho[1, 3] = 400.0
    time[1, 3] = 60e-9  # only one lit sensor: its time is the reference
    valid_time = np.ones((3, N_SENSORS), bool)
    valid_time[2] = False  # no valid time at all: reference 0
    ref = spec.time_reference_ns(_batch(npho, time, valid_time=valid_time))
    np.testing.assert_allclose(ref, [(2 * 20 + 8 * 80) / 10, 60.0, 0.0], atol=1e-4)


@pytest.mark.parametrize("sentinels", [(0.0, 0.0), (-1.0, -5.0)])
def test_features_values_and_sentinels(sentinels):
    spec = NormalizationSpec(npho_sentinel=sentinels[0], time_sentinel=sentinels[1], reference_k=1)
    rng = np.random.default_rng(0)
    npho = rng.exponential(500.0, (4, N_SENSORS)).astype(np.float32) + 300
    time = (1e-7 + rng.normal(0, 3e-9, (4, N_SENSORS))).astype(np.float32)
    valid_npho = rng.random((4, N_SENSORS)) > 0.05
    valid_time = valid_npho & (rng.random((4, N_SENSORS)) > 0.2)
    features = spec.features(_batch(npho, time, valid_npho, valid_time))
    assert features.shape == (4, N_SENSORS, 2) and features.dtype == np.float32
    assert np.all(features[..., 0][~valid_npho] == sentinels[0])
    assert np.all(features[..., 1][~valid_time] == sentinels[1])
    np.testing.assert_allclose(features[..., 0][valid_npho],
                               np.log1p(npho[valid_npho] / 1000.0), rtol=1e-5, atol=3e-7)
    earliest = np.where(valid_time, time.astype(np.float64), np.inf).min(axis=1) * 1e9
    expected_t = (time.astype(np.float64) * 1e9 - earliest[:, None]) / 5.0
    np.testing.assert_allclose(features[..., 1][valid_time], expected_t[valid_time], atol=1e-4)
    assert features[..., 1][valid_time].min() == pytest.approx(0.0, abs=1e-4)
    out = np.full((4, N_SENSORS, 2), np.nan, np.float32)
    assert spec.features(_batch(npho, time, valid_npho, valid_time), out=out) is out
    np.testing.assert_array_equal(out, features)


def test_spec_serialisation_round_trip():
    spec = NormalizationSpec(npho_scheme="anscombe", npho_scale=20.0, time_scale_ns=2.5,
                             reference_k=5, npho_sentinel=-1.0)
    again = NormalizationSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert NormalizationSpec.from_dict({}) == NormalizationSpec()


@pytest.mark.parametrize("bad, match", [
    ({"npho_scheme": "log10"}, "npho_scheme 'log10' is unknown"),
    ({"npho_scale": 0.0}, "npho_scale must be a positive"),
    ({"time_scale_ns": float("nan")}, "time_scale_ns must be a positive"),
    ({"npho_scheme": "sqrt", "npho_min": -1.0}, "outside the domain of sqrt"),
    ({"npho_min": -1000.0}, "outside the domain of log1p"),
    ({"reference_k": 0}, "reference_k"),
    ({"reference_window_ns": -1.0}, "reference_window_ns must be a positive"),
    ({"reference_anchor_k": 0}, "reference_anchor_k"),
    ({"version": 99}, "version 99 is not supported"),
    ({"npho_scal": 3}, "unknown normalisation key"),
])
def test_spec_rejects_bad_values(bad, match):
    with pytest.raises(UserError, match=match):
        NormalizationSpec.from_dict(bad)


def test_every_scheme_is_tested():
    assert set(NPHO_SCHEMES) == {"log1p", "sqrt", "anscombe", "linear"}


def test_target_scaling_fit_and_round_trip():
    rng = np.random.default_rng(2)
    targets = {"energy": rng.normal(0.05, 0.01, 1000),
               "direction": rng.normal(size=(1000, 3)) * [1, 2, 3]}
    scaling = TargetScaling.fit(targets)
    z = scaling.standardize("energy", targets["energy"])
    assert abs(z.mean()) < 1e-9 and z.std() == pytest.approx(1.0)
    zd = scaling.standardize("direction", targets["direction"])
    np.testing.assert_allclose(zd.std(axis=0), 1.0)
    np.testing.assert_allclose(scaling.destandardize("direction", zd), targets["direction"])
    again = TargetScaling.from_dict(json.loads(json.dumps(scaling.to_dict())))
    assert again.names == ("direction", "energy")
    np.testing.assert_allclose(again.destandardize("energy", z), targets["energy"])
    z32 = scaling.standardize("energy", targets["energy"].astype(np.float32))
    assert z32.dtype == np.float32


def test_target_scaling_torch_and_errors():
    torch = pytest.importorskip("torch")
    scaling = TargetScaling(mean={"u": 2.0}, scale={"u": 4.0})
    t = torch.tensor([2.0, 6.0])
    out = scaling.standardize("u", t)
    assert isinstance(out, torch.Tensor) and out.tolist() == [0.0, 1.0]
    assert scaling.destandardize("u", out).tolist() == [2.0, 6.0]
    with pytest.raises(UserError, match="no target 'v'"):
        scaling.standardize("v", t)
    with pytest.raises(UserError, match="must be positive"):
        TargetScaling(mean={"u": 0.0}, scale={"u": 0.0})
    assert TargetScaling.fit({"c": np.ones(5)}).scale["c"] == 1.0


def _raw_values(n=24, seed=5):
    """Raw (npho, time) float32 with every kind of invalid value and low-light sensors."""
    rng = np.random.default_rng(seed)
    npho = (rng.exponential(300.0, (n, N_SENSORS)) - 5.0).astype(np.float32)
    time = rng.normal(1.0e-7, 3.0e-9, (n, N_SENSORS)).astype(np.float32)
    for values in (npho, time):
        for bad in (np.nan, np.inf, -np.inf, 1.0e10, 9.5e9, -9.5e9):
            values[rng.random(values.shape) < 0.004] = bad
    time[npho < 50] = 1.0e10
    time[3] = 1.0e10  # an event without a valid time: reference 0
    return npho, time


def test_validity_masks_rule_numpy_and_torch():
    """One validity rule: |x| < 9e9 (NaN, inf, sentinels out), time also needs npho >= 50;
    numpy and torch give the same masks, and ``dead`` removes sensors."""
    torch = pytest.importorskip("torch")
    from xecreco.normalization import validity_masks

    npho, time = _raw_values()
    valid_npho, valid_time = validity_masks(npho, time, 50.0)
    want_npho = np.isfinite(npho) & (np.abs(npho.astype(np.float64)) < 9.0e9)
    want_time = want_npho & np.isfinite(time) & (np.abs(time.astype(np.float64)) < 9.0e9)
    want_time &= npho >= 50.0
    np.testing.assert_array_equal(valid_npho, want_npho)
    np.testing.assert_array_equal(valid_time, want_time)
    assert not valid_npho.all() and not (valid_npho == valid_time).all()
    dead = np.zeros(npho.shape, bool)
    dead[:, 7] = True
    t_npho, t_time = validity_masks(torch.from_numpy(npho), torch.from_numpy(time), 50.0,
                                    dead=torch.from_numpy(dead))
    np.testing.assert_array_equal(t_npho.numpy(), want_npho & ~dead)
    np.testing.assert_array_equal(t_time.numpy(), want_time & ~dead)


@pytest.mark.parametrize("scheme", NPHO_SCHEMES)
def test_raw_features_torch_matches_numpy(scheme):
    """The torch path (what the ONNX graphs run) gives the numpy features and time reference
    within float32 rounding, sentinels included, for every npho scheme."""
    torch = pytest.importorskip("torch")
    from xecreco.normalization import validity_masks

    spec = NormalizationSpec(npho_scheme=scheme, npho_sentinel=-1.0, time_sentinel=7.0,
                             time_shift_ns=2.0)
    npho, time = _raw_values()
    valid_npho, valid_time = validity_masks(npho, time, 50.0)
    batch = _batch(np.where(valid_npho, npho, 0.0), np.where(valid_time, time, 0.0),
                   valid_npho, valid_time)
    want, want_ref = spec.features_and_reference(batch)
    got, got_ref = spec.raw_features(torch.from_numpy(npho), torch.from_numpy(time),
                                     torch.from_numpy(valid_npho), torch.from_numpy(valid_time))
    assert got.shape == want.shape and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(got_ref.numpy(), want_ref, rtol=1e-6)
    assert want_ref[3] == 0.0 and float(got_ref[3]) == 0.0
    np.testing.assert_array_equal(got.numpy()[..., 0][~valid_npho], -1.0)
    np.testing.assert_array_equal(got.numpy()[..., 1][~valid_time], 7.0)
