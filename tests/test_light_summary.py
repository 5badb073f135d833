"""The regressor's light summary: light sums, peak window, centroid and the reference outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import SCALING, tiny_config

from xecreco.geometry import N_SENSORS, Face, design_geometry, face_ids, face_image_index
from xecreco.models.nn.light_summary import LightSummary
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.presets import resolve_model_config
from xecreco.normalization import NormalizationSpec

SPEC = NormalizationSpec()  # log1p, npho_scale 1000


def _features(npho: np.ndarray) -> torch.Tensor:
    """(N, 4760, 2) features of the given npho (photons), time feature 0."""
    out = np.zeros(npho.shape + (2,), dtype=np.float32)
    out[..., 0] = SPEC.npho_forward(npho.astype(np.float32))
    return torch.from_numpy(out)


def _summary(crop: int = 9) -> LightSummary:
    return LightSummary("log1p", crop, 16, 8, 2)


def test_face_light_sums_match_the_npho_per_face():
    rng = np.random.default_rng(1)
    npho = rng.uniform(0, 5000, size=(3, N_SENSORS))
    _, references = _summary()(_features(npho))
    expected = npho.sum(axis=1) / SPEC.npho_scale
    np.testing.assert_allclose(references["light"].numpy(), expected, rtol=1e-4)
    face_light = _summary()._peak_window(_features(npho))[0].numpy()
    for column, face in enumerate((Face.INNER, Face.OUTER, Face.US, Face.DS, Face.TOP,
                                   Face.BOTTOM)):
        np.testing.assert_allclose(face_light[:, column],
                                   npho[:, face_ids(face)].sum(axis=1) / SPEC.npho_scale,
                                   rtol=1e-4)


@pytest.mark.parametrize("row, col", [(46, 20), (0, 0), (92, 43), (3, 41)])
def test_centroid_of_a_single_lit_sensor_is_that_sensor(row, col):
    """Also at the face corners, where the window reaches past the face (padding reads 0)."""
    sensor = int(face_image_index(Face.INNER)[row, col])
    npho = np.zeros((1, N_SENSORS))
    npho[0, sensor] = 2e4
    _, references = _summary()(_features(npho))
    u, v = design_geometry().uvw[sensor, :2]
    assert references["u"].item() == pytest.approx(u, abs=1e-3)
    assert references["v"].item() == pytest.approx(v, abs=1e-3)


def test_centroid_weights_by_light_and_follows_the_peak():
    index = face_image_index(Face.INNER)
    uv = design_geometry().uvw[:, :2]
    npho = np.zeros((1, N_SENSORS))
    a, b = int(index[30, 10]), int(index[30, 11])
    npho[0, a], npho[0, b] = 3e4, 1e4  # 3 : 1 -> a quarter of the way from a to b
    far = int(index[80, 40])
    npho[0, far] = 5e3  # outside the 9 x 9 window of the peak: ignored by the centroid
    _, references = _summary()(_features(npho))
    expected = 0.75 * uv[a] + 0.25 * uv[b]
    assert references["u"].item() == pytest.approx(expected[0], abs=1e-3)
    assert references["v"].item() == pytest.approx(expected[1], abs=1e-3)


def test_calibrated_references_are_the_outputs_when_the_heads_give_zero():
    """energy = light_gain x light and (u, v) = centroid, in standardised units."""
    model = build_model(tiny_config())
    rng = np.random.default_rng(2)
    npho = rng.uniform(0, 3000, size=(7, N_SENSORS))  # odd: one median
    features = _features(npho)
    light = npho.sum(axis=1) / SPEC.npho_scale
    energy = 4e-6 * light * rng.uniform(0.99, 1.01, size=7)
    model.calibrate_references(features, torch.from_numpy(energy), SCALING)
    assert model.light_gain.item() == pytest.approx(np.median(energy / light), rel=1e-5)
    with torch.no_grad():
        for head in model.heads.values():
            head.net[-1].weight.zero_()
            head.net[-1].bias.zero_()
        out = model.eval()(features)
    _, references = model.summary(features)
    np.testing.assert_allclose(SCALING.destandardize("energy", out["energy"].numpy()),
                               model.light_gain.item() * light, rtol=1e-4)
    np.testing.assert_allclose(SCALING.destandardize("u", out["u"].numpy()),
                               references["u"].numpy(), atol=1e-3)
    np.testing.assert_allclose(SCALING.destandardize("v", out["v"].numpy()),
                               references["v"].numpy(), atol=1e-3)


def test_references_stay_off_until_calibrated_and_travel_with_the_weights():
    model = build_model(tiny_config())
    assert model.reference_on.item() == 0.0
    features = _features(np.full((2, N_SENSORS), 100.0))
    model.calibrate_references(features, torch.tensor([0.05, 0.05]), SCALING)
    copy = build_model(tiny_config())
    copy.load_state_dict(model.state_dict())
    assert copy.reference_on.item() == 1.0
    assert copy.light_gain.item() == pytest.approx(model.light_gain.item())


def test_version_1_configs_have_no_summary():
    """Checkpoints written before the light summary existed still rebuild to the same model."""
    config = resolve_model_config({**tiny_config(), "config_version": 1, "summary": None})
    legacy = dict(config)
    del legacy["summary"]
    assert resolve_model_config(legacy)["summary"] is None
    model = build_model(legacy)
    assert model.summary is None and "light_gain" not in model.state_dict()


def test_incidence_from_the_vertex_matches_the_classical_tangents():
    """The summary's incidence inputs are the classical reconstruction's tangents at the peak
    sensor (same frame conventions), and the distance; no vertex = the target centre."""
    from xecreco.models.classical.position import incidence_tangents

    summary = LightSummary("log1p", 9, 16, 8, 2, use_vertex=True)
    index = face_image_index(Face.INNER)
    cells = np.array([index[10, 5], index[46, 22], index[80, 40]])
    peak = torch.from_numpy(cells)
    vertex = np.array([[0.0, 0.0, 0.0], [1.0, -2.0, 12.0], [-3.0, 1.0, -13.0]])
    got = summary.incidence(peak, torch.from_numpy(vertex).float()).numpy()
    uvw = design_geometry().uvw[cells]
    expected = incidence_tangents(uvw, vertex)
    np.testing.assert_allclose(got[:, :2], expected, atol=1e-4)
    distance = np.linalg.norm(design_geometry().position[cells] - vertex, axis=1) / 100.0
    np.testing.assert_allclose(got[:, 2], distance, rtol=1e-5)
    unknown = torch.full((3, 3), float("nan"))
    np.testing.assert_allclose(summary.incidence(peak, unknown).numpy(),
                               summary.incidence(peak, None).numpy())
    assert abs(got[1, 0] - got[0, 0]) > 0.1  # a 12 cm vertex shift tilts the incidence a lot
