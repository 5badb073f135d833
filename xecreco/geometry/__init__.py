"""XEC sensor geometry: the single source of sensor positions, normals, faces, sensor types,
(u, v, w) transforms, face images, hex graphs and solid angles (lengths cm, angles deg).

Modules: ``constants`` (design numbers, the sensor count, light speeds), ``faces`` (Face enum, id
ranges), ``sensors`` (:class:`Geometry`, design and as-built), ``uvw`` (coordinate transforms),
``images`` (face images), ``hexgraph`` (top/bottom graphs), ``solid_angle`` (Omega / 4 pi,
incidence cosines), ``table`` (the sensor table written by ``xecreco geometry``).

The common names are importable from here. They are loaded on first use, so importing
``xecreco.geometry.constants`` (as the I/O schema does for the sensor count) does not load scipy.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "N_SENSORS": "constants",
    "R_INNER": "constants",
    "R_OUTER": "constants",
    "FACE_COUNTS": "faces",
    "MEG_FACE_CODES": "faces",
    "Face": "faces",
    "as_face": "faces",
    "face_ids": "faces",
    "HexGraph": "hexgraph",
    "hex_graph": "hexgraph",
    "opposite_direction": "hexgraph",
    "FACE_IMAGE_SHAPES": "images",
    "face_image_index": "images",
    "from_face_image": "images",
    "to_face_image": "images",
    "Geometry": "sensors",
    "design_geometry": "sensors",
    "load_asbuilt": "sensors",
    "disc_solid_angle": "solid_angle",
    "incidence_cosine": "solid_angle",
    "mppc_solid_angle": "solid_angle",
    "solid_angle_fraction": "solid_angle",
    "SENSOR_TABLE_COLUMNS": "table",
    "sensor_table": "table",
    "write_sensor_csv": "table",
    "angles_to_direction": "uvw",
    "direction_to_angles": "uvw",
    "uvw_to_xyz": "uvw",
    "xyz_to_uvw": "uvw",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"xecreco.geometry.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xecreco.geometry' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
