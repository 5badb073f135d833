"""Same-face neighbour tables used by the dead-channel inpainting baselines.

A neighbour table is a sparse (4760, 4760) 0/1 matrix ``A`` with ``A[i, j] = 1`` when sensor j is
on the same face as sensor i, within a distance of i, and ``j != i``. Row sums of ``A @ x`` give
the neighbour sums of a per-sensor quantity ``x`` for every sensor at once, which is how the
baselines work on whole batches without Python loops over sensors.

All distances are straight-line distances between sensor centres, in cm, taken from the
geometry (design or as-built). Tables are cached per geometry object.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from xecreco.geometry import Geometry, design_geometry

__all__ = ["cached", "immediate_neighbours", "radius_neighbours", "nearest_spacing_cm",
           "padded_rows"]

# (geometry object, key) -> value. The geometry object itself is kept so an id is never reused.
_CACHE: dict[tuple[int, object], tuple[object, object]] = {}


def cached(geometry: Geometry, key, build):
    """``build()`` computed once per (geometry object, key)."""
    slot = (id(geometry), key)
    hit = _CACHE.get(slot)
    if hit is not None and hit[0] is geometry:
        return hit[1]
    value = build()
    _CACHE[slot] = (geometry, value)
    return value


def _faces(geometry: Geometry) -> list[np.ndarray]:
    face = np.asarray(geometry.face)
    return [np.flatnonzero(face == f) for f in np.unique(face)]


def nearest_spacing_cm(geometry: Geometry | None = None) -> np.ndarray:
    """Distance (cm) from every sensor to its nearest same-face sensor, shape (4760,)."""
    geometry = geometry or design_geometry()

    def build():
        out = np.zeros(len(geometry.face), dtype=np.float64)
        for ids in _faces(geometry):
            tree = cKDTree(geometry.position[ids])
            dist, _ = tree.query(geometry.position[ids], k=2)
            out[ids] = dist[:, 1]
        return out

    return cached(geometry, "nearest", build)


def _pairs_to_matrix(n: int, rows: list[np.ndarray], cols: list[np.ndarray]) -> sp.csr_matrix:
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    data = np.ones(len(r), dtype=np.float64)
    matrix = sp.csr_matrix((data, (r, c)), shape=(n, n))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def radius_neighbours(radius_cm: float, geometry: Geometry | None = None) -> sp.csr_matrix:
    """Sparse (4760, 4760) matrix: same-face sensors within ``radius_cm`` (cm), self excluded."""
    geometry = geometry or design_geometry()

    def build():
        rows, cols = [], []
        for ids in _faces(geometry):
            tree = cKDTree(geometry.position[ids])
            pairs = tree.query_pairs(float(radius_cm), output_type="ndarray")
            if len(pairs):
                a, b = ids[pairs[:, 0]], ids[pairs[:, 1]]
                rows += [a, b]
                cols += [b, a]
        return _pairs_to_matrix(len(geometry.face), rows, cols)

    return cached(geometry, ("radius", float(radius_cm)), build)


def immediate_neighbours(geometry: Geometry | None = None, factor: float = 1.5) -> sp.csr_matrix:
    """Sparse (4760, 4760) matrix of each sensor's immediate same-face neighbours.

    Sensor j neighbours i when their distance is at most ``factor`` times the face's median
    nearest-sensor spacing, or at most 1.2 times i's (or j's) own nearest spacing (so sensors
    at the edge of a denser patch keep their coarse-grid neighbours). With the default factor
    this is the 3 x 3 ring on the MPPC and PMT grids and the 6 hexagonal neighbours on the
    top and bottom faces.
    """
    geometry = geometry or design_geometry()

    def build():
        spacing = nearest_spacing_cm(geometry)
        rows, cols = [], []
        for ids in _faces(geometry):
            pos = geometry.position[ids]
            face_radius = factor * float(np.median(spacing[ids]))
            reach = np.maximum(face_radius, 1.2 * spacing[ids])
            tree = cKDTree(pos)
            pairs = tree.query_pairs(float(reach.max()), output_type="ndarray")
            if not len(pairs):
                continue
            dist = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
            keep = dist <= np.maximum(reach[pairs[:, 0]], reach[pairs[:, 1]])
            a, b = ids[pairs[keep, 0]], ids[pairs[keep, 1]]
            rows += [a, b]
            cols += [b, a]
        return _pairs_to_matrix(len(geometry.face), rows, cols)

    return cached(geometry, ("immediate", float(factor)), build)


def padded_rows(matrix: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    """Column indices of the given rows of a CSR matrix as an (n, K) int array, -1 padded."""
    rows = np.asarray(rows, dtype=np.int64)
    starts, stops = matrix.indptr[rows], matrix.indptr[rows + 1]
    lengths = stops - starts
    width = int(lengths.max()) if len(rows) else 0
    out = np.full((len(rows), max(width, 1)), -1, dtype=np.int64)
    if len(rows) and width:
        col = np.arange(width)
        mask = col[None, :] < lengths[:, None]
        out[mask] = matrix.indices[(starts[:, None] + col[None, :])[mask]]
    return out
