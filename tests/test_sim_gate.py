"""The readout gate (issue 15 item 1): closed-form arithmetic, signal samples unchanged, and
out-of-time pile-up light scaled by the gate fraction."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from scipy.integrate import quad

from xecreco.sim import SimConfig, simulate_events
from xecreco.sim.gate import gate_fraction, in_time_fraction, light_weight


def _integrated_profile(t0: float, g1: float, g2: float, tau: float) -> float:
    """Numerical integral over the gate of the profile exp(-(t - t0)/tau)/tau, t > t0."""
    lo = max(g1, t0)
    if lo >= g2:
        return 0.0
    value, _ = quad(lambda t: np.exp(-(t - t0) / tau) / tau, lo, g2)
    return value


@pytest.mark.parametrize("g1, g2, tau", [(-20.0, 100.0, 45.0), (-50.0, 60.0, 30.0)])
def test_gate_fraction_matches_the_integral_of_the_profile(g1, g2, tau):
    config = SimConfig(gate_start_ns=g1, gate_end_ns=g2, decay_time_ns=tau)
    t0 = np.array([-200.0, -60.0, g1 - 1.0, g1, -5.0, 0.0, 30.0, g2 - 1.0, g2, g2 + 0.5, 180.0])
    expected = [_integrated_profile(t, g1, g2, tau) for t in t0]
    np.testing.assert_allclose(gate_fraction(t0, config), expected, rtol=1e-9, atol=1e-12)
    # closed forms by hand: before the gate, inside it, after it
    f = gate_fraction(np.array([-200.0, 0.0, 180.0]), config)
    assert f[0] == pytest.approx(np.exp(-(g1 + 200) / tau) - np.exp(-(g2 + 200) / tau))
    assert f[1] == pytest.approx(1.0 - np.exp(-g2 / tau))
    assert f[2] == 0.0


def test_in_time_photon_keeps_its_light():
    config = SimConfig()
    assert in_time_fraction(config) == pytest.approx(1.0 - np.exp(-100.0 / 45.0))
    assert light_weight(np.zeros(3), config).tolist() == [1.0, 1.0, 1.0]
    off = SimConfig(readout_gate=False)
    assert light_weight(np.array([-150.0, 0.0, 150.0]), off).tolist() == [1.0, 1.0, 1.0]


def test_signal_only_samples_are_unchanged_by_the_gate():
    gate = simulate_events(120, SimConfig(chunk_events=60, dead_fraction=0.01), seed=17)
    full = simulate_events(120, SimConfig(chunk_events=60, dead_fraction=0.01,
                                          readout_gate=False), seed=17)
    assert set(gate) == set(full)
    for name in gate:
        a, b = gate[name], full[name]
        if isinstance(a, ak.Array):
            assert ak.to_list(a) == ak.to_list(b), name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)


def test_out_of_time_pileup_light_scales_with_the_gate_fraction():
    # one run without pile-up and two with the same pile-up photons, gate on and off: each
    # event's extra light (true photo-electrons) with the gate over that without is f(t0)/f(0)
    base = dict(chunk_events=200)
    n = 600
    clean = simulate_events(n, SimConfig(**base), seed=23)["nphe"].sum(axis=1, dtype=np.float64)
    pile = dict(base, pileup_rate_hz=2.5e6)
    on = simulate_events(n, SimConfig(**pile), seed=23)
    off = simulate_events(n, SimConfig(**pile, readout_gate=False), seed=23)
    counts = ak.to_numpy(on["nPileup"])
    one = counts == 1
    t0 = ak.to_numpy(ak.flatten(on["pileupTime"][one])) - on["timeTruth"][one]
    energy = ak.to_numpy(ak.flatten(on["pileupEnergy"][one]))
    stored = ak.to_numpy(ak.flatten(on["pileupGateFraction"][one]))
    np.testing.assert_allclose(stored, gate_fraction(t0, SimConfig()), atol=1e-5)  # float32
    assert np.all(ak.to_numpy(ak.flatten(off["pileupGateFraction"])) == 1.0)
    extra_on = on["nphe"][one].sum(axis=1, dtype=np.float64) - clean[one]
    extra_off = off["nphe"][one].sum(axis=1, dtype=np.float64) - clean[one]
    weight = light_weight(t0, SimConfig())
    bright = (energy > 0.004) & (extra_off > 5000)  # GeV; well above the counting noise
    assert bright.sum() > 60
    ratio = extra_on[bright] / extra_off[bright]
    assert np.median(np.abs(ratio - weight[bright])) < 0.02
    for selection in (t0 < -20.0, (t0 > -20.0) & (t0 < 100.0)):
        sel = bright & selection
        assert sel.sum() > 10
        assert np.mean(extra_on[sel]) / np.mean(extra_off[sel]) == pytest.approx(
            np.average(weight[sel], weights=extra_off[sel]), abs=0.02)
    late = bright & (t0 > 100.0)
    assert late.sum() > 5
    # after the gate: none of the photon's light (only the counting noise of the event remains)
    assert np.all(np.abs(extra_on[late]) < 0.01 * extra_off[late] + 2000)
