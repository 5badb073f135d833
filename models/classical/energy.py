"""Photon energy: dead-channel recovery, weighted photon sum, depth-dependent scale.

- Dead (invalid) sensors are recovered from their nearest same-face neighbours within
  ``recovery_radius_cm``: n_dead = sum(n_nb) * Omega_dead / sum(Omega_nb), with Omega seen from
  the fitted light point; the plain neighbour mean when sum(n_nb) < ``recovery_min_sum`` or no
  point is available (physics.md section 8).
- The weighted sum adds the photons of each sensor group (inner, outer coarse, outer centre,
  US, DS, top, bottom) with a light-collection weight per group (calibration).
- Energy (GeV) = weighted sum * scale(w), the scale table versus the reconstructed depth coming
  from the calibration.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

from xecreco.geometry import N_SENSORS, Face, design_geometry, solid_angle_fraction
from xecreco.models.classical.calibration import SENSOR_GROUPS, ClassicalCalibration, interp_table

#: Outer PMTs whose nearest outer neighbour is closer than this belong to the dense centre (cm).
OUTER_CENTRE_MAX_SPACING = 8.0


@lru_cache(maxsize=1)
def sensor_groups() -> np.ndarray:
    """(4760,) int index into :data:`SENSOR_GROUPS` for every sensor (design geometry)."""
    geometry = design_geometry()
    face = np.asarray(geometry.face)
    group = np.empty(N_SENSORS, dtype=np.int64)
    face_to_group = {
        Face.INNER: "inner",
        Face.OUTER: "outer_coarse",
        Face.US: "us",
        Face.DS: "ds",
        Face.TOP: "top",
        Face.BOTTOM: "bottom",
    }
    for f, name in face_to_group.items():
        group[face == int(f)] = SENSOR_GROUPS.index(name)
    outer = np.flatnonzero(face == int(Face.OUTER))
    pos = np.asarray(geometry.position)[outer]
    dist = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    np.fill_diagonal(dist, np.inf)
    centre = outer[dist.min(axis=1) < OUTER_CENTRE_MAX_SPACING]
    group[centre] = SENSOR_GROUPS.index("outer_centre")
    return group


@lru_cache(maxsize=4)
def neighbour_table(radius_cm: float, count: int) -> np.ndarray:
    """(4760, count) ids of the ``count`` nearest same-face sensors within ``radius_cm``
    (nearest first, -1 padding), design geometry."""
    geometry = design_geometry()
    pos = np.asarray(geometry.position)
    face = np.asarray(geometry.face)
    table = np.full((N_SENSORS, count), -1, dtype=np.int64)
    for f in np.unique(face):
        ids = np.flatnonzero(face == f)
        k = min(count, len(ids) - 1)
        dist, order = cKDTree(pos[ids]).query(pos[ids], k=k + 1)  # first hit is the sensor itself
        near = dist[:, 1:] < radius_cm
        table[ids, :k] = np.where(near, ids[order[:, 1:]], -1)
    return table


def recover_dead(
    npho: np.ndarray,
    valid: np.ndarray,
    point_xyz: np.ndarray,
    has_point: np.ndarray,
    calibration: ClassicalCalibration,
) -> np.ndarray:
    """(N, 4760) float64 photons with invalid sensors replaced by neighbour estimates.

    The neighbours of a dead sensor are its ``recovery_neighbours`` nearest same-face sensors
    within ``recovery_radius_cm``. ``point_xyz`` (N, 3) cm is the light point used for the
    solid-angle weighting; events with ``has_point`` False use the plain neighbour mean.
    """
    out = np.where(valid, npho, 0.0).astype(np.float64)
    dead_cols = np.flatnonzero((~valid).any(axis=0))
    n_events = len(out)
    if len(dead_cols) == 0 or n_events == 0:
        return out
    table = neighbour_table(float(calibration.recovery_radius_cm), int(calibration.recovery_neighbours))
    nbr = table[dead_cols]  # (D, K)
    exists = nbr >= 0
    nbr_safe = np.where(exists, nbr, dead_cols[:, None])
    nb_valid = valid[:, nbr_safe] & exists[None]  # (N, D, K)
    nb_n = np.where(nb_valid, out[:, nbr_safe], 0.0)
    sum_n = nb_n.sum(axis=2)
    count = nb_valid.sum(axis=2)
    estimate = sum_n / np.maximum(count, 1)
    use_omega = has_point[:, None] & (sum_n >= calibration.recovery_min_sum)
    rows = np.flatnonzero(use_omega.any(axis=1))
    if len(rows):
        ids = np.concatenate([dead_cols[:, None], nbr_safe], axis=1)  # (D, K + 1)
        points = np.repeat(point_xyz[rows], len(dead_cols), axis=0)
        omega = solid_angle_fraction(points, sensors=np.tile(ids, (len(rows), 1)))
        omega = omega.reshape(len(rows), len(dead_cols), -1)
        sum_o = np.where(nb_valid[rows], omega[:, :, 1:], 0.0).sum(axis=2)
        ratio = np.divide(omega[:, :, 0], sum_o, out=np.zeros_like(sum_o), where=sum_o > 0)
        estimate[rows] = np.where(use_omega[rows] & (sum_o > 0), sum_n[rows] * ratio, estimate[rows])
    out[:, dead_cols] = np.where(valid[:, dead_cols], out[:, dead_cols], estimate)
    return out


def group_sums(npho: np.ndarray) -> np.ndarray:
    """(N, 7) photon sum per sensor group (:data:`SENSOR_GROUPS` order)."""
    groups = sensor_groups()
    onehot = np.zeros((N_SENSORS, len(SENSOR_GROUPS)))
    onehot[np.arange(N_SENSORS), groups] = 1.0
    return npho @ onehot


def energy_from_sums(sums: np.ndarray, w_cm: np.ndarray, calibration: ClassicalCalibration) -> np.ndarray:
    """Energy (N,) GeV from group sums (N, 7) and the reconstructed depth (N,) cm."""
    weighted = sums @ np.asarray(calibration.group_weights, float)
    scale = interp_table(w_cm, calibration.energy_table_cm, calibration.energy_scale)
    return weighted * scale


def exclude_pileup_light(
    npho: np.ndarray, cluster_mask: np.ndarray, expected: np.ndarray
) -> np.ndarray:
    """(N, 4760) photons with the inner sensors of pile-up clusters set to the signal model.

    ``cluster_mask`` (N, 4092) bool from
    :func:`~xecreco.models.classical.pileup.pileup_cluster_mask`,
    ``expected`` (N, 4092) the signal light model S Omega_i (photons) on the inner MPPCs; the
    light of a separated pile-up cluster is so left out of the photon sums.
    """
    out = np.array(npho, dtype=np.float64, copy=True)
    n_inner = cluster_mask.shape[1]
    out[:, :n_inner] = np.where(cluster_mask, expected, out[:, :n_inner])
    return out
