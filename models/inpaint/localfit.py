"""Light-source position for the inpainting baselines: the LSAF around the brightest spot.

The fit itself is the project's one point-source light fit
(:func:`xecreco.lightfit.fit_point_source`, the same variance model, bounds and damping as the
classical position fit); this module chooses the sensors (a sparse patch of inner MPPCs around
the brightest spot) and the starting point.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from xecreco.geometry import Face, Geometry, design_geometry
from xecreco.geometry.constants import INNER_N_COLS
from xecreco.lightfit import LightFit, fit_point_source, light_weights
from xecreco.models.inpaint.neighbours import (
    cached,
    immediate_neighbours,
    padded_rows,
    radius_neighbours,
)

__all__ = ["estimate_position"]

#: usable sensors a fit needs (fewer: not fitted, ok False)
MIN_FIT_SENSORS = 4


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
                      min_light: float = 200.0, n_iter: int = 12) -> LightFit:
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
        :class:`~xecreco.lightfit.LightFit` with one row per event; ``uvw`` in cm.
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
    light, weight = light_weights(light, usable)
    enough = total >= min_light
    fit = fit_point_source(light[enough], weight[enough], sensors[enough], start[enough],
                           iterations=n_iter, geometry=geometry, min_sensors=MIN_FIT_SENSORS)
    result = LightFit(uvw=start, scale=np.zeros(len(seed)), chi2=np.zeros(len(seed)),
                      n_used=(weight > 0).sum(axis=1), ok=np.zeros(len(seed), dtype=bool))
    result.scale[enough] = fit.scale
    result.uvw[enough] = fit.uvw
    result.chi2[enough] = fit.chi2
    result.ok[enough] = fit.ok
    return result
