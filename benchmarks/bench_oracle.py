"""Information floors of the time and position resolutions, beside what the reconstructions
reach (issue 14: is <= 0.8x classical physically reachable?).

Time (record ``oracle_time_floor``):

The simulation times each sensor by its constant-fraction photon on top of the light arrival
time, with a spread sigma_i that depends only on its photo-electrons
(:func:`xecreco.sim.timing.expected_time_spread_ns`: Erlang order statistic, single-photon spread,
electronics). An estimator that knew every sensor's arrival time and walk exactly (the shower's
whole light pattern) would combine the sensor times with variance 1 / sum_i 1/sigma_i^2 over the
timed sensors: the floor no reconstruction from these times can beat (the Cramer-Rao bound of a
common shift with Gaussian errors). Per event the floor follows from the file's ``nphe``; its
median over events is reported next to the core sigma of ``classical`` and the bundled
``default`` on the same fresh 52.83 MeV photons (seed 3030), and the 0.8x classical target.

The gap between floor and reconstruction is what the unknown shower geometry costs (where the
light was emitted, and when); a floor above 0.8x classical would make the target unreachable.

Position (record ``oracle_position_floor``): the first-interaction (FI) point is where the shower
starts; its light comes from the shower's centroids (physics.md section 3). Four oracles, each
given more of the truth, bound where the information lies (core sigma of u, v, w in mm, fresh
52.83 MeV showers of the default simulation, seeds 3031-3033):

* ``centroid``: the shower's exact energy-weighted centroid, moved back along the (known) photon
  direction by the median centroid depth: the light centroid alone;
* ``moments``: an MLP given the exact centroid, its second moments and the photon direction (what
  a smooth light pattern far from the shower encodes);
* ``centroids``: an MLP given every light centroid of the shower exactly (the whole emission
  pattern, no photo-statistics): what the light would tell if it could be inverted completely;
* ``known_shape``: a light fit that knows the shower's pattern, the true channel efficiencies and
  the light model and fits only a shift and a scale to photo-electrons drawn as the simulation
  draws them (Poisson, baseline noise): the floor of photo-statistics and noise alone.

The classical and ``default`` core sigmas come from the time record's events (seed 3030).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, peak_rss_mb  # noqa: E402

SEED = 3030


def run(quick: bool = False) -> list[dict]:
    import uproot

    from xecreco.geometry import design_geometry
    from xecreco.models import available_reconstructors
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import SimConfig, simulate_file
    from xecreco.sim.timing import expected_time_spread_ns
    from xecreco.validation.estimators import gauss_core_fit

    n_events = 300 if quick else 3000
    config = SimConfig()
    recos = ["classical"] + (["default"] if "default" in available_reconstructors() else [])
    is_mppc = np.asarray(design_geometry().is_mppc)
    with tempfile.TemporaryDirectory(prefix="bench_oracle_") as folder:
        source = Path(folder) / "signal.root"
        pred = Path(folder) / "pred.root"
        simulate_file(source, n_events, seed=SEED, progress=False)
        predict_files([source], pred, recos, progress=False)
        with uproot.open(source) as handle:
            nphe = handle["tree"]["nphe"].array(library="np")
        with uproot.open(pred) as handle:
            reco = handle["reco"].arrays(library="np")
    sigma = expected_time_spread_ns(np.asarray(nphe, np.float64), is_mppc[None, :], config)
    timed = np.asarray(nphe) >= config.time_threshold_pe
    floor_ps = 1000.0 / np.sqrt(np.where(timed, 1.0 / sigma**2, 0.0).sum(axis=1))
    record = {"name": "oracle_time_floor", "events": int(len(floor_ps)),
              "floor_median_ps": float(np.median(floor_ps)),
              "floor_p90_ps": float(np.percentile(floor_ps, 90))}
    for name in recos:
        ok = reco[f"{name}_status"] == 0
        residual = 1000.0 * (reco[f"{name}_time"][ok] - reco["timeTruth"][ok])
        record[f"{name}_sigma_ps"] = gauss_core_fit(residual).get("sigma")[0]
    if record.get("classical_sigma_ps"):
        record["target_0p8_classical_ps"] = 0.8 * record["classical_sigma_ps"]
    reco_sigma_mm = {}
    truth_uvw = np.asarray(reco["uvwTruth"], dtype=np.float64)
    for name in recos:
        ok = reco[f"{name}_status"] == 0
        for k, axis in enumerate("uvw"):
            residual = 10.0 * (reco[f"{name}_{axis}"][ok] - truth_uvw[ok, k])
            reco_sigma_mm[f"{name}_{axis}_mm"] = gauss_core_fit(residual).get("sigma")[0]
    record["peak_rss_mb"] = peak_rss_mb()
    position = position_floor(quick, reco_sigma_mm)
    position["peak_rss_mb"] = peak_rss_mb()
    return [record, position]


# --- position: how much of the first-interaction point the shower's light can carry ----------

#: showers for the learned oracles (training) and their test showers; a fixed seed each
POSITION_SEEDS = (3031, 3032, 3033)
#: events of the known-shape light fit (the slow oracle: six light evaluations per iteration)
SHAPE_FIT_EVENTS = 1000


def _showers(n: int, seed: int, config):
    """``n`` converted signal photons of ``config`` with their shower centroids: (FI xyz (N, 3),
    centroid xyz (N, C, 3), centroid energy MeV (N, C), delay ns (N, C), photon direction
    (N, 3)); showers that deposit nothing in the active volume are dropped."""
    from xecreco.sim.runner import _converted_photons
    from xecreco.sim.shower import simulate_showers
    from xecreco.sim.sources import draw_energies

    rng = np.random.default_rng(seed)
    photons, _ = _converted_photons(n, lambda m: draw_energies(m, config, rng), config, rng)
    showers = simulate_showers(photons.conversion, photons.direction, photons.depth_cm,
                               photons.energy_mev, config, rng)
    keep = showers.energy.sum(axis=1) > 0
    return (photons.conversion[keep], showers.centroid[keep], showers.energy[keep],
            showers.delay_ns[keep], photons.direction[keep])


def _local_frame(fi, centroid, energy, direction):
    """The showers in local (u, v, w) cm: (FI (N, 3), centroids (N, C, 3), centroid energy
    fractions (N, C), energy-weighted centroid (N, 3), photon direction (N, 3))."""
    from xecreco.geometry import xyz_to_uvw

    fi_uvw, cen_uvw = xyz_to_uvw(fi), xyz_to_uvw(centroid)
    frac = energy / energy.sum(axis=1, keepdims=True)
    mean = np.einsum("nc,nci->ni", frac, cen_uvw)
    return fi_uvw, cen_uvw, frac, mean, xyz_to_uvw(fi + direction) - fi_uvw


def shower_features(fi, centroid, energy, direction, level: str):
    """Inputs and targets of a learned oracle, in local (u, v, w) cm.

    ``level`` ``"moments"``: the shower's energy-weighted centroid, its 3 x 3 second moments and
    the photon direction (what a smooth light pattern far from the shower encodes);
    ``"centroids"``: the direction, the centroid and every light centroid's offset from it and
    energy fraction (the whole shower as the simulation emits its light). Target: the first
    interaction point minus the energy-weighted centroid. Returns float32 (inputs, targets).
    """
    fi_uvw, cen_uvw, frac, mean, dir_uvw = _local_frame(fi, centroid, energy, direction)
    offset = cen_uvw - mean[:, None, :]
    if level == "moments":
        second = np.einsum("nc,nci,ncj->nij", frac, offset, offset)
        upper = np.triu_indices(3)
        inputs = np.concatenate([second[:, upper[0], upper[1]], dir_uvw, mean], axis=1)
    elif level == "centroids":
        inputs = np.concatenate([offset.reshape(len(fi), -1), frac, dir_uvw, mean], axis=1)
    else:
        raise ValueError(f"unknown oracle level {level!r}")
    return inputs.astype(np.float32), (fi_uvw - mean).astype(np.float32)


def learned_oracle_residuals(train, test, steps: int, seed: int = 0) -> np.ndarray:
    """Fit an MLP (2 x 256 GELU, smooth L1) on ``train`` = (inputs, targets) and return its
    residuals (N, 3) cm on ``test``: an estimator that sees the given shower information
    without noise."""
    import torch

    torch.manual_seed(seed)
    x, y = (torch.from_numpy(a) for a in train)
    x_test, y_test = (torch.from_numpy(a) for a in test)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x, x_test = (x - mean) / scale, (x_test - mean) / scale
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 256), torch.nn.GELU(),
                              torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 3))
    optimizer = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 2e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        index = torch.randint(0, len(x), (512,), generator=generator)
        loss = torch.nn.functional.smooth_l1_loss(net(x[index]), y[index], beta=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        return (net(x_test) - y_test).numpy()


def centroid_projection_residuals(train, test) -> np.ndarray:
    """Residuals (N, 3) cm of FI = centroid - L * direction (uvw), L the training showers'
    median centroid distance along the photon direction: the shower's light centroid alone."""
    def parts(sample):
        fi, centroid, energy, _, direction = sample
        fi_uvw, _, _, mean, dir_uvw = _local_frame(fi, centroid, energy, direction)
        return fi_uvw, mean, dir_uvw

    fi, mean, d = parts(train)
    length = float(np.median(np.sum((mean - fi) * d, axis=1) / np.sum(d * d, axis=1)))
    fi, mean, d = parts(test)
    return mean - length * d - fi


def known_shape_fit(sample, config, rng, start_spread_cm: float = 0.3,
                    iterations: int = 6) -> np.ndarray:
    """Shifts (N, 3) cm, xyz, fitted to the light of the showers of ``sample`` by an oracle that
    knows each shower's centroid pattern, the true channel efficiencies and the light model:
    photo-electrons drawn as the simulation draws them (Poisson, baseline noise) are fitted by
    Gauss-Newton in (scale, shift) with weights 1 / (mu + noise^2), from a start displaced by
    ``start_spread_cm`` per coordinate. The shift is the oracle's position error: the floor
    that photo-statistics and noise alone set."""
    from xecreco.sim.response import draw_photoelectrons
    from xecreco.sim.runner import _detector

    detector = _detector(config)
    _, centroid, energy, delay, _ = sample
    photons = energy * config.light_yield_per_mev
    efficiency = detector.calibration.true_efficiency

    def expected(shift):
        pe, _ = detector.light.collect(centroid + shift[:, None, :], photons, delay)
        return pe * efficiency

    mu = expected(np.zeros((len(centroid), 3)))
    data = draw_photoelectrons(mu, config, rng) + config.noise_pe * rng.standard_normal(mu.shape)
    shift = rng.normal(0.0, start_spread_cm, (len(centroid), 3))
    scale = np.ones(len(centroid))
    step_cm = 0.01
    for _ in range(iterations):
        mu = expected(shift)
        slopes = [(expected(shift + step_cm * np.eye(3)[k]) - mu) / step_cm for k in range(3)]
        design = np.stack([mu] + [scale[:, None] * s for s in slopes], axis=-1)
        weight = 1.0 / (np.maximum(mu, 0.0) + config.noise_pe**2)
        normal = np.einsum("nsi,ns,nsj->nij", design, weight, design)
        gradient = np.einsum("nsi,ns,ns->ni", design, weight, data - scale[:, None] * mu)
        update = np.linalg.solve(normal, gradient[..., None])[..., 0]
        scale += update[:, 0]
        shift += update[:, 1:]
    return shift


def position_floor(quick: bool, reco_sigma_mm: dict) -> dict:
    """The position oracles' core sigmas (mm) of u, v, w beside the reconstructions'."""
    from xecreco.geometry import xyz_to_uvw
    from xecreco.sim import SimConfig
    from xecreco.validation.estimators import gauss_core_fit

    config = SimConfig()
    n_train, n_test, steps = (4000, 2000, 300) if quick else (40000, 20000, 6000)
    train = _showers(n_train, POSITION_SEEDS[0], config)
    test = _showers(n_test, POSITION_SEEDS[1], config)
    residuals = {"centroid": centroid_projection_residuals(train, test)}
    for level in ("moments", "centroids"):
        residuals[level] = learned_oracle_residuals(
            shower_features(*train[:3], train[4], level),
            shower_features(*test[:3], test[4], level), steps)
    n_fit = 100 if quick else SHAPE_FIT_EVENTS
    fit_sample = tuple(part[:n_fit] for part in test)
    shift = known_shape_fit(fit_sample, config, np.random.default_rng(POSITION_SEEDS[2]))
    residuals["known_shape"] = xyz_to_uvw(fit_sample[0] + shift) - xyz_to_uvw(fit_sample[0])
    record = {"name": "oracle_position_floor", "train_showers": len(train[0]),
              "test_showers": len(test[0]), "known_shape_events": n_fit}
    for name, res in residuals.items():
        for k, axis in enumerate("uvw"):
            record[f"{name}_{axis}_mm"] = 10.0 * gauss_core_fit(res[:, k]).get("sigma")[0]
    for key, value in reco_sigma_mm.items():
        record[key] = value
    return record


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
