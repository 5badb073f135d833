"""Spatial clustering of the inner-face light and the pile-up exclusion from the energy."""

from __future__ import annotations

import numpy as np

from xecreco.models.classical import pileup
from xecreco.models.classical.energy import exclude_pileup_light
from xecreco.models.classical.position import N_COLS, N_ROWS, inner_grid

N_INNER = N_ROWS * N_COLS


def _blob(row, col, amplitude, width=1.5):
    r, c = np.mgrid[0:N_ROWS, 0:N_COLS]
    return amplitude * np.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * width**2)).ravel()


def _event(pileup_amplitude, pileup_cell, signal_cell=(46, 20)):
    expected = _blob(*signal_cell, 3000.0)
    npho = np.zeros(4760)
    npho[:N_INNER] = expected + _blob(*pileup_cell, pileup_amplitude)
    grid = inner_grid(1)
    uv = np.array([grid.u_col[signal_cell[1]], grid.v_row[signal_cell[0]]])
    return npho, expected, uv


def test_separated_cluster_is_found_and_replaced():
    npho, expected, uv = _event(2000.0, (46 + 20, 20))  # 20 rows (30 cm) away
    mask = pileup.pileup_cluster_mask(npho[None], expected[None], uv[None])[0]
    assert mask.reshape(N_ROWS, N_COLS)[66, 20]  # the pile-up seed
    assert not mask.reshape(N_ROWS, N_COLS)[46, 20]  # never the signal
    out = exclude_pileup_light(npho[None], mask[None], expected[None])[0]
    assert np.allclose(out[:N_INNER][mask], expected[mask])
    # the pile-up light is gone from the sum up to its tail outside the cluster radius
    assert abs(out.sum() - expected.sum()) < 0.01 * (npho.sum() - expected.sum())


def test_close_or_faint_light_is_kept():
    for amplitude, cell in ((2000.0, (46 + 6, 20)), (150.0, (46 + 20, 20))):  # 9 cm; faint
        npho, expected, uv = _event(amplitude, cell)
        mask = pileup.pileup_cluster_mask(npho[None], expected[None], uv[None])
        assert not mask.any()


def test_signal_light_model_is_scale_times_solid_angle():
    from xecreco.geometry import Face, face_ids, solid_angle_fraction, uvw_to_xyz

    uvw = np.array([[1.0, -3.0, 4.0]])
    model = pileup.signal_light_model(uvw, np.array([2.0e5]))
    direct = 2.0e5 * solid_angle_fraction(uvw_to_xyz(uvw), sensors=face_ids(Face.INNER))
    assert model.shape == (1, N_INNER)
    np.testing.assert_allclose(model, direct)
