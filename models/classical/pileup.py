"""Pile-up probability from a second inner-face light cluster and the spread of sensor times.

Features per event:
- ``ratio``: brightest 5 x 5 inner patch further than ``pileup_exclusion_cm`` from the
  reconstructed (u, v), divided by the brightest patch overall;
- ``chi2_ndf``: chi2 per degree of freedom of the timing combination (a second photon at another
  time spreads the sensor times).
``pileup_prob = sigmoid(c0 + c1 log(ratio + 1e-3) + c2 log(chi2_ndf + 1e-3))`` with coefficients
fitted by logistic regression in the calibration when the sample has pile-up truth.

Spatial clustering (:func:`pileup_cluster_mask`): separated local maxima of the inner-face light
in excess of the signal light model (:func:`signal_light_model`) mark pile-up clusters whose
light the energy leaves out (:func:`xecreco.models.classical.energy.exclude_pileup_light`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from xecreco.geometry import Face, face_ids, solid_angle_fraction, uvw_to_xyz
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


# -- spatial clustering of the inner-face light (physics.md section 8) ------------------------
#: A pile-up seed is a local maximum of the 3 x 3-summed excess light (measured minus the signal
#: light model S Omega_i of the LSAF) over (2 CLUSTER_PEAK_HALF + 1)^2 sensors (pitch 1.5 cm).
CLUSTER_PEAK_HALF = 4
#: ... at least this far (cm) from the signal's fitted (u, v): closer light is the signal's.
CLUSTER_MIN_SEPARATION_CM = 12.0
#: ... whose 3 x 3 excess (photons) passes this threshold (about 1 MeV of shallow light).
CLUSTER_MIN_EXCESS = 2500.0
#: Sensors within this distance (cm) of a pile-up seed and closer to it than to the signal belong
#: to its cluster.
CLUSTER_RADIUS_CM = 25.0


def pileup_cluster_mask(npho: np.ndarray, expected: np.ndarray, uv_cm: np.ndarray) -> np.ndarray:
    """(N, 93 * 44) bool: inner sensors of separated pile-up light clusters.

    ``npho`` (N, 4760 or 4092) photons (dead channels already recovered), ``expected`` (N, 4092)
    the signal-cluster light model S Omega_i on the inner MPPCs, ``uv_cm`` (N, 2) the signal
    (u, v) (cm). The cluster holding the brightest seed is the signal; every other local maximum
    of the smoothed excess light that passes :data:`CLUSTER_MIN_EXCESS` and lies more than
    :data:`CLUSTER_MIN_SEPARATION_CM` from the signal seeds a pile-up cluster (the sensors
    within :data:`CLUSTER_RADIUS_CM` of it that are closer to it than to the signal).
    """
    n_events = len(npho)
    image = inner_image(np.asarray(npho, dtype=np.float64))
    excess = box_sum(image - inner_image(np.asarray(expected, dtype=np.float64)), 1)
    size = 2 * CLUSTER_PEAK_HALF + 1
    peak = excess >= ndimage.maximum_filter(excess, size=(1, size, size), mode="constant",
                                            cval=-np.inf)
    grid = inner_grid(1)
    du = grid.u_col[None, None, :] - uv_cm[:, 0, None, None]
    dv = grid.v_row[None, :, None] - uv_cm[:, 1, None, None]
    d_signal = np.sqrt(du**2 + dv**2)  # (N, 93, 44) cm
    peak &= (excess > CLUSTER_MIN_EXCESS) & (d_signal > CLUSTER_MIN_SEPARATION_CM)
    mask = np.zeros(image.shape, dtype=bool)
    u_cell, v_cell = np.meshgrid(grid.u_col, grid.v_row)  # (93, 44) each
    for event, row, col in zip(*np.nonzero(peak)):
        d_seed = np.hypot(u_cell - grid.u_col[col], v_cell - grid.v_row[row])
        mask[event] |= (d_seed < CLUSTER_RADIUS_CM) & (d_seed < d_signal[event])
    return mask.reshape(n_events, -1)


def signal_light_model(uvw_cm: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N, 4092) expected signal photons S Omega_i/4pi on the inner MPPCs from the LSAF point
    ``uvw_cm`` (N, 3) cm and scale ``scale`` (N,) photons."""
    inner = face_ids(Face.INNER)
    omega = solid_angle_fraction(uvw_to_xyz(uvw_cm), sensors=inner)
    return np.asarray(omega, dtype=np.float64) * np.asarray(scale, dtype=np.float64)[:, None]
