"""Hexagonal graphs of the TOP and BOTTOM PMT faces, built from sensor positions.

Two PMTs are neighbours when their centres are closer than :data:`HEX_NEIGHBOUR_DISTANCE`
(8 cm: 6.12 cm along a row, 7.56 cm between staggered rows); never from a row-parity rule.
Direction types come from the in-plane angle of the step from a sensor to its neighbour in the
(z, r) plane of the face (r = distance from the beam axis), binned in 60 degree sectors:
type 1 = +z (0 deg), 2 = 60 deg (outwards, +z), 3 = 120 deg (outwards, -z), 4 = -z (180 deg),
5 = 240 deg (inwards, -z), 6 = 300 deg (inwards, +z); 0 = self or padding. Opposite directions
have types t and t +- 3. Column t of ``neighbours`` holds the neighbour of type t, so column 0
is the sensor itself and missing neighbours are -1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from xecreco.geometry.constants import HEX_NEIGHBOUR_DISTANCE
from xecreco.geometry.faces import Face, as_face, face_ids
from xecreco.geometry.sensors import Geometry, design_geometry

#: number of direction types plus self
N_HEX_SLOTS = 7


@dataclass(frozen=True, eq=False)
class HexGraph:
    """Graph of one hex face. ``sensor_ids`` (n,) global ids; ``neighbours`` (n, 7) local indices
    (column 0 = self, column t = neighbour in direction t, -1 = none); ``direction`` (n, 7)
    direction types (0 for self and padding); ``position`` (n, 3) cm; ``plane`` (n, 2) in-plane
    (z, r) cm."""

    face: Face
    sensor_ids: np.ndarray
    neighbours: np.ndarray
    direction: np.ndarray
    position: np.ndarray
    plane: np.ndarray

    @property
    def n_nodes(self) -> int:
        """Number of sensors (73)."""
        return len(self.sensor_ids)


def opposite_direction(direction: np.ndarray) -> np.ndarray:
    """The direction type pointing the other way (1 <-> 4, 2 <-> 5, 3 <-> 6; 0 stays 0)."""
    direction = np.asarray(direction)
    return np.where(direction > 0, (direction + 2) % 6 + 1, 0)


def build_hex_graph(face: Face, geometry: Geometry) -> HexGraph:
    """:class:`HexGraph` of ``face`` (TOP or BOTTOM) from the positions in ``geometry``."""
    if face not in (Face.TOP, Face.BOTTOM):
        raise ValueError(f"face {face.name} is not a hex face: use TOP or BOTTOM")
    ids = face_ids(face)
    position = geometry.position[ids]
    plane = np.stack([position[:, 2], np.hypot(position[:, 0], position[:, 1])], axis=1)
    step = plane[None, :, :] - plane[:, None, :]  # step[i, j] = j - i
    dist = np.linalg.norm(step, axis=-1)
    angle = np.degrees(np.arctan2(step[..., 1], step[..., 0])) % 360.0
    kind = (np.round(angle / 60.0).astype(np.int64) % 6) + 1
    n = len(ids)
    neighbours = np.full((n, N_HEX_SLOTS), -1, dtype=np.int64)
    direction = np.zeros((n, N_HEX_SLOTS), dtype=np.int64)
    neighbours[:, 0] = np.arange(n)
    for i in range(n):
        for j in np.flatnonzero((dist[i] < HEX_NEIGHBOUR_DISTANCE) & (np.arange(n) != i)):
            t = kind[i, j]
            if neighbours[i, t] >= 0:
                raise ValueError(
                    f"{face.name} sensors {ids[neighbours[i, t]]} and {ids[j]} are both in "
                    f"direction {t} of sensor {ids[i]}: the positions are not a hexagonal lattice"
                )
            neighbours[i, t] = j
            direction[i, t] = t
    for array in (ids, neighbours, direction, position, plane):
        array.setflags(write=False)
    return HexGraph(face, ids, neighbours, direction, position, plane)


@lru_cache(maxsize=None)
def _design_hex_graph(face: Face) -> HexGraph:
    return build_hex_graph(face, design_geometry())


def hex_graph(face: Face | int | str, geometry: Geometry | None = None) -> HexGraph:
    """:class:`HexGraph` of TOP or BOTTOM (design geometry by default, cached)."""
    face = as_face(face)
    if geometry is None:
        return _design_hex_graph(face)
    return build_hex_graph(face, geometry)
