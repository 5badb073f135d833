"""Pile-up probability from a second inner-face light cluster and the spread of sensor times.

Features per event:
- ``ratio``: brightest 5 x 5 inner patch further than ``pileup_exclusion_cm`` from the
  reconstructed (u, v), divided by the brightest patch overall;
- ``chi2_ndf``: chi2 per degree of freedom of the timing combination (a second photon at another
  time spreads the sensor times).
``pileup_prob = sigmoid(c0 + c1 log(ratio + 1e-3) + c2 log(chi2_ndf + 1e-3))`` with coefficients
fitted by logistic regression in the calibration when the sample has pile-up truth.
"""

from __future__ import annotations

import numpy as np

from xecreco.models.classical.calibration import ClassicalCalibration
from xecreco.models.classical.position import box_sum, inner_grid, inner_image

FEATURE_FLOOR = 1e-3


def second_cluster_ratio(npho, valid, uv_cm: np.ndarray, exclusion_cm: float) -> np.ndarray:
    """(N,) brightest 5 x 5 inner patch outside ``exclusion_cm`` of (u, v) over the brightest."""
    image = inner_image(np.where(valid, np.maximum(npho, 0.0), 0.0).astype(np.float64))
    patches = box_sum(image, 2)
    grid = inner_grid(1)
    du = grid.u_col[None, None, :] - uv_cm[:, 0, None, None]
    dv = grid.v_row[None, :, None] - uv_cm[:, 1, None, None]
    far = du**2 + dv**2 > exclusion_cm**2
    top = patches.reshape(len(patches), -1).max(axis=1)
    second = np.where(far, patches, 0.0).reshape(len(patches), -1).max(axis=1)
    return np.divide(second, top, out=np.zeros(len(top)), where=top > 0)


def pileup_features(ratio: np.ndarray, chi2_ndf: np.ndarray) -> np.ndarray:
    """(N, 3) design matrix [1, log(ratio), log(chi2_ndf)] of the logistic model."""
    return np.column_stack(
        [np.ones(len(ratio)), np.log(ratio + FEATURE_FLOOR), np.log(chi2_ndf + FEATURE_FLOOR)]
    )


def pileup_probability(ratio, chi2_ndf, calibration: ClassicalCalibration) -> np.ndarray:
    """(N,) probability that the event has pile-up."""
    z = pileup_features(ratio, chi2_ndf) @ np.asarray(calibration.pileup_coef, float)
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def fit_logistic(features: np.ndarray, label: np.ndarray, iterations: int = 25) -> np.ndarray:
    """Coefficients of a logistic regression (Newton iterations, small ridge term)."""
    coef = np.zeros(features.shape[1])
    ridge = 1e-3 * np.eye(features.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(features @ coef, -50.0, 50.0)))
        grad = features.T @ (p - label) + ridge @ coef
        hess = (features * (p * (1 - p))[:, None]).T @ features + ridge
        coef -= np.linalg.solve(hess, grad)
    return coef
