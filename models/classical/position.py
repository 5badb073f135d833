"""Photon position from the inner-face light: seed, weighted mean, local solid-angle fit (LSAF).

The LSAF fits (S, u, v, w) per event by minimising

    chi2 = sum_i (n_i - S * Omega_i(u, v, w))^2 / (n_i / QE + (f n_i)^2 + sigma_noise^2)

over the inner MPPCs of a (2h+1) x (2h+1) window around the seed (physics.md section 8), with the
project's one point-source light fit (:func:`xecreco.lightfit.fit_point_source`: S profiled,
batched Levenberg-Marquardt, variance model of :func:`xecreco.lightfit.light_weights`). Here the
fit starts at the photon-weighted mean (u, v) with the best of :data:`W_SCAN` as depth, and every
trial point is kept within the window (plus one pitch). Window sensors beyond the face edge or
invalid (dead) get zero weight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

from xecreco.geometry import R_INNER, Face, design_geometry, face_ids, uvw_to_xyz
from xecreco.geometry.constants import INNER_N_COLS as N_COLS
from xecreco.geometry.constants import INNER_N_ROWS as N_ROWS
from xecreco.lightfit import fit_point_source, light_weights, omega_of
from xecreco.models.classical.calibration import ClassicalCalibration, interp_table

W_SCAN = (0.7, 3.0, 10.0)  # starting depths tried before the fit (cm)
#: fewer used window sensors than this and the fit result is not trusted (ok False)
MIN_FIT_SENSORS = 5


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
    ok = inside & np.take_along_axis(valid, ids, axis=1)
    n, weight = light_weights(np.take_along_axis(npho, ids, axis=1).astype(np.float64), ok,
                              rel_sigma)
    return WindowData(ids=ids, rows=rows, cols=cols, npho=n, weight=weight)


def window_omega(uvw: np.ndarray, data: WindowData) -> np.ndarray:
    """Omega/4pi (N, K) of each event's window sensors seen from its point ``uvw`` (N, 3) cm."""
    return omega_of(uvw, data.ids)


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


def window_bounds(data: WindowData, grid: InnerGrid) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) (N, 3) cm of the fitted point: u, v within the window plus one pitch (w is
    bounded by the light fit itself)."""
    half = int(grid.d_col.max()) + 1
    pitch_u = abs(grid.u_col[1] - grid.u_col[0])
    pitch_v = abs(grid.v_row[1] - grid.v_row[0])
    u0, v0 = grid.u_col[data.cols], grid.v_row[data.rows]
    free = np.full(len(u0), np.inf)
    lower = np.column_stack([u0 - half * pitch_u, v0 - half * pitch_v, -free])
    upper = np.column_stack([u0 + half * pitch_u, v0 + half * pitch_v, free])
    return lower, upper


@dataclass
class LsafResult:
    """Fitted point (N, 3) cm, scale S (N,), chi2 (N,), number of used sensors (N,), ok (N,)."""

    uvw: np.ndarray
    scale: np.ndarray
    chi2: np.ndarray
    n_used: np.ndarray
    ok: np.ndarray


def fit_lsaf(data: WindowData, start_uv: np.ndarray, grid: InnerGrid,
             iterations: int) -> LsafResult:
    """Batched LSAF of (u, v, w), S profiled (:func:`xecreco.lightfit.fit_point_source`);
    starts at ``start_uv`` (N, 2) and the best depth of :data:`W_SCAN`, stays within the window
    (:func:`window_bounds`). ``ok`` also needs :data:`MIN_FIT_SENSORS` used sensors."""
    lower, upper = window_bounds(data, grid)
    start = np.column_stack([start_uv, np.full(len(start_uv), W_SCAN[0])])
    fit = fit_point_source(data.npho, data.weight, data.ids, start, iterations=iterations,
                           lower=lower, upper=upper, start_depths=W_SCAN, min_sensors=0)
    ok = fit.ok & (fit.n_used >= MIN_FIT_SENSORS)
    return LsafResult(uvw=fit.uvw, scale=fit.scale, chi2=fit.chi2, n_used=fit.n_used, ok=ok)


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
