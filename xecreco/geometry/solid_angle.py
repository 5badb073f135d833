"""Solid angles Omega / 4 pi of the sensors seen from points in the xenon (lengths cm).

Exact closed forms (physics.md section 4): an MPPC is 4 square chips (sum of the rectangle
formula over the chips), a PMT a disc of radius 2.25 cm (Paxton's formula with elliptic
integrals). Both are 0 when the point is behind the sensor plane.

Far away from a sensor, :func:`solid_angle_fraction` uses the second-order multipole expansion of
the flat active area (the first order vanishes because MPPC and PMT are symmetric about their
centre)::

    Omega = A h / d^3 * (1 + s2 / d^2 * (4.5 - 7.5 h^2 / d^2))

with A the active area, s2 = <x^2> = <y^2> its in-plane second moment, d the distance to the
sensor centre and h the height above the sensor plane. Its relative error falls as (size / d)^4
(MPPC: 3e-3 at 3 sizes, 4e-4 at 5 sizes; PMT: 9e-4 at 3 sizes, 1.2e-4 at 5 sizes, any angle).
The exact forms are evaluated only for point-sensor pairs closer than :data:`EXACT_WITHIN_MPPC`
(MPPC) or :data:`EXACT_WITHIN_PMT` (PMT) sensor sizes, which keeps the relative error of the whole
table below 1e-3 (tested); ``exact_within`` overrides both (``inf``: exact everywhere).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import ellipe, ellipeinc, ellipkinc, ellipkm1

from xecreco.geometry import constants as C
from xecreco.geometry.sensors import Geometry, design_geometry

#: exact formulas for pairs closer than this many sensor sizes (MPPC size 1.23 cm -> 5.5 cm,
#: PMT size 4.5 cm -> 15.8 cm); beyond, the multipole expansion is within 6e-4 (MPPC) and 5e-4
#: (PMT) of the exact value
EXACT_WITHIN_MPPC = 4.5
EXACT_WITHIN_PMT = 3.5

_FOUR_PI = 4.0 * np.pi


# --- exact closed forms ---------------------------------------------------------------------------


def rectangle_solid_angle(
    a: np.ndarray, b: np.ndarray, h: np.ndarray, x1: float, x2: float, y1: float, y2: float
) -> np.ndarray:
    """Omega (sr) of the rectangle [x1, x2] x [y1, y2] (cm, in its own plane) seen from the
    point (a, b, h) (cm, h > 0 the height above the plane). Broadcasts over a, b, h."""
    a, b, h = (np.asarray(t, dtype=np.float64) for t in (a, b, h))
    total = np.zeros(np.broadcast(a, b, h).shape)
    h2 = h * h
    for x, y, sign in ((x2, y2, 1.0), (x1, y1, 1.0), (x1, y2, -1.0), (x2, y1, -1.0)):
        dx = x - a
        dy = y - b
        total += sign * np.arctan(dx * dy / (h * np.sqrt(dx * dx + dy * dy + h2)))
    return np.abs(total)


#: chip edge coordinates along one sensor axis (cm) and their signs in the corner sum
_CHIP_EDGES = np.array(
    [
        -C.MPPC_CHIP_OFFSET - 0.5 * C.MPPC_CHIP_SIDE,
        -C.MPPC_CHIP_OFFSET + 0.5 * C.MPPC_CHIP_SIDE,
        C.MPPC_CHIP_OFFSET - 0.5 * C.MPPC_CHIP_SIDE,
        C.MPPC_CHIP_OFFSET + 0.5 * C.MPPC_CHIP_SIDE,
    ]
)
_CHIP_EDGE_SIGNS = np.array([-1.0, 1.0, -1.0, 1.0])


def mppc_solid_angle(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Omega (sr) of one MPPC (4 chips of :data:`MPPC_CHIP_SIDE` with :data:`MPPC_CHIP_GAP` gaps)
    seen from (a, b, h) cm in the sensor frame (a along the sensor axis, h along the normal);
    0 for h <= 0. Same rectangle formula as :func:`rectangle_solid_angle`, summed over the
    16 chip corners at once (each chip is [x_i, x_i+1] x [y_j, y_j+1])."""
    a, b, h = np.broadcast_arrays(*(np.asarray(t, dtype=np.float64) for t in (a, b, h)))
    front = h > 0
    safe_h = np.where(front, h, 1.0)[..., None, None]
    dx = (_CHIP_EDGES - a[..., None])[..., :, None]
    dy = (_CHIP_EDGES - b[..., None])[..., None, :]
    corner = np.arctan(dx * dy / (safe_h * np.sqrt(dx * dx + dy * dy + safe_h * safe_h)))
    signs = _CHIP_EDGE_SIGNS[:, None] * _CHIP_EDGE_SIGNS[None, :]
    total = np.abs(np.sum(corner * signs, axis=(-2, -1)))
    return np.where(front, total, 0.0)


def disc_solid_angle(rho: np.ndarray, h: np.ndarray, radius: float = C.PMT_RADIUS) -> np.ndarray:
    """Omega (sr) of a disc of ``radius`` cm seen from a point at height ``h`` cm above its plane
    and ``rho`` cm from its axis (Paxton 1959, Heuman-Lambda form); 0 for h <= 0.

    ``Omega = 2 pi [rho < R] - 2 h / Rmax K(k) -+ pi Lambda0(xi, k)`` (minus inside the rim, plus
    outside) with ``Rmax = sqrt(h^2 + (rho + R)^2)``, ``k^2 = 4 rho R / Rmax^2`` and
    ``xi = atan(h / |R - rho|)``. Continuous across the rim (Lambda0 = 1 there).
    """
    rho, h = np.broadcast_arrays(np.asarray(rho, dtype=np.float64), np.asarray(h, dtype=np.float64))
    front = h > 0
    h = np.where(front, h, 1.0)
    r_max2 = h * h + (rho + radius) ** 2
    m = 4.0 * rho * radius / r_max2
    m1 = (h * h + (rho - radius) ** 2) / r_max2  # 1 - m without cancellation
    xi = np.arctan2(h, np.abs(radius - rho))
    k_full = ellipkm1(m1)
    f_inc = ellipkinc(xi, m1)
    heuman = (2.0 / np.pi) * (ellipe(m) * f_inc + k_full * (ellipeinc(xi, m1) - f_inc))
    inside = rho < radius
    omega = np.where(inside, 2.0 * np.pi - np.pi * heuman, np.pi * heuman)
    omega -= 2.0 * h / np.sqrt(r_max2) * k_full
    return np.where(front, omega, 0.0)


# --- table over sensors ---------------------------------------------------------------------------


def _select(geometry: Geometry, sensors):
    if sensors is None:
        return None
    sensors = np.asarray(sensors)
    if sensors.dtype == bool:
        sensors = np.flatnonzero(sensors)
    return sensors.astype(np.intp, copy=False)


def _exact_radius2(geometry: Geometry, sel, exact_within: float | None, dtype) -> np.ndarray:
    """Squared distance (cm^2) below which each selected sensor uses the exact formula."""
    if exact_within is None:
        return _default_exact_radius2(geometry, dtype)[sel]
    return ((float(exact_within) * geometry.size[sel]) ** 2).astype(dtype)


@lru_cache(maxsize=8)
def _default_exact_radius2(geometry: Geometry, dtype) -> np.ndarray:
    factor = np.where(geometry.is_mppc, EXACT_WITHIN_MPPC, EXACT_WITHIN_PMT)
    return ((factor * geometry.size) ** 2).astype(dtype)


def _near_pairs(d2: np.ndarray, radius2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices where d2 < radius2 (flatnonzero is ~10x faster than nonzero)."""
    flat = np.flatnonzero(d2 < radius2)
    return np.divmod(flat, d2.shape[1])


def _exact(points: np.ndarray, ids: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Exact Omega / 4 pi for pairs (points[j], sensor ids[j]), (P, 3) and (P,)."""
    out = np.zeros(len(ids))
    if len(ids) == 0:
        return out
    delta = points - geometry.position[ids]
    normal = geometry.normal[ids]
    axis = geometry.axis[ids]
    h = np.einsum("ij,ij->i", delta, normal)
    a = np.einsum("ij,ij->i", delta, axis)
    b = np.einsum("ij,ij->i", delta, geometry.axis2[ids])
    mppc = geometry.is_mppc[ids]
    out[mppc] = mppc_solid_angle(a[mppc], b[mppc], h[mppc]) / _FOUR_PI
    pmt = ~mppc
    out[pmt] = disc_solid_angle(np.hypot(a[pmt], b[pmt]), h[pmt]) / _FOUR_PI
    return out


#: fixed origin (cm) for the far-field matrix products: about the centre of the XEC, so that
#: |point|^2 and |sensor|^2 stay small next to the squared distances (float32-safe)
_ORIGIN = np.array([-85.0, 0.0, 0.0])


@lru_cache(maxsize=8)
def _far_matrices(geometry: Geometry, dtype) -> tuple[np.ndarray, ...]:
    """Per-sensor rows for the far-field products (cached per geometry and dtype).

    ``[p, |p|^2, 1] @ dist_rows.T = |p - s|^2`` and ``[p, 1] @ height_rows.T = n.(p - s)``
    (p, s relative to :data:`_ORIGIN`); ``area4pi`` = A / 4 pi, ``a_s2_45`` = 4.5 A s2 / 4 pi and
    ``a_s2_75`` = 7.5 A s2 / 4 pi per sensor.
    """
    s = geometry.position - _ORIGIN
    n = geometry.normal
    ones = np.ones((len(s), 1))
    dist_rows = np.hstack([-2.0 * s, ones, np.sum(s * s, axis=1, keepdims=True)])
    height_rows = np.hstack([n, -np.sum(s * n, axis=1, keepdims=True)])
    area4pi = geometry.area / _FOUR_PI
    out = (
        dist_rows,
        height_rows,
        area4pi,
        4.5 * area4pi * geometry.second_moment,
        7.5 * area4pi * geometry.second_moment,
    )
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in out)


def _multipole(h, inv_d2, area4pi, a_s2_45, a_s2_75) -> np.ndarray:
    """Second-order multipole Omega / 4 pi from heights h and 1 / d^2 (both overwritten).

    ``A / 4 pi * h / d^3 * (1 + s2 / d^2 * (4.5 - 7.5 h^2 / d^2))``, 0 where h <= 0.
    """
    # behind the sensor: 0 (fmax against a zero row takes numpy's fast path, a scalar does not)
    np.fmax(h, np.zeros(h.shape[-1], dtype=h.dtype), out=h)
    h *= inv_d2  # h / d^2
    corr = h * h  # h^2 / d^4
    corr *= -a_s2_75
    corr += area4pi
    np.sqrt(inv_d2, out=inv_d2)  # 1 / d
    h *= inv_d2  # h / d^3
    inv_d2 *= inv_d2  # 1 / d^2 again
    inv_d2 *= a_s2_45
    corr += inv_d2
    h *= corr
    return h


def multipole_fraction(
    h: np.ndarray, d2: np.ndarray, sensors: np.ndarray, geometry: Geometry | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """Multipole Omega / 4 pi of point-sensor pairs from their heights ``h`` (cm, along the
    sensor normal) and squared distances ``d2`` (cm^2, > 0), already computed by the caller;
    ``sensors`` holds the sensor ids, broadcastable to ``h``. The far-field expansion that
    :func:`solid_angle_fraction` uses beyond its exact radius; ``h`` and ``d2`` (of ``dtype``)
    are overwritten, the result is ``h``'s memory."""
    geometry = design_geometry() if geometry is None else geometry
    _, _, area4pi, a_s2_45, a_s2_75 = _far_matrices(geometry, np.dtype(dtype))
    np.divide(1.0, d2, out=d2)
    return _multipole(h, d2, area4pi[sensors], a_s2_45[sensors], a_s2_75[sensors])


def solid_angle_fraction(
    points: np.ndarray,
    geometry: Geometry | None = None,
    sensors: np.ndarray | None = None,
    *,
    exact_within: float | None = None,
    dtype=np.float64,
) -> np.ndarray:
    """Omega / 4 pi of sensors seen from ``points`` (M, 3) cm.

    ``sensors``: None (all 4760, result (M, 4760)), an index or boolean array (K,) (result
    (M, K)), or per-point subsets (M, K) (result (M, K), row j for point j). Pairs closer than
    ``exact_within`` sensor sizes use the exact formulas, the others the multipole expansion
    (module docstring; default :data:`EXACT_WITHIN_MPPC` / :data:`EXACT_WITHIN_PMT`, relative error
    < 1e-3); ``exact_within = inf`` forces the exact formulas everywhere. ``dtype``:
    float64 (default) or float32 for the far-field arithmetic (near pairs are always float64);
    the result has that dtype. Points behind a sensor give 0.
    """
    geometry = design_geometry() if geometry is None else geometry
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (M, 3), got {points.shape}")
    ids = _select(geometry, sensors)
    if ids is not None and ids.ndim == 2:
        return _per_point(points, geometry, ids, exact_within, dtype)
    dist_rows, height_rows, area4pi, a_s2_45, a_s2_75 = _far_matrices(geometry, np.dtype(dtype))
    if ids is not None:
        dist_rows, height_rows = dist_rows[ids], height_rows[ids]
        area4pi, a_s2_45, a_s2_75 = area4pi[ids], a_s2_45[ids], a_s2_75[ids]
    p = points - _ORIGIN
    ones = np.ones((len(p), 1))
    d2 = np.hstack([p, np.sum(p * p, axis=1, keepdims=True), ones]).astype(dtype) @ dist_rows.T
    h = np.hstack([p, ones]).astype(dtype) @ height_rows.T
    sel = slice(None) if ids is None else ids
    near_pt, near_k = _near_pairs(d2, _exact_radius2(geometry, sel, exact_within, d2.dtype))
    # d = 0 can only happen for near pairs, which are replaced below
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(1.0, d2, out=d2)
        out = _multipole(h, d2, area4pi, a_s2_45, a_s2_75)
    if len(near_pt):
        near_ids = near_k if ids is None else ids[near_k]
        out[near_pt, near_k] = _exact(points[near_pt], near_ids, geometry)
    return out


def _per_point(points, geometry, ids, exact_within, dtype) -> np.ndarray:
    if ids.shape[0] != points.shape[0]:
        raise ValueError(
            f"per-point sensors {ids.shape} need one row per point ({points.shape[0]})"
        )
    delta = (points[:, None, :] - geometry.position[ids]).astype(dtype)
    h = np.einsum("mkj,mkj->mk", delta, geometry.normal[ids].astype(dtype))
    d2 = np.einsum("mkj,mkj->mk", delta, delta)
    near_pt, near_k = _near_pairs(d2, _exact_radius2(geometry, ids, exact_within, d2.dtype))
    _, _, area4pi, a_s2_45, a_s2_75 = _far_matrices(geometry, np.dtype(dtype))
    with np.errstate(divide="ignore", invalid="ignore"):  # d = 0: near pairs, replaced below
        np.divide(1.0, d2, out=d2)
        out = _multipole(h, d2, area4pi[ids], a_s2_45[ids], a_s2_75[ids])
    if len(near_pt):
        out[near_pt, near_k] = _exact(points[near_pt], ids[near_pt, near_k], geometry)
    return out


def incidence_cosine(
    points: np.ndarray, geometry: Geometry | None = None, sensors: np.ndarray | None = None
) -> np.ndarray:
    """Cosine of the angle between each sensor's normal and the line from the sensor centre to
    each point, (M, n) (sensors as in :func:`solid_angle_fraction`; negative behind a sensor)."""
    geometry = design_geometry() if geometry is None else geometry
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (M, 3), got {points.shape}")
    ids = _select(geometry, sensors)
    if ids is None:
        ids = np.arange(geometry.n_sensors)
    if ids.ndim == 1:
        delta = points[:, None, :] - geometry.position[ids][None]
        h = np.einsum("mkj,kj->mk", delta, geometry.normal[ids])
    else:
        delta = points[:, None, :] - geometry.position[ids]
        h = np.einsum("mkj,mkj->mk", delta, geometry.normal[ids])
    d = np.linalg.norm(delta, axis=-1)
    return h / np.maximum(d, 1e-12)
