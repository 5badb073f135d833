"""Point-source light fits for the inpainting baselines.

The model: sensor i sees ``npho_i = S * Omega_i(P) / 4 pi`` photons from a point source of
``S`` photons at P = (u, v, w) (cm). ``S`` is profiled out analytically (weighted linear least
squares) and P is found by a damped Gauss-Newton (Levenberg-Marquardt) iteration with a
numerical Jacobian, for many independent fits at once (one per row). Solid angles come from
:func:`xecreco.geometry.solid_angle_fraction`, the single implementation in the project.

This is the local solid-angle fit (LSAF) of physics.md section 8, reduced to what inpainting
needs: a position estimate per event and a local fit around a dead sensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from xecreco.geometry import Face, Geometry, design_geometry, solid_angle_fraction, uvw_to_xyz
from xecreco.geometry.constants import INNER_N_COLS

from xecreco.models.inpaint.neighbours import (
    cached,
    immediate_neighbours,
    padded_rows,
    radius_neighbours,
)

__all__ = ["PointSourceFit", "fit_point_source", "omega_of", "estimate_position", "photon_weights"]

#: Depth range (cm) the fitted point is kept in: inside the xenon, in front of the inner face.
W_MIN_CM, W_MAX_CM = 0.05, 45.0
#: Step (cm) of the numerical derivatives.
_STEP_CM = 0.01


@dataclass
class PointSourceFit:
    """Result of :func:`fit_point_source` for M independent fits.

    Attributes:
        scale: (M,) fitted S, photons emitted into 4 pi.
        uvw: (M, 3) fitted position, cm.
        chi2: (M,) weighted sum of squared residuals at the solution.
        ok: (M,) True where the fit had enough light and at least 4 usable sensors.
    """

    scale: np.ndarray
    uvw: np.ndarray
    chi2: np.ndarray
    ok: np.ndarray


def photon_weights(npho: np.ndarray, efficiency: float = 0.15, calib_spread: float = 0.05,
                   noise_photons: float = 15.0) -> np.ndarray:
    """Inverse-variance weights (1/photons^2) of measured photon counts.

    Variance = Poisson term ``npho / efficiency`` (npho is photo-electrons / efficiency) +
    calibration term ``(calib_spread * npho)^2`` + a noise floor ``noise_photons^2``.
    """
    n = np.clip(npho, 0.0, None)
    return 1.0 / (n / efficiency + (calib_spread * n) ** 2 + noise_photons**2)


def omega_of(uvw: np.ndarray, sensors: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Omega/4pi of per-row sensor lists seen from per-row points.

    Args:
        uvw: (M, 3) points, cm.
        sensors: (M, K) sensor ids per row; negative entries (padding) give 0.
        geometry: the detector geometry.

    Returns:
        (M, K) float64 solid-angle fractions.
    """
    sensors = np.asarray(sensors)
    if sensors.size == 0:
        return np.zeros(sensors.shape, dtype=np.float64)
    xyz = uvw_to_xyz(np.asarray(uvw, dtype=np.float64))
    omega = solid_angle_fraction(xyz, geometry, sensors=np.where(sensors >= 0, sensors, 0))
    return np.where(sensors >= 0, omega, 0.0)


def _profile(npho, weight, omega):
    """Best S for fixed omega and the weighted chi2 (both (M,))."""
    den = np.sum(weight * omega * omega, axis=1)
    scale = np.where(den > 0, np.sum(weight * npho * omega, axis=1) / np.where(den > 0, den, 1.0),
                     0.0)
    resid = npho - scale[:, None] * omega
    return scale, np.sum(weight * resid * resid, axis=1), resid


def fit_point_source(npho: np.ndarray, weight: np.ndarray, sensors: np.ndarray,
                     start_uvw: np.ndarray, geometry: Geometry | None = None,
                     n_iter: int = 12, min_sensors: int = 4) -> PointSourceFit:
    """Fit S and P = (u, v, w) of a point source to many sensor sets at once.

    Args:
        npho: (M, K) measured photons of the sensors of each fit.
        weight: (M, K) inverse variances (1/photons^2); 0 excludes a sensor (invalid, padding).
        sensors: (M, K) sensor ids (negative = padding).
        start_uvw: (M, 3) starting points, cm.
        geometry: detector geometry (design by default).
        n_iter: Levenberg-Marquardt iterations.
        min_sensors: fits with fewer sensors of non-zero weight are not attempted (ok False).

    Returns:
        :class:`PointSourceFit`.
    """
    geometry = geometry or design_geometry()
    npho = np.asarray(npho, dtype=np.float64)
    weight = np.where(np.asarray(sensors) >= 0, np.asarray(weight, dtype=np.float64), 0.0)
    p = np.array(start_uvw, dtype=np.float64, copy=True)
    p[:, 2] = np.clip(p[:, 2], W_MIN_CM, W_MAX_CM)
    m = len(p)
    ok = (weight > 0).sum(axis=1) >= min_sensors
    scale = np.zeros(m)
    chi2 = np.zeros(m)
    if not ok.any():
        return PointSourceFit(scale, p, chi2, ok)
    idx = np.flatnonzero(ok)
    n_, w_, s_ = npho[idx], weight[idx], sensors[idx]
    q = p[idx]
    sqrt_w = np.sqrt(w_)
    lam = np.full(len(idx), 1e-3)
    cur_scale, cur_chi2, cur_res = _profile(n_, w_, omega_of(q, s_, geometry))
    steps = np.eye(3) * _STEP_CM
    for _ in range(n_iter):
        # Numerical Jacobian of the weighted residuals with S profiled (variable projection).
        shifted = np.concatenate([q + steps[a] for a in range(3)])
        omega_s = omega_of(shifted, np.tile(s_, (3, 1)), geometry).reshape(3, len(q), -1)
        jac = np.empty((len(q), s_.shape[1], 3))
        for a in range(3):
            _, _, res_a = _profile(n_, w_, omega_s[a])
            jac[:, :, a] = sqrt_w * (res_a - cur_res) / _STEP_CM
        r = sqrt_w * cur_res
        jtj = np.einsum("mka,mkb->mab", jac, jac)
        jtr = np.einsum("mka,mk->ma", jac, r)
        diag = np.einsum("maa->ma", jtj) + 1e-12
        damped = jtj + lam[:, None, None] * diag[:, :, None] * np.eye(3)[None]
        try:
            delta = -np.linalg.solve(damped, jtr[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = -np.stack([np.linalg.lstsq(a_, b_, rcond=None)[0]
                               for a_, b_ in zip(damped, jtr)])
        delta = np.clip(delta, -5.0, 5.0)
        trial = q + delta
        trial[:, 2] = np.clip(trial[:, 2], W_MIN_CM, W_MAX_CM)
        t_scale, t_chi2, t_res = _profile(n_, w_, omega_of(trial, s_, geometry))
        better = t_chi2 < cur_chi2
        q[better] = trial[better]
        cur_scale[better], cur_chi2[better] = t_scale[better], t_chi2[better]
        cur_res[better] = t_res[better]
        lam = np.where(better, lam * 0.3, lam * 10.0)
    p[idx] = q
    scale[idx] = cur_scale
    chi2[idx] = cur_chi2
    ok[idx] = cur_scale > 0
    return PointSourceFit(scale, p, chi2, ok)


def _sparse_patch(geometry: Geometry, core_radius_cm: float, patch_radius_cm: float):
    """Sparse (4760, 4760) table: inner MPPCs within the core radius, plus every second MPPC
    (even row and column of the 93 x 44 grid) within the patch radius."""
    def build():
        inner = np.asarray(geometry.face) == int(Face.INNER)
        ids = np.arange(len(inner))
        sparse_grid = inner & ((ids // INNER_N_COLS) % 2 == 0) & ((ids % INNER_N_COLS) % 2 == 0)
        wide = radius_neighbours(patch_radius_cm, geometry)
        wide = wide @ sp.diags(sparse_grid.astype(np.float64))
        table = (radius_neighbours(core_radius_cm, geometry) + wide).tocsr()
        table.eliminate_zeros()
        table.data[:] = 1.0
        return table

    return cached(geometry, ("sparse-patch", float(core_radius_cm), float(patch_radius_cm)), build)


def estimate_position(npho: np.ndarray, valid: np.ndarray, geometry: Geometry | None = None,
                      core_radius_cm: float = 3.2, patch_radius_cm: float = 12.0,
                      min_light: float = 200.0, n_iter: int = 12) -> PointSourceFit:
    """Per-event light-source position from the inner face (LSAF around the brightest spot).

    The seed is the valid inner MPPC with the largest 3 x 3 neighbourhood sum; the fit uses the
    valid inner MPPCs within ``core_radius_cm`` of the seed and every second MPPC in each
    direction within ``patch_radius_cm`` (the wide ring fixes the depth of deep events at a
    quarter of the cost), starting from the light-weighted core mean (u, v) at w = 2 cm. Events
    whose patch holds less than ``min_light`` photons are not fitted (``ok`` False) and keep that
    starting point.

    Args:
        npho: (N, 4760) photons (values at invalid sensors are ignored).
        valid: (N, 4760) bool validity of npho.
        geometry: detector geometry (design by default).

    Returns:
        :class:`PointSourceFit` with one row per event; ``uvw`` in cm.
    """
    geometry = geometry or design_geometry()
    inner = np.flatnonzero(np.asarray(geometry.face) == int(Face.INNER))
    lit = np.where(valid, np.clip(npho, 0.0, None), 0.0).astype(np.float64)
    near = immediate_neighbours(geometry)[inner][:, inner]
    smoothed = lit[:, inner] + (near @ lit[:, inner].T).T
    seed = inner[np.argmax(smoothed, axis=1)]
    patch = padded_rows(_sparse_patch(geometry, core_radius_cm, patch_radius_cm), seed)
    sensors = np.concatenate([seed[:, None], patch], axis=1)
    safe = np.where(sensors >= 0, sensors, 0)
    rows = np.arange(len(seed))[:, None]
    usable = (sensors >= 0) & valid[rows, safe]
    light = np.where(usable, lit[rows, safe], 0.0)
    uvw_sensor = geometry.uvw[safe]
    total = light.sum(axis=1)
    core = np.linalg.norm(uvw_sensor[:, :, :2] - geometry.uvw[seed][:, None, :2], axis=2)
    core_light = np.where(core <= core_radius_cm, light, 0.0)
    core_total = core_light.sum(axis=1)
    start = np.empty((len(seed), 3))
    frac = core_light / np.where(core_total > 0, core_total, 1.0)[:, None]
    start[:, :2] = np.einsum("nk,nka->na", frac, uvw_sensor[:, :, :2])
    start[core_total <= 0, :2] = geometry.uvw[seed[core_total <= 0], :2]
    start[:, 2] = 2.0
    weight = np.where(usable, photon_weights(light), 0.0)
    enough = total >= min_light
    fit = fit_point_source(light[enough], weight[enough], sensors[enough], start[enough],
                           geometry, n_iter=n_iter)
    result = PointSourceFit(np.zeros(len(seed)), start, np.zeros(len(seed)),
                            np.zeros(len(seed), dtype=bool))
    result.scale[enough] = fit.scale
    result.uvw[enough] = fit.uvw
    result.chi2[enough] = fit.chi2
    result.ok[enough] = fit.ok
    return result
