"""The active liquid-xenon volume seen by the simulation (lengths cm).

Bounded by the inner MPPC photo-surface (r = R_INNER), the outer PMT surface (r = R_OUTER), the
flat top / bottom planes at azimuth +-62.76 deg from -x, and the upstream / downstream cones
through the side PMT rings (|z| grows by 2.337 cm per 6.684 cm of radius). All numbers come from
:mod:`xecreco.geometry.constants`; nothing here is a tunable parameter.
"""

from __future__ import annotations

import numpy as np

from xecreco.geometry.constants import (
    R_INNER,
    R_OUTER,
    SIDE_R0,
    SIDE_R_PITCH,
    SIDE_Z0,
    SIDE_Z_PITCH,
    TOP_PLANE_PHI_DEG,
)

#: |phi| limit of the active volume (rad, phi measured from -x)
HALF_AZIMUTH_RAD = np.radians(TOP_PLANE_PHI_DEG)
#: slope of the lateral cone, d|z| / dr
LATERAL_SLOPE = SIDE_Z_PITCH / SIDE_R_PITCH


def lateral_z_limit(r: np.ndarray) -> np.ndarray:
    """Largest |z| (cm) inside the volume at cylindrical radius ``r`` (cm)."""
    return SIDE_Z0 + LATERAL_SLOPE * (np.asarray(r) - SIDE_R0)


def inside_active(points: np.ndarray) -> np.ndarray:
    """Boolean (...,) mask of points (..., 3) cm that lie in the active xenon."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    r = np.hypot(x, y)
    phi = np.arctan2(y, -x)
    return (
        (r >= R_INNER)
        & (r <= R_OUTER)
        & (np.abs(phi) <= HALF_AZIMUTH_RAD)
        & (np.abs(z) <= lateral_z_limit(r))
    )


def entry_distance(origin: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Distance (cm) along unit ``direction`` (N, 3) from ``origin`` (N, 3), inside the inner
    cylinder, to the inner photo-surface r = R_INNER."""
    a = direction[:, 0] ** 2 + direction[:, 1] ** 2
    b = 2.0 * (origin[:, 0] * direction[:, 0] + origin[:, 1] * direction[:, 1])
    c = origin[:, 0] ** 2 + origin[:, 1] ** 2 - R_INNER**2
    return (-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)
