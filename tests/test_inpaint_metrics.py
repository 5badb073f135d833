"""Inpainting scores against the simulation's clean values."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.geometry import Face, face_ids
from xecreco.validation.inpainting import InpaintScorer, format_scores


def test_scores_per_face_are_exact():
    n = 2
    clean = np.full((n, 4760), 1000.0)
    pred = clean.copy()
    time_clean = np.full((n, 4760), 50e-9)
    time_pred = time_clean.copy()
    inpainted = np.zeros((n, 4760), bool)
    inner = face_ids(Face.INNER)[:4]
    outer = face_ids(Face.OUTER)[:2]
    inpainted[0, inner] = True
    inpainted[1, outer] = True
    pred[0, inner] = [1100.0, 900.0, 1200.0, 1000.0]  # errors +100, -100, +200, 0
    pred[1, outer] = [1050.0, 1050.0]
    time_pred[0, inner] = time_clean[0, inner] + np.array([1, -1, 3, 0]) * 1e-9
    time_clean[0, inner[3]] = 1e10  # clean time invalid: not scored
    valid_time = np.ones((n, 4760), bool)

    scorer = InpaintScorer(min_npho=100)
    scorer.add(pred, time_pred, valid_time, clean, time_clean, inpainted)
    scores = scorer.result()
    assert set(scores) == {"inner", "outer", "all"}
    s = scores["inner"]
    assert s["n"] == 4
    assert s["mae"] == pytest.approx(100.0)
    assert s["rmse"] == pytest.approx(np.sqrt((100**2 + 100**2 + 200**2) / 4))
    assert s["bias"] == pytest.approx(50.0)
    assert s["rel_bias"] == pytest.approx(0.05)
    assert s["rel68"] == pytest.approx(np.quantile([0.1, 0.1, 0.2, 0.0], 0.68))
    assert s["time_n"] == 3
    assert s["time_mae_ns"] == pytest.approx(5 / 3)
    assert s["time_bias_ns"] == pytest.approx(1.0)
    assert scores["outer"]["bias"] == pytest.approx(50.0)
    assert scores["outer"]["time_n"] == 2 and scores["outer"]["time_mae_ns"] == pytest.approx(0.0)
    assert scores["all"]["n"] == 6
    table = format_scores(scores)
    assert table.splitlines()[1].split()[:3] == ["inner", "4", "100.0"]


def test_dim_sensors_are_left_out_of_the_relative_error():
    clean = np.full((1, 4760), 20.0)
    pred = clean * 2
    inpainted = np.zeros((1, 4760), bool)
    inpainted[0, :10] = True
    scorer = InpaintScorer(min_npho=100)
    scorer.add(pred, np.zeros_like(pred), np.zeros_like(inpainted), clean, clean, inpainted)
    row = scorer.result()["inner"]
    assert row["n"] == 10 and row["mae"] == pytest.approx(20.0)
    assert row["rel_n"] == 0 and row["rel68"] is None and row["time_n"] == 0
