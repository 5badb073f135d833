"""The six XEC faces: the canonical :class:`Face` enum and which sensor ids belong to each face."""

from __future__ import annotations

from enum import IntEnum
from functools import lru_cache

import numpy as np

from xecreco.geometry import constants as C


class Face(IntEnum):
    """Detector face. The values follow the face order of MEG tools' files
    (inner, outer, US, DS, top, bottom); convert explicitly with :data:`MEG_FACE_CODES`."""

    INNER = 0
    OUTER = 1
    US = 2
    DS = 3
    TOP = 4
    BOTTOM = 5


#: face code used in MEG files (``sensor_directions.txt`` face column) -> :class:`Face`
MEG_FACE_CODES: dict[int, Face] = {
    0: Face.INNER,
    1: Face.OUTER,
    2: Face.US,
    3: Face.DS,
    4: Face.TOP,
    5: Face.BOTTOM,
}

#: number of sensors on each face
FACE_COUNTS: dict[Face, int] = {
    Face.INNER: C.INNER_COUNT,
    Face.OUTER: C.OUTER_COARSE_COUNT + C.OUTER_CENTRE_COUNT,
    Face.US: C.US_COUNT,
    Face.DS: C.DS_COUNT,
    Face.TOP: C.TOP_COUNT,
    Face.BOTTOM: C.BOTTOM_COUNT,
}


@lru_cache(maxsize=1)
def _sensor_faces() -> np.ndarray:
    face = np.empty(C.N_SENSORS, dtype=np.int8)
    face[C.INNER_ID0 : C.INNER_ID0 + C.INNER_COUNT] = Face.INNER
    face[C.OUTER_COARSE_ID0 : C.OUTER_COARSE_ID0 + C.OUTER_COARSE_COUNT] = Face.OUTER
    face[C.US_ID0 : C.US_ID0 + C.US_COUNT] = Face.US
    face[C.DS_ID0 : C.DS_ID0 + C.DS_COUNT] = Face.DS
    face[C.TOP_ID0 : C.TOP_ID0 + C.TOP_COUNT] = Face.TOP
    face[C.BOTTOM_ID0 : C.BOTTOM_ID0 + C.BOTTOM_COUNT] = Face.BOTTOM
    face[C.OUTER_CENTRE_ID0 : C.OUTER_CENTRE_ID0 + C.OUTER_CENTRE_COUNT] = Face.OUTER
    face.setflags(write=False)
    return face


def sensor_faces() -> np.ndarray:
    """Face of every sensor id, (4760,) int8 (read-only)."""
    return _sensor_faces()


def face_ids(face: Face | int | str) -> np.ndarray:
    """Sensor ids of ``face`` in ascending order, int64 (outer: 216 coarse ids then 4742-4759)."""
    return np.flatnonzero(_sensor_faces() == as_face(face)).astype(np.int64)


def is_mppc_ids() -> np.ndarray:
    """(4760,) bool: True for the inner-face MPPCs (ids 0-4091), False for the PMTs."""
    mask = np.zeros(C.N_SENSORS, dtype=bool)
    mask[: C.N_MPPC] = True
    return mask


def as_face(face: Face | int | str) -> Face:
    """A :class:`Face` from an enum, its value or its (case-insensitive) name."""
    if isinstance(face, str):
        try:
            return Face[face.upper()]
        except KeyError:
            names = ", ".join(f.name.lower() for f in Face)
            raise ValueError(f"unknown face '{face}': use one of {names}") from None
    return Face(int(face))
