"""Photon position from the inner-face light: seed, weighted mean, local solid-angle fit (LSAF).

The LSAF fits (S, u, v, w) per event by minimising

    chi2 = sum_i (n_i - S * Omega_i(u, v, w))^2 / (n_i / QE + (f n_i)^2 + sigma_noise^2)

over the inner MPPCs of a (2h+1) x (2h+1) window around the seed (physics.md section 8). S is
linear and profiled out in closed form; (u, v, w) are fitted by a Levenberg-Marquardt iteration
run on all events of a batch at once (numpy, no per-event minimiser): finite-difference
Jacobians are recomputed only for events whose point moved, and converged events drop out.

The window sensors of every event are passed to
:func:`xecreco.geometry.solid_angle_fraction` as per-point subsets, so one call serves the whole
batch. Window sensors beyond the face edge or invalid (dead) get zero weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from xecreco.geometry import R_INNER, Face, design_geometry, face_ids, solid_angle_fraction, uvw_to_xyz
from xecreco.models.classical.calibration import ClassicalCalibration, interp_table

N_ROWS = 93  # inner-face azimuth rows
N_COLS = 44  # inner-face z columns
MPPC_QE = 0.15  # nominal photon detection efficiency used for the Poisson term of the fit
NOISE_PHOTONS = 15.0  # per-sensor noise floor in photons (about 2 pe / PDE)
W_MIN, W_MAX = 0.05, 45.0  # fit bounds on w (cm)
W_SCAN = (0.7, 3.0, 10.0)  # starting depths tried before the fit (cm)
FD_STEP = 0.01  # finite-difference step for the Jacobian (cm)
CONVERGED_STEP = 2e-3  # an accepted step smaller than this (cm) ends the fit of an event


@dataclass(frozen=True)
class InnerGrid:
    """Design inner-face grid (cm): column u values, row v values, window offsets."""

    u_col: np.ndarray  # (44,) u of each column
    v_row: np.ndarray  # (93,) v of each row
    d_row: np.ndarray  # (K,) window row offsets
    d_col: np.ndarray  # (K,) window column offsets


@lru_cache(maxsize=8)
def inner_grid(window_half: int) -> InnerGrid:
    """The inner grid and a window of half-size ``window_half`` sensors."""
    uvw = np.asarray(design_geometry().uvw)[face_ids(Face.INNER)].reshape(N_ROWS, N_COLS, 3)
    if not 0 < window_half <= 20:
        raise ValueError(f"window_half must be in 1..20, got {window_half}")
    offsets = np.arange(-window_half, window_half + 1)
    d_row, d_col = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    return InnerGrid(
        u_col=uvw[:, :, 0].mean(axis=0), v_row=uvw[:, :, 1].mean(axis=1), d_row=d_row, d_col=d_col
    )


def inner_image(values: np.ndarray) -> np.ndarray:
    """(N, 4760) or (N, 4092) per-sensor values -> (N, 93, 44) inner-face image."""
    return values[:, : N_ROWS * N_COLS].reshape(-1, N_ROWS, N_COLS)


def box_sum(image: np.ndarray, half: int) -> np.ndarray:
    """Sum over the (2 half + 1)^2 box around each cell of (N, H, W) images (zero padding)."""
    k = 2 * half + 1
    return ndimage.uniform_filter(image, size=(1, k, k), mode="constant") * (k * k)


def find_seed(npho: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column (N,) of the brightest 3 x 3 inner patch (valid sensors only)."""
    image = inner_image(np.where(valid, npho, 0.0).astype(np.float64))
    summed = box_sum(image, 1)
    flat = summed.reshape(len(summed), -1).argmax(axis=1)
    return flat // N_COLS, flat % N_COLS


@dataclass
class WindowData:
    """Window sensors of each event: photons, fit weights and the seed it is centred on."""

    ids: np.ndarray  # (N, K) sensor ids (clipped at the face edges; weight 0 there)
    rows: np.ndarray  # (N,) seed row
    cols: np.ndarray  # (N,) seed column
    npho: np.ndarray  # (N, K) photons (0 where not usable)
    weight: np.ndarray  # (N, K) 1 / variance (0 where not usable)

    def take(self, index: np.ndarray) -> "WindowData":
        """The events ``index`` only."""
        return WindowData(
            ids=self.ids[index], rows=self.rows[index], cols=self.cols[index],
            npho=self.npho[index], weight=self.weight[index],
        )


def window_data(npho, valid, rows, cols, grid: InnerGrid, rel_sigma: float) -> WindowData:
    """Gather the window around each seed, with LSAF weights (0 outside the face or invalid)."""
    r = rows[:, None] + grid.d_row[None, :]
    c = cols[:, None] + grid.d_col[None, :]
    inside = (r >= 0) & (r < N_ROWS) & (c >= 0) & (c < N_COLS)
    ids = np.clip(r, 0, N_ROWS - 1) * N_COLS + np.clip(c, 0, N_COLS - 1)
    n = np.take_along_axis(npho, ids, axis=1).astype(np.float64)
    ok = inside & np.take_along_axis(valid, ids, axis=1)
    n = np.where(ok, n, 0.0)
    variance = np.maximum(n, 0.0) / MPPC_QE + (rel_sigma * n) ** 2 + NOISE_PHOTONS**2
    return WindowData(ids=ids, rows=rows, cols=cols, npho=n, weight=np.where(ok, 1.0 / variance, 0.0))


def window_omega(uvw: np.ndarray, data: WindowData) -> np.ndarray:
    """Omega/4pi (N, K) of each event's window sensors seen from its point ``uvw`` (N, 3) cm."""
    return np.asarray(solid_angle_fraction(uvw_to_xyz(uvw), sensors=data.ids))


def weighted_mean_uv(data: WindowData, grid: InnerGrid, half: int = 2) -> np.ndarray:
    """Photon-weighted (u, v) (N, 2) cm over the central (2 half + 1)^2 sensors of the window."""
    central = (np.abs(grid.d_row) <= half) & (np.abs(grid.d_col) <= half)
    n = np.where(central[None, :] & (data.weight > 0), np.maximum(data.npho, 0.0), 0.0)
    total = n.sum(axis=1)
    col = np.clip(data.cols[:, None] + grid.d_col[None, :], 0, N_COLS - 1)
    row = np.clip(data.rows[:, None] + grid.d_row[None, :], 0, N_ROWS - 1)
    safe = np.where(total > 0, total, 1.0)
    u = (n * grid.u_col[col]).sum(axis=1) / safe
    v = (n * grid.v_row[row]).sum(axis=1) / safe
    u = np.where(total > 0, u, grid.u_col[data.cols])
    v = np.where(total > 0, v, grid.v_row[data.rows])
    return np.stack([u, v], axis=1)


def _profile(uvw: np.ndarray, data: WindowData):
    """Residual vector (N, K), chi2 (N,) and profiled scale S (N,) at the points ``uvw``."""
    omega = window_omega(uvw, data)
    wo = data.weight * omega
    denom = (wo * omega).sum(axis=1)
    scale = np.where(denom > 0, (wo * data.npho).sum(axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
    resid = np.sqrt(data.weight) * (data.npho - scale[:, None] * omega)
    return resid, (resid**2).sum(axis=1), scale


def _clip(uvw: np.ndarray, data: WindowData, grid: InnerGrid) -> np.ndarray:
    """Keep u, v within the window (plus one pitch) and w within [W_MIN, W_MAX]."""
    half = int(grid.d_col.max()) + 1
    pitch_u = abs(grid.u_col[1] - grid.u_col[0])
    pitch_v = abs(grid.v_row[1] - grid.v_row[0])
    out = uvw.copy()
    u0, v0 = grid.u_col[data.cols], grid.v_row[data.rows]
    out[:, 0] = np.clip(out[:, 0], u0 - half * pitch_u, u0 + half * pitch_u)
    out[:, 1] = np.clip(out[:, 1], v0 - half * pitch_v, v0 + half * pitch_v)
    out[:, 2] = np.clip(out[:, 2], W_MIN, W_MAX)
    return out


@dataclass
class LsafResult:
    """Fitted point (N, 3) cm, scale S (N,), chi2 (N,), number of used sensors (N,), ok (N,)."""

    uvw: np.ndarray
    scale: np.ndarray
    chi2: np.ndarray
    n_used: np.ndarray
    ok: np.ndarray


def fit_lsaf(data: WindowData, start_uv: np.ndarray, grid: InnerGrid, iterations: int) -> LsafResult:
    """Batched Levenberg-Marquardt LSAF of (u, v, w), S profiled; starts at ``start_uv`` (N, 2).

    The starting depth is the best of :data:`W_SCAN`.
    """
    n_events = len(start_uv)
    n_used = (data.weight > 0).sum(axis=1)
    best = None
    for w0 in W_SCAN:
        trial = np.column_stack([start_uv, np.full(n_events, w0)])
        _, chi2, _ = _profile(trial, data)
        if best is None:
            best_uvw, best = trial, chi2
        else:
            better = chi2 < best
            best_uvw = np.where(better[:, None], trial, best_uvw)
            best = np.where(better, chi2, best)
    uvw = best_uvw
    resid, chi2, scale = _profile(uvw, data)
    lam = np.full(n_events, 1e-2)
    eye = np.eye(3)
    active = np.arange(n_events)  # events still moving
    stale = np.ones(n_events, dtype=bool)  # Jacobian must be recomputed (point moved)
    jac = np.zeros(resid.shape + (3,))
    for _ in range(iterations):
        if len(active) == 0:
            break
        redo = active[stale[active]]
        if len(redo):
            sub = data.take(redo)
            for j in range(3):
                step = uvw[redo].copy()
                step[:, j] += FD_STEP
                jac[redo, :, j] = (_profile(step, sub)[0] - resid[redo]) / FD_STEP
        ja, ra = jac[active], resid[active]
        jtj = np.einsum("nki,nkj->nij", ja, ja)
        grad = np.einsum("nki,nk->ni", ja, ra)
        damped = jtj + lam[active, None, None] * (jtj * eye + 1e-9 * eye)
        try:
            delta = -np.linalg.solve(damped, grad[:, :, None])[:, :, 0]
        except np.linalg.LinAlgError:
            delta = np.zeros((len(active), 3))
        delta = np.where(np.isfinite(delta), delta, 0.0)
        sub = data.take(active)
        trial = _clip(uvw[active] + delta, sub, grid)
        t_resid, t_chi2, t_scale = _profile(trial, sub)
        better = t_chi2 < chi2[active]
        moved = active[better]
        uvw[moved], resid[moved], chi2[moved], scale[moved] = (
            trial[better], t_resid[better], t_chi2[better], t_scale[better],
        )
        lam[active] = np.where(better, lam[active] / 3.0, lam[active] * 4.0)
        stale[active] = better
        converged = better & (np.abs(delta).max(axis=1) < CONVERGED_STEP)
        active = active[~converged & (lam[active] < 1e6)]
    ok = np.isfinite(chi2) & np.all(np.isfinite(uvw), axis=1) & (scale > 0) & (n_used >= 5)
    return LsafResult(uvw=uvw, scale=scale, chi2=chi2, n_used=n_used, ok=ok)


def incidence_tangents(uvw: np.ndarray, vertex: np.ndarray) -> np.ndarray:
    """(N, 2) tangents of the photon incidence at ``uvw`` (N, 3) cm coming from ``vertex``
    (N, 3) cm: (d.u_hat / d.r_hat, d.v_hat / d.r_hat) with d = point - vertex and r_hat the
    outward radial (depth) direction."""
    phase = uvw[:, 1] / R_INNER
    d = uvw_to_xyz(uvw) - vertex
    radial = -d[:, 0] * np.cos(phase) + d[:, 1] * np.sin(phase)
    along_v = d[:, 0] * np.sin(phase) + d[:, 1] * np.cos(phase)
    radial = np.where(np.abs(radial) > 1e-6, radial, 1e-6)
    return np.column_stack([d[:, 2] / radial, along_v / radial])


def correct_position(
    uvw_fit: np.ndarray, vertex: np.ndarray, calibration: ClassicalCalibration
) -> np.ndarray:
    """Depth-dependent corrections (calibration tables) from the LSAF point (the light
    centroid) to the first interaction point, (N, 3) cm -> (N, 3) cm.

    w = w_fit + shift(w_fit); u = u_fit + offset_u(w_fit) + incidence_u(w_fit) * tan_u, with
    tan_u the incidence tangent from the vertex (N, 3) cm (:func:`incidence_tangents`): the
    light centroid lies deeper along the photon direction; the same for v.
    """
    w_fit = uvw_fit[:, 2]
    tangents = incidence_tangents(uvw_fit, vertex)
    out = np.empty_like(uvw_fit)
    out[:, 2] = w_fit + interp_table(w_fit, calibration.w_table_cm, calibration.w_shift_cm)
    for axis, name in ((0, "u"), (1, "v")):
        table = getattr(calibration, f"{name}_table_cm")
        offset = interp_table(w_fit, table, getattr(calibration, f"{name}_offset_cm"))
        slope = interp_table(w_fit, table, getattr(calibration, f"{name}_incidence_cm"))
        out[:, axis] = uvw_fit[:, axis] + offset + slope * tangents[:, axis]
    out[:, 2] = np.maximum(out[:, 2], 0.0)
    return out
