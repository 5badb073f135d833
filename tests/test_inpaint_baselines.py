"""Dead-channel inpainting baselines: neighbour tables, point-source fit, the three inpainters."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.geometry import Face, design_geometry, face_ids, solid_angle_fraction, uvw_to_xyz
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS
from xecreco.models.base import EventBatch, Inpainter
from xecreco.models.inpaint.baselines import (
    LocalFitInpainter,
    NeighbourAverageInpainter,
    SolidAngleInpainter,
)
from xecreco.models.inpaint.localfit import estimate_position
from xecreco.models.inpaint.neighbours import immediate_neighbours, radius_neighbours
from xecreco.models.registry import available_inpainters, create_inpainter

GEO = design_geometry()
T0_NS = 30.0


def _point_source_batch(uvw, scale=2.0e6, dead=None):
    """Noise-free events of point sources: npho = S Omega, time = t0 + d / v_eff (s)."""
    uvw = np.atleast_2d(np.asarray(uvw, dtype=np.float64))
    xyz = uvw_to_xyz(uvw)
    npho = scale * solid_angle_fraction(xyz, GEO)
    dist = np.linalg.norm(GEO.position[None] - xyz[:, None], axis=2)
    time_s = (T0_NS + dist / LXE_LIGHT_SPEED_CM_PER_NS) * 1e-9
    n = len(uvw)
    valid = np.ones((n, 4760), dtype=bool)
    if dead is not None:
        valid[:, dead] = False
    valid_t = valid & (npho > 50)
    batch = EventBatch(
        npho=np.where(valid, npho, 0).astype(np.float32),
        time=np.where(valid_t, time_s, 0).astype(np.float32),
        valid_npho=valid, valid_time=valid_t,
        run=np.zeros(n, np.int64), event=np.arange(n, dtype=np.int64),
        entry=np.arange(n, dtype=np.int64),
    )
    return batch, npho, time_s


def test_immediate_neighbours_are_the_local_ring():
    table = immediate_neighbours(GEO)
    row, col = 40, 20
    sensor = 44 * row + col
    expected = {44 * (row + dr) + col + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)} - {sensor}
    assert set(table[sensor].indices) == expected
    # hexagonal faces: interior sensors have 6 neighbours, all closer than 8 cm
    for face in (Face.TOP, Face.BOTTOM):
        ids = face_ids(face)
        counts = np.diff(table.indptr)[ids]
        assert counts.max() == 6
        for i in ids:
            d = np.linalg.norm(GEO.position[table[i].indices] - GEO.position[i], axis=1)
            assert d.max() < 8.0
    # symmetric, never across faces, never self
    assert (table != table.T).nnz == 0
    rows, cols = table.nonzero()
    assert np.all(GEO.face[rows] == GEO.face[cols])
    assert np.all(rows != cols)
    assert np.diff(table.indptr).min() >= 2


def test_radius_neighbours_respect_radius_and_face():
    table = radius_neighbours(20.0, GEO)
    rows, cols = table.nonzero()
    d = np.linalg.norm(GEO.position[rows] - GEO.position[cols], axis=1)
    assert d.max() <= 20.0
    assert np.all(GEO.face[rows] == GEO.face[cols])
    # an interior MPPC has every inner MPPC within 20 cm: about pi 20^2 / (1.51 * 1.53) of them
    assert 500 < table[44 * 46 + 22].nnz < 600


def test_position_fit_recovers_a_point_source():
    uvw = np.array([[3.0, -10.0, 0.8], [-12.0, 30.0, 6.0], [0.0, 0.0, 25.0]])
    batch, _, _ = _point_source_batch(uvw)
    fit = estimate_position(batch.npho, batch.valid_npho, GEO)
    assert fit.ok.all()
    np.testing.assert_allclose(fit.uvw, uvw, atol=1e-3)
    np.testing.assert_allclose(fit.scale, 2.0e6, rtol=1e-4)


def test_registry_names_and_protocol():
    names = available_inpainters()
    for name in ("neighbour-average", "solid-angle", "local-fit"):
        assert name in names
        model = create_inpainter(name)
        assert isinstance(model, Inpainter)
        assert model.name == name


def test_neighbour_average_is_the_mean_of_the_ring():
    sensor = 44 * 50 + 10
    batch, npho, time_s = _point_source_batch([[0.0, 0.0, 5.0]], dead=[sensor])
    out = NeighbourAverageInpainter().inpaint(batch)
    ring = immediate_neighbours(GEO)[sensor].indices
    assert out.npho[0, sensor] == pytest.approx(batch.npho[0, ring].mean(), rel=1e-6)
    assert out.time[0, sensor] == pytest.approx(batch.time[0, ring].mean(), rel=1e-6)
    assert out.valid_npho.all() and out.valid_time[0, sensor]
    inpainted = out.extras["inpainted"]
    assert inpainted.sum() == 1 and inpainted[0, sensor]
    # untouched sensors keep their values bit for bit
    keep = np.ones(4760, bool)
    keep[sensor] = False
    assert np.array_equal(out.npho[:, keep], batch.npho[:, keep])


def test_neighbour_average_fills_a_cluster_from_outside_in():
    centre = 44 * 30 + 30
    cluster = [centre + 44 * dr + dc for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    batch, _, _ = _point_source_batch([[0.0, 25.0, 10.0]], dead=cluster)
    one_pass = NeighbourAverageInpainter(max_passes=1).inpaint(batch)
    assert not one_pass.valid_npho[0, centre]
    assert one_pass.extras["inpainted"][0].sum() == 8
    full = NeighbourAverageInpainter().inpaint(batch)
    assert full.valid_npho[0, cluster].all()
    ring = [c for c in cluster if c != centre]
    assert full.npho[0, centre] == pytest.approx(full.npho[0, ring].mean(), rel=1e-6)


def test_whole_dead_face_stays_invalid_and_not_inpainted():
    top = face_ids(Face.TOP)
    batch, _, _ = _point_source_batch([[0.0, 0.0, 5.0]], dead=top)
    for model in (NeighbourAverageInpainter(), SolidAngleInpainter()):
        out = model.inpaint(batch)
        assert not out.valid_npho[0, top].any()
        assert not out.extras["inpainted"][0, top].any()
        assert np.isfinite(out.npho).all() and np.isfinite(out.time).all()


@pytest.mark.parametrize("model", [SolidAngleInpainter(), LocalFitInpainter(min_fit_npho=0.0)],
                         ids=["solid-angle", "local-fit-everywhere"])
def test_solid_angle_methods_are_exact_for_a_point_source(model):
    rng = np.random.default_rng(4)
    dead = np.flatnonzero(rng.random(4760) < 0.03)
    uvw = np.array([[2.0, -5.0, 1.5], [-15.0, 40.0, 12.0], [10.0, -50.0, 30.0]])
    batch, npho, time_s = _point_source_batch(uvw, dead=dead)
    out = model.inpaint(batch)
    filled = out.extras["inpainted"]
    assert filled[:, dead].all() and filled.sum() == 3 * len(dead)
    truth = npho[:, dead]
    got = out.npho[:, dead].astype(np.float64)
    bright = truth > 10
    np.testing.assert_allclose(got[bright], truth[bright], rtol=2e-3)
    assert np.abs(got - truth).max() < 0.05 + 2e-3 * truth.max()
    # propagation-consistent times: exact for a point source, to float32 precision (~1 ps)
    has_t = out.valid_time[:, dead]
    assert np.array_equal(has_t, out.npho[:, dead] >= 50)
    dt_ps = (out.time[:, dead].astype(np.float64) - time_s[:, dead])[has_t] * 1e12
    assert np.abs(dt_ps).max() < 2.0


def test_solid_angle_uses_the_plain_mean_when_dim():
    batch, _, _ = _point_source_batch([[0.0, 0.0, 5.0]], dead=[44 * 46 + 22])
    dim = batch.replace(npho=np.full_like(batch.npho, 0.02))
    out = SolidAngleInpainter().inpaint(dim)
    assert out.npho[0, 44 * 46 + 22] == pytest.approx(0.02, rel=1e-5)


def test_local_fit_beats_solid_angle_on_an_extended_source():
    """Two point sources 4 cm apart (a crude shower): the local fit follows the local light."""
    uvw = np.array([[0.0, 0.0, 3.0], [0.0, 4.0, 3.0]])
    xyz = uvw_to_xyz(uvw)
    npho = (1.5e6 * solid_angle_fraction(xyz, GEO)).sum(axis=0)[None]
    core = np.argsort(npho[0, :4092])[-40:]
    dead = core[::4]
    valid = np.ones((1, 4760), bool)
    valid[:, dead] = False
    batch = EventBatch(
        npho=np.where(valid, npho, 0).astype(np.float32), time=np.zeros((1, 4760), np.float32),
        valid_npho=valid, valid_time=np.zeros_like(valid), run=np.zeros(1, np.int64),
        event=np.zeros(1, np.int64), entry=np.zeros(1, np.int64))
    err = {}
    for model in (SolidAngleInpainter(), LocalFitInpainter(), NeighbourAverageInpainter()):
        out = model.inpaint(batch)
        err[model.name] = np.abs(out.npho[0, dead] / npho[0, dead] - 1).mean()
    # measured: local-fit 0.065, neighbour-average 0.103, solid-angle 0.20
    assert err["local-fit"] < 0.08
    assert err["local-fit"] < 0.5 * err["solid-angle"]
    assert err["local-fit"] < err["neighbour-average"]


def test_inpainting_twice_keeps_the_mask_and_values():
    rng = np.random.default_rng(1)
    dead = np.flatnonzero(rng.random(4760) < 0.02)
    batch, _, _ = _point_source_batch([[5.0, 5.0, 4.0]], dead=dead)
    once = SolidAngleInpainter().inpaint(batch)
    twice = SolidAngleInpainter().inpaint(once)
    assert np.array_equal(twice.extras["inpainted"], once.extras["inpainted"])
    assert np.array_equal(twice.npho, once.npho)


def test_batch_without_invalid_sensors_is_unchanged():
    batch, _, _ = _point_source_batch([[0.0, 0.0, 5.0]])
    for model in (NeighbourAverageInpainter(), SolidAngleInpainter(), LocalFitInpainter()):
        out = model.inpaint(batch)
        assert not out.extras["inpainted"].any()
        assert np.array_equal(out.npho, batch.npho)
        assert np.array_equal(out.valid_time, batch.valid_time)
