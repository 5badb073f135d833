"""XEC sensor geometry: the single source of sensor positions, normals, faces, sensor types,
(u, v, w) transforms, face images, hex graphs and solid angles (lengths cm, angles deg).

Modules: ``constants`` (design numbers), ``faces`` (Face enum, id ranges), ``sensors``
(:class:`Geometry`, design and as-built), ``uvw`` (coordinate transforms), ``images`` (face
images), ``hexgraph`` (top/bottom graphs), ``solid_angle`` (Omega / 4 pi, incidence cosines),
``table`` (the sensor table written by ``xecreco geometry``).
"""

from xecreco.geometry.constants import N_SENSORS, R_INNER, R_OUTER
from xecreco.geometry.faces import FACE_COUNTS, MEG_FACE_CODES, Face, as_face, face_ids
from xecreco.geometry.hexgraph import HexGraph, hex_graph, opposite_direction
from xecreco.geometry.images import (
    FACE_IMAGE_SHAPES,
    face_image_index,
    from_face_image,
    to_face_image,
)
from xecreco.geometry.sensors import Geometry, design_geometry, load_asbuilt
from xecreco.geometry.solid_angle import (
    disc_solid_angle,
    incidence_cosine,
    mppc_solid_angle,
    solid_angle_fraction,
)
from xecreco.geometry.table import SENSOR_TABLE_COLUMNS, sensor_table, write_sensor_csv
from xecreco.geometry.uvw import (
    angles_to_direction,
    direction_to_angles,
    uvw_to_xyz,
    xyz_to_uvw,
)

__all__ = [
    "FACE_COUNTS",
    "FACE_IMAGE_SHAPES",
    "Face",
    "Geometry",
    "HexGraph",
    "MEG_FACE_CODES",
    "N_SENSORS",
    "R_INNER",
    "R_OUTER",
    "SENSOR_TABLE_COLUMNS",
    "angles_to_direction",
    "as_face",
    "design_geometry",
    "direction_to_angles",
    "disc_solid_angle",
    "face_ids",
    "face_image_index",
    "from_face_image",
    "hex_graph",
    "incidence_cosine",
    "load_asbuilt",
    "mppc_solid_angle",
    "opposite_direction",
    "sensor_table",
    "solid_angle_fraction",
    "to_face_image",
    "uvw_to_xyz",
    "write_sensor_csv",
    "xyz_to_uvw",
]
