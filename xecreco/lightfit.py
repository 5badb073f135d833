"""The one batched point-source light fit: photons S and position P = (u, v, w) of a light source.

Model: sensor i sees ``S * Omega_i(P) / 4 pi`` photons (solid angles from
:func:`xecreco.geometry.solid_angle_fraction`). The fit minimises, for many independent sensor
sets at once (one per row),

    chi2 = sum_i w_i (n_i - S Omega_i(P) / 4 pi)^2,
    1 / w_i = max(n_i, 0) / PDE + (f n_i)^2 + sigma_noise^2

(:func:`light_weights`: Poisson term of ``n_i / PDE`` photo-electrons, a relative calibration
term ``f`` and a noise floor, physics.md section 8). S is linear and profiled out in closed form;
P follows a Levenberg-Marquardt iteration with a forward-difference Jacobian of the weighted
residuals (variable projection) and Marquardt's scaling: the damped matrix is ``J^T J + lambda
(diag(J^T J) + 1e-9)``, lambda starts at 1e-2 and is divided by 3 after an accepted step
(chi2 decreased) and multiplied by 4 after a rejected one. A row stops when an accepted step
is shorter than :data:`CONVERGED_STEP_CM` in every coordinate or lambda reaches 1e6; Jacobians
are recomputed only for rows whose point moved. Every trial point is clipped to the row's
bounds (w always within [:data:`W_MIN_CM`, :data:`W_MAX_CM`], in the xenon in front of the inner
face).

Used by the classical position fit (the LSAF of :mod:`xecreco.models.classical.position`) and the
local-fit inpainting baseline (:mod:`xecreco.models.inpaint.localfit`). Lengths cm, light in
photons.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xecreco.geometry import solid_angle_fraction, uvw_to_xyz

__all__ = [
    "PHOTON_EFFICIENCY",
    "NOISE_PHOTONS",
    "REL_SIGMA",
    "W_MIN_CM",
    "W_MAX_CM",
    "CONVERGED_STEP_CM",
    "LightFit",
    "light_weights",
    "omega_of",
    "profile_scale",
    "fit_point_source",
]

#: Nominal photon detection efficiency of the Poisson term (photo-electrons per photon).
PHOTON_EFFICIENCY = 0.15
#: Per-sensor noise floor, photons (about 2 photo-electrons / PDE).
NOISE_PHOTONS = 15.0
#: Default relative (calibration) error per sensor.
REL_SIGMA = 0.05
#: Depth bounds (cm) of the fitted point: inside the xenon, in front of the inner face.
W_MIN_CM, W_MAX_CM = 0.05, 45.0
#: Forward-difference step of the Jacobian, cm.
FD_STEP_CM = 0.01
#: An accepted step shorter than this (cm) in every coordinate ends the fit of a row.
CONVERGED_STEP_CM = 2e-3
_LAMBDA_START, _LAMBDA_STOP = 1e-2, 1e6
_LAMBDA_DOWN, _LAMBDA_UP = 3.0, 4.0


@dataclass
class LightFit:
    """Result of :func:`fit_point_source` for M rows.

    Attributes:
        uvw: (M, 3) fitted point, cm (the start, w clipped, where a row was not fitted).
        scale: (M,) fitted S, photons into 4 pi (0 where not fitted).
        chi2: (M,) weighted sum of squared residuals at ``uvw``.
        n_used: (M,) sensors with non-zero weight.
        ok: (M,) fitted, finite, and S > 0.
    """

    uvw: np.ndarray
    scale: np.ndarray
    chi2: np.ndarray
    n_used: np.ndarray
    ok: np.ndarray


def light_weights(npho: np.ndarray, usable: np.ndarray, rel_sigma: float = REL_SIGMA,
                  efficiency: float = PHOTON_EFFICIENCY,
                  noise_photons: float = NOISE_PHOTONS) -> tuple[np.ndarray, np.ndarray]:
    """``(npho, weight)``: photons (0 where not ``usable``) and inverse variances (1/photons^2,
    0 where not usable) of the variance model in the module docstring."""
    n = np.where(usable, npho, 0.0)
    variance = np.maximum(n, 0.0) / efficiency + (rel_sigma * n) ** 2 + noise_photons**2
    return n, np.where(usable, 1.0 / variance, 0.0)


def omega_of(uvw: np.ndarray, sensors: np.ndarray, geometry=None) -> np.ndarray:
    """Omega/4pi (M, K) of per-row sensor ids ``sensors`` (M, K) (negative = padding, 0) seen
    from per-row points ``uvw`` (M, 3) cm; ``geometry`` None = the design geometry."""
    sensors = np.asarray(sensors)
    if sensors.size == 0:
        return np.zeros(sensors.shape, dtype=np.float64)
    xyz = uvw_to_xyz(np.asarray(uvw, dtype=np.float64))
    omega = solid_angle_fraction(xyz, geometry, sensors=np.where(sensors >= 0, sensors, 0))
    return np.where(sensors >= 0, omega, 0.0)


def profile_scale(npho: np.ndarray, weight: np.ndarray, omega: np.ndarray):
    """``(residuals, chi2, S)`` for fixed ``omega`` (M, K): the weighted residuals
    ``sqrt(w) (n - S omega)`` (M, K), their sum of squares (M,) and the best S (M,) (0 where no
    sensor has weight)."""
    wo = weight * omega
    denom = (wo * omega).sum(axis=1)
    scale = np.where(denom > 0, (wo * npho).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
    resid = np.sqrt(weight) * (npho - scale[:, None] * omega)
    return resid, (resid**2).sum(axis=1), scale


def _clip(uvw, lower, upper):
    out = np.clip(uvw, lower, upper)
    out[:, 2] = np.clip(out[:, 2], W_MIN_CM, W_MAX_CM)
    return out


def fit_point_source(npho: np.ndarray, weight: np.ndarray, sensors: np.ndarray,
                     start_uvw: np.ndarray, *, iterations: int = 12, geometry=None,
                     lower: np.ndarray | None = None, upper: np.ndarray | None = None,
                     start_depths=None, min_sensors: int = 1) -> LightFit:
    """Fit S and P = (u, v, w) of a point source to M sensor sets at once (module docstring).

    Args:
        npho: (M, K) photons of each row's sensors.
        weight: (M, K) inverse variances (1/photons^2, :func:`light_weights`); 0 excludes a
            sensor (invalid, padding).
        sensors: (M, K) sensor ids (negative = padding).
        start_uvw: (M, 3) starting points, cm.
        iterations: at most this many Levenberg-Marquardt steps.
        geometry: detector geometry (None = design).
        lower, upper: (M, 3) bounds of the trial points, cm (None = none; w is always kept
            within [W_MIN_CM, W_MAX_CM], the start's w too).
        start_depths: depths w (cm) tried at the start (u, v) before the iteration; each row
            starts from the one with the smallest chi2. None = the start as given.
        min_sensors: rows with fewer sensors of non-zero weight are not fitted (ok False).
    """
    npho = np.asarray(npho, dtype=np.float64)
    sensors = np.asarray(sensors)
    weight = np.where(sensors >= 0, np.asarray(weight, dtype=np.float64), 0.0)
    m = len(npho)
    lower = np.full((m, 3), -np.inf) if lower is None else np.asarray(lower, dtype=np.float64)
    upper = np.full((m, 3), np.inf) if upper is None else np.asarray(upper, dtype=np.float64)
    uvw = np.array(start_uvw, dtype=np.float64, copy=True)
    uvw[:, 2] = np.clip(uvw[:, 2], W_MIN_CM, W_MAX_CM)
    n_used = (weight > 0).sum(axis=1)
    fitted = n_used >= min_sensors
    scale, chi2 = np.zeros(m), np.zeros(m)
    rows = np.flatnonzero(fitted)
    if len(rows):
        sub = (npho[rows], weight[rows], sensors[rows])
        uvw[rows], scale[rows], chi2[rows] = _iterate(
            uvw[rows], sub, lower[rows], upper[rows], iterations, geometry, start_depths)
    ok = (fitted & np.isfinite(chi2) & np.all(np.isfinite(uvw), axis=1) & (scale > 0))
    return LightFit(uvw=uvw, scale=scale, chi2=chi2, n_used=n_used, ok=ok)


def _iterate(uvw, data, lower, upper, iterations, geometry, start_depths):
    """The Levenberg-Marquardt iteration on rows that are all fitted; returns (uvw, S, chi2)."""
    npho, weight, sensors = data

    def profile(points, index):
        omega = omega_of(points, sensors[index], geometry)
        return profile_scale(npho[index], weight[index], omega)

    n_rows = len(uvw)
    everyone = np.arange(n_rows)
    if start_depths is not None:
        best_uvw, best = None, None
        for w0 in start_depths:
            trial = np.column_stack([uvw[:, :2], np.full(n_rows, w0)])
            _, trial_chi2, _ = profile(trial, everyone)
            if best is None:
                best_uvw, best = trial, trial_chi2
            else:
                better = trial_chi2 < best
                best_uvw = np.where(better[:, None], trial, best_uvw)
                best = np.where(better, trial_chi2, best)
        uvw = best_uvw
    resid, chi2, scale = profile(uvw, everyone)
    lam = np.full(n_rows, _LAMBDA_START)
    eye = np.eye(3)
    active = everyone  # rows still moving
    stale = np.ones(n_rows, dtype=bool)  # Jacobian must be recomputed (point moved)
    jac = np.zeros(resid.shape + (3,))
    for _ in range(int(iterations)):
        if len(active) == 0:
            break
        redo = active[stale[active]]
        for j in range(3):
            if not len(redo):
                break
            step = uvw[redo].copy()
            step[:, j] += FD_STEP_CM
            jac[redo, :, j] = (profile(step, redo)[0] - resid[redo]) / FD_STEP_CM
        ja, ra = jac[active], resid[active]
        jtj = np.einsum("nki,nkj->nij", ja, ja)
        grad = np.einsum("nki,nk->ni", ja, ra)
        damped = jtj + lam[active, None, None] * (jtj * eye + 1e-9 * eye)
        try:
            delta = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = np.zeros((len(active), 3))
        delta = np.where(np.isfinite(delta), delta, 0.0)
        trial = _clip(uvw[active] + delta, lower[active], upper[active])
        t_resid, t_chi2, t_scale = profile(trial, active)
        better = t_chi2 < chi2[active]
        moved = active[better]
        uvw[moved], resid[moved], chi2[moved], scale[moved] = (
            trial[better], t_resid[better], t_chi2[better], t_scale[better],
        )
        lam[active] = np.where(better, lam[active] / _LAMBDA_DOWN, lam[active] * _LAMBDA_UP)
        stale[active] = better
        converged = better & (np.abs(delta).max(axis=1) < CONVERGED_STEP_CM)
        active = active[~converged & (lam[active] < _LAMBDA_STOP)]
    return uvw, scale, chi2
