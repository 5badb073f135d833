"""Physics checks of the fast simulation (numbers, not smoke)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import brentq

from xecreco.geometry import R_INNER, design_geometry, xyz_to_uvw
from xecreco.sim import SimConfig, simulate_events, simulate_file
from xecreco.sim.gate import light_weight
from xecreco.sim.pileup import draw_pileup_energies, mean_pileup_photons
from xecreco.sim.shower import draw_depths_x0, draw_lateral_radii, simulate_showers
from xecreco.sim.sources import (
    attenuation_length_cm,
    draw_conversions,
    draw_directions,
    draw_energies,
    draw_vertices,
)
from xecreco.sim.timing import draw_sensor_times, expected_time_spread_ns, expected_walk_ns
from xecreco.sim.volume import entry_distance, inside_active


@pytest.fixture(scope="module")
def signal_events():
    """400 signal events in memory (no pile-up, no dead channels)."""
    return simulate_events(400, SimConfig(), seed=99)


def _truncated_exponential_mle(depths: np.ndarray, cut: float) -> float:
    """Mean-length MLE of an exponential truncated at ``cut`` given samples below it."""
    mean = depths.mean()

    def score(lam):
        return lam - cut / np.expm1(cut / lam) - mean

    return brentq(score, 0.1, 100.0)


@pytest.mark.parametrize("energy", [17.6, 52.83])
def test_conversion_length_matches_configured_attenuation(energy):
    config = SimConfig()
    rng = np.random.default_rng(3)
    n = 200_000
    e = np.full(n, energy)
    vertex = draw_vertices(n, config, rng)
    direction = draw_directions(n, config, rng)
    point, depth, converted = draw_conversions(e, vertex, direction, config, rng)
    cut = 20.0
    entry = vertex + entry_distance(vertex, direction)[:, None] * direction
    long_path = inside_active(entry + cut * direction) & inside_active(entry + 1e-3 * direction)
    sample = depth[converted & long_path & (depth < cut)]
    fitted = _truncated_exponential_mle(sample, cut)
    expected = float(attenuation_length_cm(np.array([energy]), config)[0])
    assert fitted == pytest.approx(expected, rel=0.05)
    # the first-interaction point lies on the photon line, at the drawn depth past r = R_INNER
    r_entry = np.hypot(entry[:, 0], entry[:, 1])
    np.testing.assert_allclose(r_entry, R_INNER, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(point - entry, axis=1), depth, rtol=1e-9)


def test_about_31_percent_of_signal_photons_convert_within_2cm(signal_events):
    w = signal_events["uvwTruth"][:, 2]
    assert np.all(w > 0)
    assert 0.24 < np.mean(w < 2.0) < 0.38


def test_attenuation_length_table_and_high_energy_limit():
    config = SimConfig()
    lam = attenuation_length_cm(np.array([9.0, 52.8, 82.9, 1e5]), config)
    np.testing.assert_allclose(lam[:3], [8.9, 5.4, 4.85], rtol=1e-9)
    assert lam[3] == pytest.approx(config.attenuation_high_energy_cm, rel=1e-3)


def _mean_profile_peak(t: np.ndarray) -> float:
    hist, edges = np.histogram(t.ravel(), bins=np.arange(0.0, 8.0, 0.1))
    smooth = np.convolve(hist, np.ones(5) / 5, mode="same")
    i = int(np.argmax(smooth))
    return 0.5 * (edges[i] + edges[i + 1])


def test_longitudinal_profile_maximum_where_the_parametrisation_puts_it():
    rng = np.random.default_rng(5)
    for energy in (52.83, 82.9):
        expected = np.log(energy / 11.7) - 0.5
        steady = SimConfig(profile_ln_tmax_spread=0.0, profile_b_rel_spread=0.0)
        t, t_max = draw_depths_x0(np.full(4000, energy), 100, steady, rng)
        np.testing.assert_allclose(t_max, expected, rtol=1e-12)
        assert _mean_profile_peak(t) == pytest.approx(expected, abs=0.15)
        # with event-by-event fluctuations the drawn maxima scatter by ~25% in ln(t_max)
        t, t_max = draw_depths_x0(np.full(4000, energy), 100, SimConfig(), rng)
        assert np.std(np.log(t_max)) == pytest.approx(0.25, rel=0.1)
        assert np.median(t_max) == pytest.approx(expected, rel=0.05)


def test_lateral_profile_contains_90_percent_within_moliere_radius():
    config = SimConfig()
    rng = np.random.default_rng(8)
    t, t_max = draw_depths_x0(np.full(2000, 52.83), 160, config, rng)
    r = draw_lateral_radii(t, t_max, config, rng)
    assert np.mean(r < config.moliere_radius_cm) == pytest.approx(0.9, abs=0.025)
    # the core widens with depth: deposits beyond the maximum are spread further out
    late = t > t_max[:, None] + 3.0
    early = t < t_max[:, None]
    assert np.median(r[late]) > 1.2 * np.median(r[early])


def test_showers_deposit_nearly_all_energy_when_contained():
    config = SimConfig()
    rng = np.random.default_rng(8)
    n = 300
    # photons entering head-on at the centre of the inner face, converting 10 cm deep
    direction = np.tile([-1.0, 0.0, 0.0], (n, 1))
    conversion = np.tile([-(R_INNER + 10.0), 0.0, 0.0], (n, 1))
    showers = simulate_showers(conversion, direction, np.full(n, 10.0), np.full(n, 52.83), config,
                               rng)
    assert np.all(showers.visible_mev <= 52.83 + 1e-9)
    assert np.mean(showers.visible_mev) / 52.83 > 0.93
    np.testing.assert_allclose(showers.energy.sum(axis=1), showers.visible_mev, rtol=1e-9)
    # energy-weighted centroid depth = conversion + mean shower depth a / b X0 (~3 X0 at 52.8 MeV)
    depth = np.einsum("nc,nc->n", showers.energy, -showers.centroid[..., 0] - R_INNER - 10.0)
    depth /= showers.visible_mev
    assert np.mean(depth) == pytest.approx(3.0 * config.radiation_length_cm, rel=0.15)


def test_total_photoelectrons_of_signal_photons(signal_events):
    total = signal_events["nphe"].sum(axis=1)
    assert 1.2e5 < total.mean() < 1.9e5
    # shallow events concentrate light on the nearest MPPCs (1e4-1e5 photons on the hottest)
    w = signal_events["uvwTruth"][:, 2]
    hottest = signal_events["npho"][:, :4092].max(axis=1)
    assert 8e3 < np.median(hottest[w < 1.0]) < 3e5
    assert np.median(hottest[w < 1.0]) > 2.0 * np.median(hottest[(w > 5) & (w < 10)])


def test_energy_response_has_fluctuations_and_low_tail(signal_events):
    total = signal_events["nphe"].sum(axis=1).astype(np.float64)
    w = signal_events["uvwTruth"][:, 2]
    deep = total[(w > 3) & (w < 20)]
    spread = np.std(deep) / np.mean(deep)
    assert spread > 0.01  # far above the 0.3% photostatistics: shower and calibration effects
    visible = signal_events["energyVisible"] / signal_events["energyTruth"]
    assert 0.9 < np.median(visible) <= 1.0
    assert np.mean(visible < 0.9) > 0.01  # leakage / back-splash low tail


def test_truth_branches_are_mutually_consistent(signal_events):
    ev = signal_events
    np.testing.assert_allclose(xyz_to_uvw(ev["xyzTruth"]), ev["uvwTruth"], atol=1e-9)
    emi = ev["xyzTruth"] - ev["xyzVTX"]
    emi /= np.linalg.norm(emi, axis=1, keepdims=True)
    np.testing.assert_allclose(ev["emiVec"], emi, atol=1e-9)
    theta, phi = ev["emiAng"][:, 0], ev["emiAng"][:, 1]
    np.testing.assert_allclose(np.cos(np.radians(theta)), ev["emiVec"][:, 2], atol=1e-9)
    np.testing.assert_allclose(np.degrees(np.arctan2(emi[:, 1], -emi[:, 0])), phi, atol=1e-9)
    assert np.all(np.abs(np.cos(np.radians(theta))) <= 0.35 + 1e-9)
    assert np.all(np.abs(phi) <= 60.0 + 1e-9)
    np.testing.assert_allclose(ev["energyTruth"], 0.05283)
    assert np.all(ev["energyVisible"] <= ev["energyTruth"] + 1e-12)
    # vertices on the slanted target ellipse
    vtx = ev["xyzVTX"]
    slant = np.radians(15.0)
    along = vtx[:, 2] / np.cos(slant)
    np.testing.assert_allclose(vtx[:, 0], along * np.sin(slant), atol=1e-9)
    assert np.all((along / 13.5) ** 2 + (vtx[:, 1] / 3.3) ** 2 <= 1 + 1e-9)
    assert np.all(inside_active(ev["xyzTruth"]))


def test_sensor_time_spread_matches_configuration():
    config = SimConfig()
    rng = np.random.default_rng(2)
    n = 40_000
    is_mppc = np.array([True, True, False, False])
    npe = np.array([80.0, 2000.0, 80.0, 2000.0])
    arrival = np.full((n, 4), 12.5)
    times = draw_sensor_times(arrival, np.broadcast_to(npe, (n, 4)), is_mppc, config, rng)
    residual = times - arrival - expected_walk_ns(npe, config)
    np.testing.assert_allclose(residual.mean(axis=0), 0.0, atol=0.01)
    np.testing.assert_allclose(residual.std(axis=0), expected_time_spread_ns(npe, is_mppc, config),
                               rtol=0.03)
    # closed form of physics.md: tau sqrt(f) / sqrt(N) for bright sensors
    assert expected_time_spread_ns(np.array([1e4]), np.array([True]), config)[0] == pytest.approx(
        np.sqrt((45 * np.sqrt(0.03) / 100) ** 2 + 0.15**2 / 300 + 0.04**2), rel=0.01)


def test_sensor_time_residuals_of_full_events_have_the_configured_spread():
    # point-like showers: residuals after TOF and propagation are the sensor-time model alone
    config = SimConfig(radiation_length_cm=0.001, moliere_radius_cm=0.001, axis_tilt_rad=0.0,
                       rayleigh_length_cm=0.0, efficiency_spread=0.0, calibration_error=0.0)
    ev = simulate_events(60, config, seed=4)
    geom = design_geometry()
    valid = ev["time"] < 1.0
    tof = np.linalg.norm(ev["xyzTruth"] - ev["xyzVTX"], axis=1) / config.c_cm_per_ns
    dist = np.linalg.norm(geom.position[None, :, :] - ev["xyzTruth"][:, None, :], axis=2)
    expected = ev["timeTruth"][:, None] + tof[:, None] + dist / config.light_speed_cm_per_ns
    npe = ev["nphe"].astype(np.float64)
    mppc = np.broadcast_to(geom.is_mppc, npe.shape)
    residual = ev["time"] * 1e9 - expected - expected_walk_ns(npe, config)
    pulls = residual[valid] / expected_time_spread_ns(npe[valid], mppc[valid], config)
    assert valid.sum() > 5000
    assert abs(np.mean(pulls)) < 0.05
    assert np.std(pulls) == pytest.approx(1.0, rel=0.1)


def test_pileup_overlay_adds_the_right_number_of_photons():
    base = SimConfig()
    pile = SimConfig(pileup_rate_hz=2.5e6)
    assert mean_pileup_photons(pile) == pytest.approx(1.0)
    clean = simulate_events(300, base, seed=7)
    mixed = simulate_events(300, pile, seed=7)
    # the signal photons are identical; only the overlay differs
    np.testing.assert_array_equal(clean["xyzTruth"], mixed["xyzTruth"])
    counts = np.asarray(mixed["nPileup"])
    assert counts.mean() == pytest.approx(1.0, abs=0.15)
    energies = np.asarray(np.concatenate([np.asarray(x) for x in mixed["pileupEnergy"].tolist()]))
    assert len(energies) == counts.sum()
    added = mixed["nphe"].sum(axis=1).astype(np.float64) - clean["nphe"].sum(axis=1)
    pe_per_gev = np.mean(clean["nphe"].sum(axis=1) / clean["energyTruth"])
    # the readout gate keeps the fraction f(t0) / f(0) of each photon's light (test_sim_gate)
    t0 = np.concatenate([np.asarray(x) for x in mixed["pileupTime"].tolist()]) - np.repeat(
        mixed["timeTruth"], counts)
    expected = np.sum(energies * light_weight(t0, pile)) * pe_per_gev
    assert added.sum() == pytest.approx(expected, rel=0.12)
    # events without pile-up differ only by the photon-counting noise of the two draws
    photostat = np.sqrt(2.0 * clean["nphe"].sum(axis=1).mean())
    assert np.std(added[counts == 0]) < 1.5 * photostat
    assert abs(np.mean(added[counts == 0])) < 0.5 * photostat


def test_pileup_energy_spectrum_falls():
    config = SimConfig()
    e = draw_pileup_energies(100_000, config, np.random.default_rng(1))
    assert e.min() >= config.pileup_min_mev and e.max() <= config.pileup_max_mev
    counts, _ = np.histogram(e, bins=[1, 5, 10, 20, 30, 40, 52.83])
    assert np.all(np.diff(counts) < 0)


def test_sources():
    rng = np.random.default_rng(0)
    flat_config = SimConfig(source="flat", energy_min_mev=15, energy_max_mev=60)
    flat = draw_energies(50_000, flat_config, rng)
    assert flat.min() >= 15 and flat.max() <= 60
    assert np.histogram(flat, bins=9, range=(15, 60))[0].std() / 5555 < 0.05
    cex = draw_energies(10_000, SimConfig(source="cex"), rng)
    assert set(np.unique(cex)) == {54.9, 82.9}
    assert np.mean(cex == 54.9) == pytest.approx(0.5, abs=0.03)
    assert set(np.unique(draw_energies(100, SimConfig(source="li"), rng))) == {17.6}
    listed = draw_energies(1000, SimConfig(source="list", energies_mev=[20.0, 40.0]), rng)
    assert set(np.unique(listed)) == {20.0, 40.0}


def test_saturation_and_npho_convention():
    from xecreco.sim.response import Calibration, measure_npho

    config = SimConfig(noise_pe=0.0)
    is_mppc = np.array([True, True, False])
    calibration = Calibration(true_efficiency=np.array([0.2, 0.2, 0.16]),
                              calibrated_efficiency=np.array([0.2, 0.25, 0.16]))
    nphe = np.array([[100.0, 30_000.0, 30_000.0]])
    rng = np.random.default_rng(0)
    corrected = measure_npho(nphe, calibration, is_mppc, config, rng)
    # saturation undone: npho = nphe / calibrated efficiency
    np.testing.assert_allclose(corrected[0], [500.0, 120_000.0, 187_500.0], rtol=1e-6)
    raw = measure_npho(nphe, calibration, is_mppc, config.replace(correct_saturation=False), rng)
    fired = 55692 * -np.expm1(-30_000.0 / 55692)
    np.testing.assert_allclose(raw[0, 1], fired / 0.25, rtol=1e-6)  # MPPC saturates
    np.testing.assert_allclose(raw[0, 2], 187_500.0, rtol=1e-9)  # PMT does not
    noisy = measure_npho(np.zeros((20_000, 1)), calibration, is_mppc[:1], SimConfig(), rng)
    assert np.std(noisy * 0.2) == pytest.approx(2.0, rel=0.05)  # 2 pe baseline noise


@pytest.mark.slow
def test_classical_reconstruction_on_the_simulation_is_within_2x_of_meg(tmp_path):
    """Realism: the classical reconstruction, calibrated on this simulation, lands within ~2x of
    the published MEG II resolutions (physics.md section 7)."""
    import uproot

    from xecreco.models.classical.fit import fit_calibration
    from xecreco.models.classical.reconstructor import ClassicalReconstructor
    from xecreco.models.pipelines.predict import predict_files

    calib_file, test_file = tmp_path / "calib.root", tmp_path / "test.root"
    simulate_file(calib_file, 3000, SimConfig(), seed=1, jobs=2, progress=False)
    simulate_file(test_file, 2000, SimConfig(), seed=2, jobs=2, progress=False)
    calibration = fit_calibration([str(calib_file)], progress=False)
    pred = tmp_path / "pred.root"
    predict_files([str(test_file)], pred, [ClassicalReconstructor(calibration)], progress=False)
    t = uproot.open(pred)["reco"].arrays(library="np")
    uvw = t["uvwTruth"]
    fid = ((t["classical_status"] == 0) & (np.abs(uvw[:, 0]) < 23.9) & (np.abs(uvw[:, 1]) < 67.9))

    def sigma68(x):
        low, high = np.percentile(x, [16, 84])
        return 0.5 * (high - low)

    energy = t["classical_energy"] / t["energyTruth"] - 1.0
    assert 0.005 < sigma68(energy[fid & (uvw[:, 2] >= 2)]) < 0.02 * 2
    assert 0.005 < sigma68(energy[fid & (uvw[:, 2] < 2)]) < 0.02 * 2
    for i, name, meg_mm in ((0, "u", 2.5), (1, "v", 2.5), (2, "w", 5.0)):
        resolution_mm = 10 * sigma68(t[f"classical_{name}"][fid] - uvw[fid, i])
        assert 0.5 * meg_mm < resolution_mm < 2.5 * meg_mm, name
    timing_ps = 1e3 * sigma68(t["classical_time"][fid] - t["timeTruth"][fid])
    assert 25 < timing_ps < 160


def test_light_model_matches_a_direct_sum_over_centroids():
    """The vectorised light collection (multipole from its own distances, exact solid angles for
    near pairs in one call per block) equals a direct per-centroid sum with the geometry's
    solid_angle_fraction, to float32 precision."""
    from xecreco.geometry import incidence_cosine, solid_angle_fraction
    from xecreco.geometry.solid_angle import multipole_fraction
    from xecreco.sim.light import EXACT_WITHIN_SIZES, LightModel

    config = SimConfig(near_sensors=4760, rayleigh_length_cm=0.0)
    rng = np.random.default_rng(8)
    n = 6
    energy = np.full(n, 52.83)
    vertex = draw_vertices(n, config, rng)
    direction = draw_directions(n, config, rng)
    point, depth, _ = draw_conversions(energy, vertex, direction, config, rng)
    showers = simulate_showers(point, direction, depth, energy, config, rng)
    photons = showers.energy * config.light_yield_per_mev
    model = LightModel(config)
    got, _ = model.collect(showers.centroid, photons, showers.delay_ns)
    geometry = model.geometry
    for e in range(n):
        omega = solid_angle_fraction(showers.centroid[e], geometry,
                                     exact_within=EXACT_WITHIN_SIZES)
        cos = np.clip(incidence_cosine(showers.centroid[e], geometry), 0.0, 1.0)
        ang = model.angular_response(cos.astype(np.float32), model.is_mppc).astype(np.float64)
        expected = np.sum(photons[e][:, None] * omega * ang, axis=0)
        lit = expected > 1.0
        np.testing.assert_allclose(got[e][lit], expected[lit], rtol=2e-4)
    # the multipole helper is the geometry's far-field expansion
    pts = showers.centroid[0]
    delta = pts[:, None, :] - geometry.position[None, :, :]
    h = np.einsum("pkj,kj->pk", delta, geometry.normal).astype(np.float32)
    d2 = np.sum(delta * delta, axis=-1).astype(np.float32)
    far = multipole_fraction(h, d2, np.arange(4760)[None, :], geometry)
    np.testing.assert_allclose(far, solid_angle_fraction(pts, geometry, exact_within=0.0,
                                                         dtype=np.float32), rtol=1e-3,
                               atol=1e-9)  # float32 distances computed two ways
