"""The sensor table (what ``xecreco geometry`` writes): one row per sensor.

Columns: ``id``, ``face`` (inner, outer, us, ds, top, bottom), ``type`` (MPPC or PMT), ``x``,
``y``, ``z`` (cm), ``nx``, ``ny``, ``nz`` (unit normal into the xenon), ``u``, ``v``, ``w`` (cm).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry.faces import Face
from xecreco.geometry.sensors import Geometry, design_geometry

SENSOR_TABLE_COLUMNS = ("id", "face", "type", "x", "y", "z", "nx", "ny", "nz", "u", "v", "w")


def sensor_table(geometry: Geometry | None = None) -> dict[str, np.ndarray]:
    """Column name -> array (4760,) of the sensor table (see the module docstring)."""
    geometry = design_geometry() if geometry is None else geometry
    names = np.array([face.name.lower() for face in Face])
    table: dict[str, np.ndarray] = {
        "id": np.arange(geometry.n_sensors),
        "face": names[geometry.face],
        "type": np.where(geometry.is_mppc, "MPPC", "PMT"),
    }
    for i, axis in enumerate("xyz"):
        table[axis] = geometry.position[:, i]
    for i, axis in enumerate("xyz"):
        table[f"n{axis}"] = geometry.normal[:, i]
    for i, axis in enumerate("uvw"):
        table[axis] = geometry.uvw[:, i]
    return table


def write_sensor_csv(path: str | Path, geometry: Geometry | None = None) -> Path:
    """Write the sensor table as CSV (header line, then one row per sensor; lengths with 6
    decimals in cm, normals with 8). Written to a temporary name in the same folder and renamed
    on success. Returns the path. Raises :class:`UserError` when the folder does not exist or
    is not writable."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: folder {path.parent} does not exist")
    table = sensor_table(geometry)
    for column in SENSOR_TABLE_COLUMNS[3:]:
        table[column] = np.round(table[column], 8) + 0.0  # no "-0.000000"
    lines = [",".join(SENSOR_TABLE_COLUMNS)]
    for i in range(len(table["id"])):
        row = [str(table["id"][i]), str(table["face"][i]), str(table["type"][i])]
        row += [f"{table[c][i]:.6f}" for c in ("x", "y", "z")]
        row += [f"{table[c][i]:.8f}" for c in ("nx", "ny", "nz")]
        row += [f"{table[c][i]:.6f}" for c in ("u", "v", "w")]
        lines.append(",".join(row))
    from xecreco.io.paths import atomic_output  # .NAME.<pid>.<random>.tmp, cleaned up if stale

    try:
        with atomic_output(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
