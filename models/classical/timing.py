"""Photon emission time at the vertex from the sensor times.

Per sensor i with a valid time t_i (s in the file, ns here):

    t0_i = t_i - |x_i - P| / v_eff - walk(log10 n_i)

with P the fitted light point, v_eff the effective light speed and walk the per-sensor-type
offset table of the calibration. The t0_i are combined by a weighted mean (weights
1 / sigma(log10 n_i)^2) with iterative rejection of sensors further than ``outlier_nsigma``
sigma from the current mean (starting from the per-event median); then the photon time of
flight from the vertex (``xyzVTX`` when known, else the target centre) to the first-interaction
point is subtracted, and the calibration offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xecreco.geometry import design_geometry
from xecreco.geometry.constants import SPEED_OF_LIGHT_CM_PER_NS
from xecreco.models.classical.calibration import ClassicalCalibration, interp_table

OUTLIER_PASSES = 2


@dataclass
class TimingResult:
    """Emission time (N,) ns, number of used sensors (N,), chi2/ndf of the combination (N,)."""

    time_ns: np.ndarray
    n_used: np.ndarray
    chi2_ndf: np.ndarray


def sensor_terms(npho: np.ndarray, sensors: np.ndarray, calibration: ClassicalCalibration):
    """Walk offset (ns) and resolution (ns) of sensors ``sensors`` with photons ``npho``
    (same shapes) from the calibration tables."""
    is_mppc = np.asarray(design_geometry().is_mppc)[sensors]
    x = np.log10(np.maximum(npho, 1.0))
    walk = np.where(
        is_mppc,
        interp_table(x, calibration.walk_log10_npho, calibration.walk_mppc_ns),
        interp_table(x, calibration.walk_log10_npho, calibration.walk_pmt_ns),
    )
    sigma = np.where(
        is_mppc,
        interp_table(x, calibration.walk_log10_npho, calibration.sigma_mppc_ns),
        interp_table(x, calibration.walk_log10_npho, calibration.sigma_pmt_ns),
    )
    return walk, np.maximum(sigma, 1e-3)


def light_path_cm(point_xyz: np.ndarray) -> np.ndarray:
    """(N, 4760) distance from each event's light point (N, 3) cm to every sensor, cm."""
    pos = np.asarray(design_geometry().position)
    return np.linalg.norm(pos[None, :, :] - point_xyz[:, None, :], axis=2)


def per_event_median(event: np.ndarray, values: np.ndarray, n_events: int) -> np.ndarray:
    """(n_events,) median of ``values`` grouped by ``event`` (0 for events without values)."""
    span = np.ptp(values) + 1.0 if len(values) else 1.0
    order = np.argsort(event * span + (values - values.min(initial=0.0)), kind="stable")
    counts = np.bincount(event, minlength=n_events)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    sorted_values = values[order]
    out = np.zeros(n_events)
    has = counts > 0
    lo = first[has] + (counts[has] - 1) // 2
    hi = first[has] + counts[has] // 2
    out[has] = 0.5 * (sorted_values[lo] + sorted_values[hi])
    return out


def time_of_flight_ns(vertex_xyz: np.ndarray, first_xyz: np.ndarray) -> np.ndarray:
    """Photon flight time (N,) ns from the vertex to the first interaction point."""
    return np.linalg.norm(first_xyz - vertex_xyz, axis=1) / SPEED_OF_LIGHT_CM_PER_NS


def combine_times(
    time_s: np.ndarray,
    valid_time: np.ndarray,
    npho: np.ndarray,
    light_xyz: np.ndarray,
    first_xyz: np.ndarray,
    vertex_xyz: np.ndarray,
    calibration: ClassicalCalibration,
) -> TimingResult:
    """Weighted, outlier-rejected emission time (ns) of each event (see module docstring).

    Works on the flat list of usable (event, sensor) pairs only.
    """
    n_events = len(time_s)
    event, sensor = np.nonzero(valid_time & (npho >= calibration.time_min_npho))
    pos = np.asarray(design_geometry().position)
    path = np.linalg.norm(pos[sensor] - light_xyz[event], axis=1)
    walk, sigma = sensor_terms(npho[event, sensor], sensor, calibration)
    t0 = time_s[event, sensor].astype(np.float64) * 1e9 - path / calibration.light_speed_cm_ns - walk
    inv_var = 1.0 / sigma**2

    def weighted_mean(mask):
        wsum = np.bincount(event, weights=np.where(mask, inv_var, 0.0), minlength=n_events)
        total = np.bincount(event, weights=np.where(mask, inv_var * t0, 0.0), minlength=n_events)
        return np.divide(total, wsum, out=np.zeros(n_events), where=wsum > 0)

    candidates = np.ones(len(event), dtype=bool)
    use = candidates
    mean = per_event_median(event, t0, n_events)  # robust start: outliers cannot pull it
    for _ in range(OUTLIER_PASSES):
        keep = candidates & (np.abs(t0 - mean[event]) < calibration.outlier_nsigma * sigma)
        # never reject everything: events that would lose all sensors keep every candidate
        alive = np.bincount(event, weights=keep, minlength=n_events) > 0
        use = np.where(alive[event], keep, candidates)
        mean = weighted_mean(use)
    n_used = np.bincount(event, weights=use, minlength=n_events).astype(np.int64)
    pull2 = np.where(use, ((t0 - mean[event]) / sigma) ** 2, 0.0)
    chi2_ndf = np.bincount(event, weights=pull2, minlength=n_events) / np.maximum(n_used - 1, 1)
    time_ns = mean - time_of_flight_ns(vertex_xyz, first_xyz) - calibration.time_offset_ns
    return TimingResult(time_ns=time_ns, n_used=n_used, chi2_ndf=chi2_ndf)
