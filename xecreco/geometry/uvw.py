"""Coordinate transforms: global (x, y, z) <-> local (u, v, w), and direction <-> (theta, phi).

All lengths cm, angles deg. ``u = z``, ``v = R * phi`` with ``phi = atan2(y, -x)`` (the azimuth
measured from the -x axis, equal to ``pi - atan2(y, x)`` taken in [0, 2 pi) and wrapped to
(-pi, pi]), ``w = sqrt(x^2 + y^2) - R`` with R = :data:`R_INNER` = 64.97 cm (physics.md section 1).
"""

from __future__ import annotations

import numpy as np

from xecreco.geometry.constants import R_INNER


def phi_of(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Azimuth from the -x axis, ``atan2(y, -x)``, radians in (-pi, pi]."""
    return np.arctan2(y, -np.asarray(x))


def radial_unit(phi_rad: np.ndarray) -> np.ndarray:
    """Unit vector pointing away from the z axis at azimuth ``phi`` (from -x, rad), (..., 3)."""
    phi_rad = np.asarray(phi_rad, dtype=np.float64)
    return np.stack([-np.cos(phi_rad), np.sin(phi_rad), np.zeros_like(phi_rad)], axis=-1)


def azimuthal_unit(phi_rad: np.ndarray) -> np.ndarray:
    """Unit vector along increasing ``phi`` (from -x, rad): d(radial_unit)/d(phi), (..., 3)."""
    phi_rad = np.asarray(phi_rad, dtype=np.float64)
    return np.stack([np.sin(phi_rad), np.cos(phi_rad), np.zeros_like(phi_rad)], axis=-1)


def xyz_to_uvw(xyz: np.ndarray) -> np.ndarray:
    """Global (x, y, z) cm -> local (u, v, w) cm; arrays (..., 3)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([z, R_INNER * phi_of(x, y), np.hypot(x, y) - R_INNER], axis=-1)


def uvw_to_xyz(uvw: np.ndarray) -> np.ndarray:
    """Local (u, v, w) cm -> global (x, y, z) cm; arrays (..., 3)."""
    uvw = np.asarray(uvw, dtype=np.float64)
    u, v, w = uvw[..., 0], uvw[..., 1], uvw[..., 2]
    r = w + R_INNER
    phi = v / R_INNER
    return np.stack([-r * np.cos(phi), r * np.sin(phi), u], axis=-1)


def angles_to_direction(theta_deg: np.ndarray, phi_deg: np.ndarray) -> np.ndarray:
    """Unit vector (..., 3) from polar angle ``theta`` (deg, from +z) and ``phi`` (deg,
    ``atan2(y, -x)``): ``(-sin t cos p, sin t sin p, cos t)``."""
    theta = np.radians(np.asarray(theta_deg, dtype=np.float64))
    phi = np.radians(np.asarray(phi_deg, dtype=np.float64))
    sin_t = np.sin(theta)
    return np.stack([-sin_t * np.cos(phi), sin_t * np.sin(phi), np.cos(theta)], axis=-1)


def direction_to_angles(vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(theta, phi) in deg of vectors (..., 3) (need not be unit length)."""
    vec = np.asarray(vec, dtype=np.float64)
    x, y, z = vec[..., 0], vec[..., 1], vec[..., 2]
    theta = np.degrees(np.arctan2(np.hypot(x, y), z))
    phi = np.degrees(phi_of(x, y))
    return theta, phi
