"""Photon emission time at the vertex from the sensor times.

Per sensor i with a valid time t_i (s in the file, ns here):

    t0_i = t_i - |x_i - P| / v_eff - walk(log10 n_i)

with P the fitted light point, v_eff the effective light speed and walk the per-sensor-type
offset table of the calibration. The t0_i are combined by a weighted mean (weights
1 / sigma(log10 n_i)^2) with iterative rejection of sensors further than ``outlier_nsigma``
sigma from the current mean (starting from the per-event median; :func:`weighted_time_fit`,
which the regressor's sensor-time refit shares); then the photon time of
flight from the vertex (``xyzVTX`` when known, else the target centre) to the first-interaction
point is subtracted, and the calibration offset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def weighted_time_fit(event: torch.Tensor, t0: torch.Tensor, sigma: torch.Tensor,
                      start: torch.Tensor, outlier_nsigma: float,
                      passes: int = OUTLIER_PASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """The outlier-rejected weighted mean of per-sensor times, per event, in torch.

    ``event`` (P,) int64 event index of each usable (event, sensor) pair, ``t0`` (P,) its time
    estimate (ns), ``sigma`` (P,) its resolution (ns), ``start`` (N,) the starting mean of each
    event. ``passes`` times: keep the pairs within ``outlier_nsigma`` sigma of the current mean
    (all of an event's pairs if none would stay) and take their 1/sigma^2 weighted mean (events
    without pairs keep their start). Returns ``(mean (N,), used (P,) bool)``. One definition for
    the classical timing (:func:`combine_times`) and the regressor's sensor-time refit
    (:mod:`xecreco.models.regressor.timerefit`); plain ops for the ONNX export.
    """
    inv_var = 1.0 / (sigma * sigma)
    zeros = torch.zeros_like(start)

    def per_event(values):
        return zeros.scatter_add(0, event, values)

    mean = start
    used = torch.ones_like(t0)  # 0/1 as floats: onnxruntime has no Where for bool values
    for _ in range(int(passes)):
        keep = (torch.abs(t0 - mean[event]) < outlier_nsigma * sigma).to(t0.dtype)
        alive = per_event(keep) > 0  # never reject all of an event's sensors
        used = torch.where(alive[event], keep, torch.ones_like(keep))
        weights = inv_var * used
        total = per_event(weights)
        mean = torch.where(total > 0, per_event(weights * t0) / torch.clamp(total, min=1e-30),
                           mean)
    return mean, used > 0.5


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
    start = per_event_median(event, t0, n_events)  # robust start: outliers cannot pull it
    mean, used = weighted_time_fit(torch.from_numpy(event), torch.from_numpy(t0),
                                   torch.from_numpy(sigma), torch.from_numpy(start),
                                   calibration.outlier_nsigma)
    mean, use = mean.numpy(), used.numpy()
    n_used = np.bincount(event, weights=use, minlength=n_events).astype(np.int64)
    pull2 = np.where(use, ((t0 - mean[event]) / sigma) ** 2, 0.0)
    chi2_ndf = np.bincount(event, weights=pull2, minlength=n_events) / np.maximum(n_used - 1, 1)
    time_ns = mean - time_of_flight_ns(vertex_xyz, first_xyz) - calibration.time_offset_ns
    return TimingResult(time_ns=time_ns, n_used=n_used, chi2_ndf=chi2_ndf)
