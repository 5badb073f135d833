"""Electromagnetic shower model: macro-deposits from the conversion point, merged into centroids.

Per shower (physics.md section 3):

* longitudinal depth t (X0) of each of ``n_deposits`` equal-energy deposits ~ Gamma(a, 1/b) with
  t_max = (a - 1) / b = ln(E / Ec) + offset; ln(t_max) and ln(b) fluctuate event by event
  (Gaussian, correlated), which is what makes the energy resolution realistic;
* lateral radius from the Grindhammer-Peters two-component profile
  g(r; R) = 2 r R^2 / (r^2 + R^2)^2 (core radius growing and core fraction falling beyond t_max),
  around an axis tilted by ~0.1 rad from the photon direction;
* leakage: deposits outside the active volume are dropped (they carry no light and no visible
  energy); back-splash: shallow conversions lose an exponentially distributed energy fraction;
* the deposits are merged into ``n_depth_bins x (1 + n_tail_sectors)`` energy-weighted centroids
  for the light (depth bins at configured quantiles of the deposits' depth order; per bin one
  core centroid and ``n_tail_sectors`` azimuthal tail centroids).

Energies MeV, lengths cm, times ns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xecreco.sim.config import SimConfig
from xecreco.sim.volume import inside_active

#: largest CDF value drawn for the lateral profile (caps the heavy 1/r^3 tail at ~14 R)
_LATERAL_CDF_MAX = 0.995
#: smallest t_max (X0) allowed for low energies where ln(E/Ec) + offset would be <= 0
_TMAX_FLOOR = 0.2


@dataclass
class Showers:
    """Centroids of N showers.

    Attributes:
        centroid: (N, C, 3) float64 energy-weighted centroid positions, cm.
        energy: (N, C) float64 deposited energy per centroid, MeV (0 for empty centroids).
        delay_ns: (N, C) float64 time of the centroid after the conversion (shower front at c), ns.
        visible_mev: (N,) float64 energy deposited in the active volume, MeV.
        t_max_x0: (N,) float64 the event's drawn shower maximum, X0 from the conversion.
    """

    centroid: np.ndarray
    energy: np.ndarray
    delay_ns: np.ndarray
    visible_mev: np.ndarray
    t_max_x0: np.ndarray


def profile_parameters(
    energy_mev: np.ndarray, config: SimConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Event-by-event gamma-profile (a, b) with correlated ln(t_max), ln(b) fluctuations."""
    n = len(energy_mev)
    t_max0 = np.log(energy_mev / config.critical_energy_mev) + config.profile_tmax_offset
    t_max0 = np.maximum(t_max0, _TMAX_FLOOR)
    z1 = rng.standard_normal(n)
    z2 = rng.standard_normal(n)
    rho = config.profile_ab_correlation
    ln_t = np.log(t_max0) + config.profile_ln_tmax_spread * z1
    z_b = rho * z1 + np.sqrt(1 - rho**2) * z2
    ln_b = np.log(config.profile_b) + config.profile_b_rel_spread * z_b
    b = np.exp(ln_b)
    a = 1.0 + b * np.exp(ln_t)
    return a, b


def draw_depths_x0(
    energy_mev: np.ndarray, n_deposits: int, config: SimConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Longitudinal depths (N, n_deposits) in X0 from the conversion point, and the events'
    drawn shower maxima t_max (N,) in X0."""
    a, b = profile_parameters(energy_mev, config, rng)
    t = rng.gamma(np.broadcast_to(a[:, None], (len(a), n_deposits))) / b[:, None]
    return t, (a - 1.0) / b


def draw_lateral_radii(
    t: np.ndarray, t_max: np.ndarray, config: SimConfig, rng: np.random.Generator
) -> np.ndarray:
    """Lateral radii (cm) of deposits at depths ``t`` (N, K) X0 from the two-component
    Grindhammer-Peters profile; beyond t_max the core widens and loses weight."""
    rm = config.moliere_radius_cm
    beyond = np.maximum(t - t_max[:, None], 0.0)
    growth = 1.0 + config.lateral_core_growth_per_x0 * beyond
    core_radius = config.lateral_core_radius * rm * growth
    core_fraction = config.lateral_core_fraction - config.lateral_core_fraction_slope * beyond
    core_fraction = np.clip(core_fraction, 0.0, 1.0)
    radius_scale = np.where(rng.uniform(size=t.shape) < core_fraction, core_radius,
                            config.lateral_tail_radius * rm)
    cdf = rng.uniform(0.0, _LATERAL_CDF_MAX, t.shape)
    return radius_scale * np.sqrt(cdf / (1.0 - cdf))


def _orthonormal_frame(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors (N, 3) perpendicular to unit ``axis`` (N, 3) and to each other."""
    helper = np.zeros_like(axis)
    helper[:, 2] = 1.0
    parallel = np.abs(axis[:, 2]) > 0.9
    helper[parallel] = (1.0, 0.0, 0.0)
    e1 = np.cross(helper, axis)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    return e1, np.cross(axis, e1)


def simulate_showers(
    conversion: np.ndarray, direction: np.ndarray, depth_cm: np.ndarray, energy_mev: np.ndarray,
    config: SimConfig, rng: np.random.Generator,
) -> Showers:
    """Showers of photons converting at ``conversion`` (N, 3) cm, travelling along unit
    ``direction`` (N, 3), ``depth_cm`` (N,) past the inner surface, with ``energy_mev`` (N,)."""
    n, k = len(energy_mev), config.n_deposits
    x0, rm = config.radiation_length_cm, config.moliere_radius_cm
    t, t_max = draw_depths_x0(energy_mev, k, config, rng)

    # shower axis, tilted from the photon direction
    e1, e2 = _orthonormal_frame(direction)
    tilt = config.axis_tilt_rad * rng.standard_normal((n, 2))
    axis = direction + tilt[:, :1] * e1 + tilt[:, 1:] * e2
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    e1, e2 = _orthonormal_frame(axis)

    r = draw_lateral_radii(t, t_max, config, rng)
    psi = rng.uniform(0.0, 2.0 * np.pi, (n, k))

    along = t * x0
    pos = (
        conversion[:, None, :]
        + along[..., None] * axis[:, None, :]
        + (r * np.cos(psi))[..., None] * e1[:, None, :]
        + (r * np.sin(psi))[..., None] * e2[:, None, :]
    )

    # leakage and back-splash
    lost = np.zeros(n)
    shallow = depth_cm < config.backsplash_depth_x0 * x0
    if config.backsplash_fraction > 0 and np.any(shallow):
        mean = config.backsplash_fraction * (1.0 - depth_cm / (config.backsplash_depth_x0 * x0))
        lost = np.where(shallow, np.minimum(rng.exponential(np.maximum(mean, 1e-12)), 0.5), 0.0)
    dep_energy = (energy_mev * (1.0 - lost) / k)[:, None] * inside_active(pos)

    # centroids: equal-count depth bins, each one core + n_tail_sectors azimuthal tail centroids
    order = np.argsort(along, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(k)[None, :].repeat(n, 0), axis=1)
    edges = np.asarray(config.centroid_depth_quantiles[1:-1], dtype=np.float64) * k
    depth_bin = np.searchsorted(edges, rank + 0.5)
    sectors = config.n_tail_sectors
    sector = np.minimum((psi * sectors / (2.0 * np.pi)).astype(np.int64), sectors - 1)
    part = np.where(r < config.centroid_core_radius * rm, 0, 1 + sector)
    n_c = config.n_centroids
    label = (np.arange(n)[:, None] * n_c + depth_bin * (1 + sectors) + part).ravel()
    w = dep_energy.ravel()
    energy = np.bincount(label, weights=w, minlength=n * n_c)
    safe = np.where(energy > 0, energy, 1.0)
    centroid = np.empty((n * n_c, 3))
    for j in range(3):
        moment = np.bincount(label, weights=w * pos[..., j].ravel(), minlength=n * n_c)
        centroid[:, j] = moment / safe
    delay = np.bincount(label, weights=w * along.ravel(), minlength=n * n_c) / safe
    delay /= config.c_cm_per_ns
    empty = energy <= 0
    centroid[empty] = np.repeat(conversion, n_c, axis=0)[empty]
    return Showers(
        centroid=centroid.reshape(n, n_c, 3),
        energy=energy.reshape(n, n_c),
        delay_ns=delay.reshape(n, n_c),
        visible_mev=dep_energy.sum(axis=1),
        t_max_x0=t_max,
    )
