"""Face images: the rectangular faces as 2-D grids of sensor ids for convolutional models.

- INNER (93, 44): row = azimuth row (row 0 at the top, phi > 0), column = z (upstream first);
  cell (r, c) holds MPPC 44 r + c.
- OUTER (45, 72): row = z (upstream first), column = azimuth (top first). A fine grid on which the
  physical 9 (z) x 24 (azimuth) coarse PMT grid covers 5 x 3 cells per PMT and the dense central
  patch (5 z x 6 azimuth, 6.2 cm x 3.487 deg) covers 3 x 2 cells per PMT, refined in place:
  the patch spans exactly coarse z 3-5 and strips 10-13, so every cell holds exactly one of the
  234 outer PMTs and neighbouring cells hold the same or physically neighbouring PMTs.
- US, DS (24, 6): row = azimuth strip (top first), column = radial ring (innermost first).

TOP and BOTTOM are not images: see :mod:`xecreco.geometry.hexgraph`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from xecreco.geometry import constants as C
from xecreco.geometry.faces import Face, as_face
from xecreco.geometry.sensors import outer_dense_cells

#: fine outer cells per coarse PMT along z and along azimuth
OUTER_CELLS_PER_COARSE = (5, 3)
#: fine outer cells per dense-patch PMT along z and along azimuth
OUTER_CELLS_PER_DENSE = (3, 2)
#: first coarse z index and first coarse strip covered by the dense patch
OUTER_DENSE_FIRST_COARSE = (min(C.OUTER_DENSE_IZ_TO_Z), min(C.OUTER_DENSE_STRIP_TO_PHI))

FACE_IMAGE_SHAPES: dict[Face, tuple[int, int]] = {
    Face.INNER: (C.INNER_N_ROWS, C.INNER_N_COLS),
    Face.OUTER: (
        C.OUTER_N_Z * OUTER_CELLS_PER_COARSE[0],
        C.OUTER_N_STRIPS * OUTER_CELLS_PER_COARSE[1],
    ),
    Face.US: (C.SIDE_N_STRIPS, C.SIDE_N_RINGS),
    Face.DS: (C.SIDE_N_STRIPS, C.SIDE_N_RINGS),
}


def _outer_index() -> np.ndarray:
    n_z, n_phi = OUTER_CELLS_PER_COARSE
    index = np.full(FACE_IMAGE_SHAPES[Face.OUTER], -1, dtype=np.int64)
    for strip in range(C.OUTER_N_STRIPS):
        for iz in range(C.OUTER_N_Z):
            sensor = C.OUTER_COARSE_ID0 + C.OUTER_N_Z * strip + iz
            index[iz * n_z : (iz + 1) * n_z, strip * n_phi : (strip + 1) * n_phi] = sensor
    d_z, d_phi = OUTER_CELLS_PER_DENSE
    row0 = OUTER_DENSE_FIRST_COARSE[0] * n_z
    col0 = OUTER_DENSE_FIRST_COARSE[1] * n_phi
    for sensor, (i_phi, i_z) in outer_dense_cells().items():
        rows = slice(row0 + i_z * d_z, row0 + (i_z + 1) * d_z)
        cols = slice(col0 + i_phi * d_phi, col0 + (i_phi + 1) * d_phi)
        index[rows, cols] = sensor
    return index


@lru_cache(maxsize=None)
def _face_image_index(face: Face) -> np.ndarray:
    if face == Face.INNER:
        index = np.arange(C.INNER_COUNT, dtype=np.int64).reshape(FACE_IMAGE_SHAPES[face])
    elif face == Face.OUTER:
        index = _outer_index()
    elif face in (Face.US, Face.DS):
        id0 = C.US_ID0 if face == Face.US else C.DS_ID0
        index = (id0 + np.arange(C.US_COUNT, dtype=np.int64)).reshape(FACE_IMAGE_SHAPES[face])
    else:
        raise ValueError(f"face {face.name} has no image: use hex_graph({face.name}) instead")
    index.setflags(write=False)
    return index


def face_image_index(face: Face | int | str) -> np.ndarray:
    """(H, W) int64 sensor id in each cell of the face image (-1 if none; read-only).
    Defined for INNER, OUTER, US and DS (ValueError for TOP / BOTTOM)."""
    return _face_image_index(as_face(face))


def to_face_image(values: np.ndarray, face: Face | int | str, fill: float = 0.0) -> np.ndarray:
    """Paint per-sensor ``values`` (..., 4760) into the face image (..., H, W); cells without a
    sensor get ``fill``. A PMT covering several outer cells is copied into each."""
    index = face_image_index(face)
    values = np.asarray(values)
    image = values[..., np.where(index < 0, 0, index)]
    if np.any(index < 0):
        image = np.where(index < 0, fill, image)
    return image


@lru_cache(maxsize=None)
def _pooling(face: Face) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    flat = face_image_index(face).ravel()
    cells = np.flatnonzero(flat >= 0)
    order = cells[np.argsort(flat[cells], kind="stable")]
    sensors, starts, counts = np.unique(flat[order], return_index=True, return_counts=True)
    return order, sensors, starts, counts


def from_face_image(image: np.ndarray, face: Face | int | str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sensor means of a face image (..., H, W): returns (sensor ids (n,), values (..., n)),
    sensor ids ascending; each sensor gets the mean over the cells it covers."""
    face = as_face(face)
    order, sensors, starts, counts = _pooling(face)
    image = np.asarray(image)
    flat = image.reshape(*image.shape[:-2], -1)[..., order]
    sums = np.add.reduceat(flat, starts, axis=-1)
    return sensors, sums / counts
