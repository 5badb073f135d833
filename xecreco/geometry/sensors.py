"""Sensor table: positions, normals, faces and types of all 4760 sensors.

:func:`design_geometry` builds it analytically from :mod:`xecreco.geometry.constants`;
:func:`load_asbuilt` reads an as-built dump in the ``sensor_directions.txt`` format
(``id nx ny nz x y z face``, cm, face in MEG order). Both return a :class:`Geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import constants as C
from xecreco.geometry.faces import MEG_FACE_CODES, Face, is_mppc_ids, sensor_faces
from xecreco.geometry.uvw import azimuthal_unit, radial_unit, xyz_to_uvw


@dataclass(frozen=True, eq=False)
class Geometry:
    """Positions and orientations of the 4760 sensors (all arrays read-only, index = sensor id).

    Attributes: ``position`` (4760, 3) cm, centre of the photo-sensitive surface; ``normal``
    (4760, 3) unit vectors pointing into the xenon (the viewing direction); ``face`` (4760,) int8
    :class:`Face` values; ``is_mppc`` (4760,) bool; ``uvw`` (4760, 3) cm; ``axis`` (4760, 3) unit
    in-plane axis of the sensor (the MPPC chip rows run along it; the projection of +z, or of +x
    where the normal is close to z); ``axis2`` = normal x axis, the second in-plane axis;
    ``area`` (4760,) cm^2 active area; ``second_moment`` (4760,) cm^2, in-plane <x^2> of the
    active area; ``size`` (4760,) cm, full extent of the active area;
    ``source``: "design" or the as-built file path.
    """

    position: np.ndarray
    normal: np.ndarray
    face: np.ndarray
    is_mppc: np.ndarray
    source: str = "design"
    uvw: np.ndarray = field(init=False)
    axis: np.ndarray = field(init=False)
    axis2: np.ndarray = field(init=False)
    area: np.ndarray = field(init=False)
    second_moment: np.ndarray = field(init=False)
    size: np.ndarray = field(init=False)

    def __post_init__(self):
        derived = {
            "uvw": xyz_to_uvw(self.position),
            "axis": _sensor_axes(self.normal),
            "area": np.where(self.is_mppc, C.MPPC_ACTIVE_AREA, C.PMT_AREA),
            "second_moment": np.where(self.is_mppc, C.MPPC_SECOND_MOMENT, C.PMT_SECOND_MOMENT),
            "size": np.where(self.is_mppc, C.MPPC_SIZE, C.PMT_SIZE),
        }
        derived["axis2"] = np.cross(self.normal, derived["axis"])
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        for name in ("position", "normal", "face", "is_mppc", *derived):
            array = np.ascontiguousarray(getattr(self, name))
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def n_sensors(self) -> int:
        """Number of sensors (4760)."""
        return len(self.position)

    def face_counts(self) -> dict[Face, int]:
        """Number of sensors on each face."""
        counts = np.bincount(self.face, minlength=len(Face))
        return {face: int(counts[face]) for face in Face}


def _sensor_axes(normal: np.ndarray) -> np.ndarray:
    """Unit in-plane axis per sensor: +z projected onto the sensor plane (+x if n is near z)."""
    reference = np.zeros_like(normal)
    near_z = np.abs(normal[:, 2]) > 0.9
    reference[~near_z, 2] = 1.0
    reference[near_z, 0] = 1.0
    axis = reference - np.sum(reference * normal, axis=1, keepdims=True) * normal
    return axis / np.linalg.norm(axis, axis=1, keepdims=True)


# --- design geometry ------------------------------------------------------------------------------


def _inner() -> tuple[np.ndarray, np.ndarray]:
    row, col = np.divmod(np.arange(C.INNER_COUNT), C.INNER_N_COLS)
    phi = np.radians((0.5 * (C.INNER_N_ROWS - 1) - row) * C.INNER_PHI_PITCH_DEG)
    z = (col - 0.5 * (C.INNER_N_COLS - 1)) * C.INNER_Z_PITCH
    radial = radial_unit(phi)
    position = C.R_INNER * radial
    position[:, 2] = z
    return position, radial


def _outer_strip_phi(strip: np.ndarray) -> np.ndarray:
    """Azimuth (rad, from -x) of coarse outer / side strips; strip 0 at the top."""
    return np.radians((0.5 * (C.OUTER_N_STRIPS - 1) - strip) * C.OUTER_PHI_PITCH_DEG)


def outer_dense_cells() -> dict[int, tuple[int, int]]:
    """Sensor id -> (dense azimuth index, dense z index) for the 30 PMTs of the central patch.

    Azimuth index 0 is the top-most (largest phi), z index 0 the most upstream.
    """
    cells: dict[int, tuple[int, int]] = {}
    for strip, i_phi in C.OUTER_DENSE_STRIP_TO_PHI.items():
        for iz, i_z in C.OUTER_DENSE_IZ_TO_Z.items():
            cells[C.OUTER_COARSE_ID0 + C.OUTER_N_Z * strip + iz] = (i_phi, i_z)
    taken = set(cells.values())
    free = [
        (i_phi, i_z)
        for i_phi in range(C.OUTER_DENSE_N_PHI)
        for i_z in range(C.OUTER_DENSE_N_Z)
        if (i_phi, i_z) not in taken
    ]
    for offset, cell in enumerate(free):
        cells[C.OUTER_CENTRE_ID0 + offset] = cell
    return cells


def _outer(position: np.ndarray, normal: np.ndarray) -> None:
    ids = np.arange(C.OUTER_COARSE_ID0, C.OUTER_COARSE_ID0 + C.OUTER_COARSE_COUNT)
    strip, iz = np.divmod(ids - C.OUTER_COARSE_ID0, C.OUTER_N_Z)
    phi = _outer_strip_phi(strip)
    z = (iz - 0.5 * (C.OUTER_N_Z - 1)) * C.OUTER_Z_PITCH
    cells = outer_dense_cells()
    dense_ids = np.array(sorted(cells))
    i_phi, i_z = np.array([cells[i] for i in dense_ids]).T
    dense_phi = np.radians((0.5 * (C.OUTER_DENSE_N_PHI - 1) - i_phi) * C.OUTER_DENSE_PHI_PITCH_DEG)
    dense_z = (i_z - 0.5 * (C.OUTER_DENSE_N_Z - 1)) * C.OUTER_DENSE_Z_PITCH
    all_ids = np.concatenate([ids, dense_ids])
    all_phi = np.zeros(C.N_SENSORS)
    all_z = np.zeros(C.N_SENSORS)
    all_phi[ids], all_z[ids] = phi, z
    all_phi[dense_ids], all_z[dense_ids] = dense_phi, dense_z  # overrides the 12 coarse ids
    radial = radial_unit(all_phi[all_ids])
    position[all_ids] = C.R_OUTER * radial
    position[all_ids, 2] = all_z[all_ids]
    normal[all_ids] = -radial


def _sides(position: np.ndarray, normal: np.ndarray) -> None:
    tilt = np.radians(C.SIDE_NORMAL_TILT_DEG)
    for id0, sign in ((C.US_ID0, -1.0), (C.DS_ID0, +1.0)):
        ids = np.arange(id0, id0 + C.SIDE_N_STRIPS * C.SIDE_N_RINGS)
        strip, ring = np.divmod(ids - id0, C.SIDE_N_RINGS)
        radial = radial_unit(_outer_strip_phi(strip))
        r = C.SIDE_R0 + ring * C.SIDE_R_PITCH
        position[ids] = r[:, None] * radial
        position[ids, 2] = sign * (C.SIDE_Z0 + ring * C.SIDE_Z_PITCH)
        normal[ids] = np.sin(tilt) * radial
        normal[ids, 2] = -sign * np.cos(tilt)  # into the xenon: +z upstream, -z downstream


def hex_row_layout() -> tuple[np.ndarray, np.ndarray]:
    """(row, z) of the 73 sensors of a top/bottom face in id order: row index and z in cm."""
    rows, zs = [], []
    for row, length in enumerate(C.HEX_ROW_LENGTHS):
        rows.extend([row] * length)
        zs.extend((np.arange(length) - 0.5 * (length - 1)) * C.HEX_Z_PITCH)
    return np.array(rows), np.array(zs)


def _top_bottom(position: np.ndarray, normal: np.ndarray) -> None:
    row, z = hex_row_layout()
    r = C.HEX_R0 + row * C.HEX_R_PITCH
    for id0, sign in ((C.TOP_ID0, +1.0), (C.BOTTOM_ID0, -1.0)):
        ids = np.arange(id0, id0 + len(row))
        phi = np.full(len(row), sign * np.radians(C.TOP_PLANE_PHI_DEG))
        position[ids] = r[:, None] * radial_unit(phi)
        position[ids, 2] = z
        normal[ids] = -sign * azimuthal_unit(phi)  # towards phi = 0, i.e. into the xenon


@lru_cache(maxsize=1)
def design_geometry() -> Geometry:
    """The analytic design geometry of all 4760 sensors (cached; arrays are read-only)."""
    position = np.zeros((C.N_SENSORS, 3))
    normal = np.zeros((C.N_SENSORS, 3))
    position[: C.INNER_COUNT], normal[: C.INNER_COUNT] = _inner()
    _outer(position, normal)
    _sides(position, normal)
    _top_bottom(position, normal)
    return Geometry(position, normal, sensor_faces().copy(), is_mppc_ids(), source="design")


# --- as-built geometry ----------------------------------------------------------------------------


def load_asbuilt(path: str | Path) -> Geometry:
    """Read an as-built sensor dump (``sensor_directions.txt`` format).

    One line per sensor, ``id nx ny nz x y z face`` (cm; ``#`` comments allowed), face coded in
    the MEG order inner, outer, US, DS, top, bottom and converted through
    :data:`~xecreco.geometry.faces.MEG_FACE_CODES`. Normals are normalised to unit length.
    Raises :class:`UserError` when the file is missing, malformed, incomplete, or when a face code
    disagrees with the sensor id.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"as-built geometry file {path} does not exist: give a sensor_directions.txt-style file"
        )
    try:
        table = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as exc:
        raise UserError(
            f"as-built geometry file {path} is not a table of 'id nx ny nz x y z face' numbers "
            f"({exc})"
        ) from None
    if table.shape[1] != 8:
        raise UserError(
            f"as-built geometry file {path} has {table.shape[1]} columns, expected 8 "
            "(id nx ny nz x y z face)"
        )
    if not np.all(np.isfinite(table)):
        raise UserError(f"as-built geometry file {path} contains NaN or inf values: fix the file")
    ids = table[:, 0].astype(np.int64)
    if len(ids) != C.N_SENSORS or not np.array_equal(np.sort(ids), np.arange(C.N_SENSORS)):
        raise UserError(
            f"as-built geometry file {path} must list each sensor id 0-{C.N_SENSORS - 1} exactly "
            f"once (found {len(ids)} rows, {len(np.unique(ids))} distinct ids)"
        )
    table = table[np.argsort(ids)]
    codes = table[:, 7].astype(np.int64)
    unknown = sorted(set(codes.tolist()) - set(MEG_FACE_CODES))
    if unknown:
        raise UserError(
            f"as-built geometry file {path} has unknown face codes {unknown}: use 0-5 (inner, "
            "outer, US, DS, top, bottom)"
        )
    face = np.array([MEG_FACE_CODES[c] for c in codes], dtype=np.int8)
    mismatch = np.flatnonzero(face != sensor_faces())
    if mismatch.size:
        raise UserError(
            f"as-built geometry file {path}: face column disagrees with the sensor id for "
            f"{mismatch.size} sensors (first id {mismatch[0]}): the file must use the MEG face "
            "order"
        )
    normal = table[:, 1:4]
    length = np.linalg.norm(normal, axis=1)
    if np.any(np.abs(length - 1.0) > 1e-2):
        bad = int(np.argmax(np.abs(length - 1.0)))
        raise UserError(
            f"as-built geometry file {path}: normal of sensor {bad} has length {length[bad]:.4f}, "
            "expected unit vectors in columns 2-4"
        )
    return Geometry(
        table[:, 4:7].copy(), normal / length[:, None], face, is_mppc_ids(), source=str(path)
    )
