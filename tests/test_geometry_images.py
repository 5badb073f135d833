"""Face images and hex graphs checked against the reference sensor positions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from xecreco.geometry import (
    FACE_IMAGE_SHAPES,
    Face,
    face_ids,
    face_image_index,
    from_face_image,
    hex_graph,
    load_asbuilt,
    opposite_direction,
    to_face_image,
)
from xecreco.geometry import constants as C
from xecreco.geometry.sensors import outer_dense_cells

IMAGE_FACES = (Face.INNER, Face.OUTER, Face.US, Face.DS)


@pytest.fixture(scope="module")
def ref_position(reference_dir):
    return np.loadtxt(reference_dir / "sensor_positions.txt")[:, 1:4]


def _nearest_distance(position, ids):
    """Distance from each sensor of ``ids`` to its nearest other sensor of the same set, cm."""
    distance, _ = cKDTree(position[ids]).query(position[ids], k=2)
    return dict(zip(ids.tolist(), distance[:, 1]))


def test_image_shapes_and_every_sensor_appears():
    assert FACE_IMAGE_SHAPES[Face.INNER] == (93, 44)
    assert FACE_IMAGE_SHAPES[Face.OUTER] == (45, 72)
    assert FACE_IMAGE_SHAPES[Face.US] == FACE_IMAGE_SHAPES[Face.DS] == (24, 6)
    for face in IMAGE_FACES:
        index = face_image_index(face)
        assert index.shape == FACE_IMAGE_SHAPES[face]
        present = np.unique(index[index >= 0])
        assert np.array_equal(present, face_ids(face)), face  # all sensors, nothing else
    outer = face_image_index(Face.OUTER)
    assert (outer >= 0).all()
    cells = np.bincount(outer.ravel() - C.OUTER_COARSE_ID0)
    dense = np.array(sorted(outer_dense_cells())) - C.OUTER_COARSE_ID0
    assert np.all(cells[dense] == 6)  # 3 (z) x 2 (azimuth) fine cells per dense-patch PMT
    coarse = np.setdiff1d(face_ids(Face.OUTER) - C.OUTER_COARSE_ID0, dense)
    assert np.all(cells[coarse] == 15)  # 5 x 3 per coarse PMT
    assert face_image_index("inner")[1, 0] == 44
    with pytest.raises(ValueError, match="hex_graph"):
        face_image_index(Face.TOP)


def _neighbour_violations(index, face, ref_position):
    """Adjacent cell pairs holding different sensors that are not physical neighbours: farther
    than 1.6 local pitches or closer than 0.7 (local pitch = the larger nearest-neighbour
    distance of the two sensors, from the reference file). Returns (violations, pairs checked)."""
    ids = face_ids(face)
    nearest = np.zeros(4760)
    nearest[ids] = list(_nearest_distance(ref_position, ids).values())
    pairs = np.concatenate(
        [
            np.stack([index[1:, :].ravel(), index[:-1, :].ravel()], 1),
            np.stack([index[:, 1:].ravel(), index[:, :-1].ravel()], 1),
        ]
    )
    pairs = pairs[(pairs >= 0).all(axis=1) & (pairs[:, 0] != pairs[:, 1])]
    s, t = pairs.T
    distance = np.linalg.norm(ref_position[s] - ref_position[t], axis=1)
    bad = (distance > 1.6 * np.maximum(nearest[s], nearest[t])) | (
        distance < 0.7 * np.minimum(nearest[s], nearest[t])
    )
    return int(bad.sum()), len(pairs), distance


@pytest.mark.parametrize("face", IMAGE_FACES, ids=lambda f: f.name)
def test_neighbouring_cells_are_neighbouring_sensors(face, ref_position):
    index = face_image_index(face)
    violations, checked, distance = _neighbour_violations(index, face, ref_position)
    assert checked > 0 and violations == 0
    assert distance.max() < 15.0  # never a jump across the face


def test_neighbour_check_catches_the_upstream_outer_map(ref_position):
    """The upstream model reshaped the coarse outer ids 9 x 24: the check must reject it."""
    naive = np.arange(4092, 4308).reshape(9, 24)
    violations, _, distance = _neighbour_violations(naive, Face.OUTER, ref_position)
    assert violations > 100 and distance.max() > 50.0


@pytest.mark.parametrize("face", IMAGE_FACES, ids=lambda f: f.name)
def test_image_axes_follow_positions(face, ref_position):
    """Down the rows and along the columns the sensors move the documented way."""
    index = face_image_index(face)
    pos = ref_position[index]
    z = pos[..., 2]
    phi = np.degrees(np.arctan2(pos[..., 1], -pos[..., 0]))
    r = np.hypot(pos[..., 0], pos[..., 1])
    if face == Face.INNER:
        assert np.all(np.diff(phi, axis=0) < -1.3) and np.all(np.diff(z, axis=1) > 1.5)
    elif face == Face.OUTER:
        assert np.all(np.diff(z, axis=0) >= 0) and np.all(np.diff(phi, axis=1) <= 0)
    else:
        assert np.all(np.diff(phi, axis=0) < -5.2) and np.all(np.diff(r, axis=1) > 6.6)


def test_outer_fine_cells_lie_on_their_sensor(ref_position):
    """Each fine outer cell's centre is within half a sensor pitch of the sensor it shows."""
    index = face_image_index(Face.OUTER)
    n_z, n_phi = index.shape
    dz = C.OUTER_N_Z * C.OUTER_Z_PITCH / n_z
    dphi = C.OUTER_N_STRIPS * C.OUTER_PHI_PITCH_DEG / n_phi
    z_cell = (np.arange(n_z) + 0.5) * dz - 0.5 * C.OUTER_N_Z * C.OUTER_Z_PITCH
    phi_cell = 0.5 * C.OUTER_N_STRIPS * C.OUTER_PHI_PITCH_DEG - (np.arange(n_phi) + 0.5) * dphi
    dense = set(outer_dense_cells())
    for i in range(n_z):
        for j in range(n_phi):
            s = index[i, j]
            x, y, z = ref_position[s]
            phi = np.degrees(np.arctan2(y, -x))
            half_z = 0.5 * (C.OUTER_DENSE_Z_PITCH if s in dense else C.OUTER_Z_PITCH)
            half_phi = 0.5 * (C.OUTER_DENSE_PHI_PITCH_DEG if s in dense else C.OUTER_PHI_PITCH_DEG)
            assert abs(z - z_cell[i]) <= half_z + 1e-3, (i, j, s)
            assert abs(phi - phi_cell[j]) <= half_phi + 1e-3, (i, j, s)


def test_paint_and_pool_round_trip():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 4760))
    for face in IMAGE_FACES:
        image = to_face_image(values, face)
        assert image.shape == (3, *FACE_IMAGE_SHAPES[face])
        ids, pooled = from_face_image(image, face)
        assert np.array_equal(ids, face_ids(face))
        assert np.allclose(pooled, values[:, ids])
    inner = to_face_image(values[0], Face.INNER)
    assert inner[2, 5] == values[0, 2 * 44 + 5]


@pytest.mark.parametrize("face", [Face.TOP, Face.BOTTOM], ids=lambda f: f.name)
def test_hex_adjacency_is_closer_than_8cm(face, ref_position):
    graph = hex_graph(face)
    ids = face_ids(face)
    assert np.array_equal(graph.sensor_ids, ids) and graph.n_nodes == 73
    assert np.allclose(graph.position, ref_position[ids], atol=1e-3)
    dist = np.linalg.norm(ref_position[ids][:, None] - ref_position[ids][None], axis=-1)
    expected = (dist < 8.0) & ~np.eye(len(ids), dtype=bool)
    got = np.zeros_like(expected)
    for i in range(len(ids)):
        assert graph.neighbours[i, 0] == i and graph.direction[i, 0] == 0
        for j in graph.neighbours[i, 1:]:
            if j >= 0:
                got[i, j] = True
    assert np.array_equal(got, expected)  # both directions: i ~ j exactly when d < 8 cm
    assert np.array_equal(got, got.T)
    # measured distances: 6.12 cm in a row, 7.56 cm between rows
    assert np.allclose(np.unique(np.round(dist[expected], 2)), [6.12, 7.56])
    assert expected.sum() // 2 == 183  # 67 in-row edges + 22 + 22 + 22 + 24 + 26 between rows
    degree = expected.sum(axis=1)
    assert degree.max() == 6 and degree.min() == 2


@pytest.mark.parametrize("face", [Face.TOP, Face.BOTTOM], ids=lambda f: f.name)
def test_hex_direction_types_consistent(face):
    graph = hex_graph(face)
    nb, kind = graph.neighbours, graph.direction
    assert np.array_equal(kind == 0, (nb < 0) | (np.arange(7) == 0)[None, :])
    for i in range(graph.n_nodes):
        for t in range(1, 7):
            j = nb[i, t]
            if j < 0:
                continue
            assert kind[i, t] == t
            back = int(opposite_direction(t))
            assert nb[j, back] == i and kind[j, back] == back  # opposite neighbours, opposite types
            step = graph.plane[j] - graph.plane[i]
            angle = np.degrees(np.arctan2(step[1], step[0])) % 360
            assert abs((angle - 60 * (t - 1) + 180) % 360 - 180) < 30


def test_opposite_direction_table():
    assert opposite_direction(np.arange(7)).tolist() == [0, 4, 5, 6, 1, 2, 3]


def test_hex_graph_from_asbuilt_positions_matches_design(reference_dir):
    asbuilt = load_asbuilt(reference_dir / "sensor_directions.txt")
    for face in (Face.TOP, Face.BOTTOM):
        graph = hex_graph(face, asbuilt)
        assert np.array_equal(graph.neighbours, hex_graph(face).neighbours)
        assert np.array_equal(graph.direction, hex_graph(face).direction)
    with pytest.raises(ValueError, match="not a hex face"):
        hex_graph(Face.INNER)
