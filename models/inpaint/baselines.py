"""Dead-channel inpainting baselines (registered as inpainters on import).

Three non-neural ways of filling the photons (npho) and times of invalid sensors, each an
:class:`~xecreco.models.base.Inpainter`:

``neighbour-average``
    Mean npho and mean time of the valid immediate same-face neighbours (3 x 3 ring on the MPPC
    and PMT grids, 6 neighbours on the hexagonal faces). Clusters of dead sensors are filled from
    the outside in (up to ``max_passes`` rings).
``solid-angle``
    The MEG II recovery (physics.md section 8): with the light-source position P from a
    point-source fit of the inner face, ``npho_i = sum_n npho_n * Omega_i(P) / sum_n Omega_n(P)``
    over the valid same-face neighbours n within ``radius_cm`` (20 cm); the plain mean of those
    neighbours when their photon sum is under ``min_sum`` (50) or no position is available.
``local-fit``
    For every dead inner MPPC near the shower core (at least ``min_fit_npho`` photons on the
    valid inner MPPCs within ``fit_radius_cm``) a local solid-angle fit: S and P fitted to those
    MPPCs, the dead sensor predicted as ``S * Omega_i(P)``. Dimmer dead inner MPPCs get the
    ``neighbour-average`` value (their immediate neighbours describe the local light better than
    the global point-source model, especially with pile-up), the PMT faces the ``solid-angle``
    value.

Times (``solid-angle`` and ``local-fit``) are propagation-consistent: the emission time
``t0 = sum_n w_n (t_n - |P - x_n| / v_eff) / sum_n w_n`` (weights w_n = npho_n, over the
valid-time immediate neighbours, or those within ``radius_cm`` when none has a valid time) plus
``|P - x_i| / v_eff``. A filled time is marked valid only when at least one
neighbour had a valid time and the filled npho reaches ``min_time_npho`` (the reader's 50
photons). Sensors with no valid neighbour at all stay invalid and are not
marked as inpainted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import scipy.sparse as sp

from xecreco.geometry import Face, Geometry, design_geometry, solid_angle_fraction, uvw_to_xyz
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.lightfit import fit_point_source, light_weights, omega_of
from xecreco.models.base import EventBatch
from xecreco.models.inpaint.localfit import MIN_FIT_SENSORS, estimate_position
from xecreco.models.inpaint.neighbours import immediate_neighbours, padded_rows, radius_neighbours
from xecreco.models.registry import register_inpainter

__all__ = ["NeighbourAverageInpainter", "SolidAngleInpainter", "LocalFitInpainter"]
#: Events per block in the sparse neighbour sums (bounds the temporary (4760, block) arrays).
_EVENT_BLOCK = 1024


def _neighbour_sums(rows: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """(N, D) sums over each selected row's neighbours of (N, 4760) per-sensor values."""
    n = values.shape[0]
    out = np.empty((n, rows.shape[0]), dtype=np.float64)
    for start in range(0, n, _EVENT_BLOCK):
        block = np.ascontiguousarray(values[start:start + _EVENT_BLOCK].T, dtype=np.float64)
        out[start:start + _EVENT_BLOCK] = (rows @ block).T
    return out


def _distances(points: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """(M, K) distances (cm) between points (M, 3) and sensor positions (K, 3)."""
    d2 = points @ positions.T
    d2 *= -2.0
    d2 += np.einsum("ij,ij->i", points, points)[:, None]
    d2 += np.einsum("ij,ij->i", positions, positions)[None, :]
    return np.sqrt(np.maximum(d2, 0.0))


class _Baseline(ABC):
    """Shared plumbing: unpacking a batch into float64 working copies and repacking the result."""

    name = "baseline"

    def __init__(self, geometry: Geometry | None = None,
                 v_eff_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS,
                 min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD) -> None:
        self.geometry = geometry or design_geometry()
        self.v_eff = float(v_eff_cm_per_ns)
        self.min_time_npho = float(min_time_npho)

    def inpaint(self, batch: EventBatch) -> EventBatch:
        """Return a copy of ``batch`` with invalid npho (and time) filled; see the module doc."""
        npho = np.where(batch.valid_npho, batch.npho, 0.0).astype(np.float64)
        time_ns = np.where(batch.valid_time, batch.time, 0.0).astype(np.float64) * 1e9
        valid = np.array(batch.valid_npho, dtype=bool, copy=True)
        valid_t = np.array(batch.valid_time, dtype=bool, copy=True)
        filled = np.zeros_like(valid)
        if (~valid).any():
            self._fill(npho, time_ns, valid, valid_t, filled)
            # like the reader: no valid time for sensors with too little light
            valid_t &= ~(filled & (npho < self.min_time_npho))
        extras = dict(batch.extras)
        previous = extras.get("inpainted")
        extras["inpainted"] = filled | (np.asarray(previous, dtype=bool)
                                        if previous is not None else False)
        # measured values are passed through untouched (no float64 round trip)
        new_time = filled & valid_t
        return batch.replace(
            npho=np.where(filled, npho, np.where(valid, batch.npho, 0.0)).astype(np.float32),
            time=np.where(new_time, time_ns * 1e-9,
                          np.where(valid_t, batch.time, 0.0)).astype(np.float32),
            valid_npho=valid,
            valid_time=valid_t,
            extras=extras,
        )

    @abstractmethod
    def _fill(self, npho, time_ns, valid, valid_t, filled) -> None:
        """Fill in place the (N, 4760) float64 npho and time (ns) at invalid sensors."""

    def _propagation_times(self, rows, cols, time_ns, valid_t, npho, dist_cm):
        """Propagation-consistent times (ns) of sensors ``cols`` and whether they exist.

        ``dist_cm`` (N, 4760) holds each sensor's distance from the event's light source.
        """
        weight = np.where(valid_t, np.clip(npho, 0.0, None) + 1e-3, 0.0)
        emitted = time_ns - dist_cm / self.v_eff
        num = _neighbour_sums(rows, weight * emitted)
        den = _neighbour_sums(rows, weight)
        has = den > 0
        t0 = num / np.where(has, den, 1.0)
        return t0 + dist_cm[:, cols] / self.v_eff, has


class NeighbourAverageInpainter(_Baseline):
    """Mean of the valid immediate same-face neighbours, for npho and time.

    Args:
        geometry: detector geometry (design by default).
        max_passes: rings of a dead cluster filled from the outside in; sensors still without
            a valid (or previously filled) neighbour after that stay invalid.
        min_time_npho: filled sensors below this many photons get no valid time.
    """

    name = "neighbour-average"

    def __init__(self, geometry: Geometry | None = None, max_passes: int = 3,
                 v_eff_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS,
                 min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD) -> None:
        super().__init__(geometry, v_eff_cm_per_ns, min_time_npho)
        self.max_passes = int(max_passes)

    def _fill(self, npho, time_ns, valid, valid_t, filled) -> None:
        table = immediate_neighbours(self.geometry)
        for _ in range(self.max_passes):
            todo = ~valid
            cols = np.flatnonzero(todo.any(axis=0))
            if not len(cols):
                return
            rows = table[cols]
            count = _neighbour_sums(rows, valid.astype(np.float64))
            total = _neighbour_sums(rows, np.where(valid, npho, 0.0))
            count_t = _neighbour_sums(rows, valid_t.astype(np.float64))
            total_t = _neighbour_sums(rows, np.where(valid_t, time_ns, 0.0))
            ok = todo[:, cols] & (count > 0)
            if not ok.any():
                return
            ev, j = np.nonzero(ok)
            sensor = cols[j]
            npho[ev, sensor] = total[ev, j] / count[ev, j]
            has_t = count_t[ev, j] > 0
            time_ns[ev[has_t], sensor[has_t]] = total_t[ev, j][has_t] / count_t[ev, j][has_t]
            valid[ev, sensor] = True
            valid_t[ev[has_t], sensor[has_t]] = True
            filled[ev, sensor] = True


class SolidAngleInpainter(_Baseline):
    """Solid-angle weighted recovery from same-face neighbours (the MEG II method).

    Args:
        geometry: detector geometry (design by default).
        radius_cm: neighbour radius on the same face, cm.
        min_sum: below this neighbour photon sum the plain neighbour mean is used.
        v_eff_cm_per_ns: effective light speed for propagation-consistent times, cm/ns.
        min_time_npho: filled sensors below this many photons get no valid time (as the
            reader does for measured ones).
    """

    name = "solid-angle"

    def __init__(self, geometry: Geometry | None = None, radius_cm: float = 20.0,
                 min_sum: float = 50.0, v_eff_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS,
                 min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD) -> None:
        super().__init__(geometry, v_eff_cm_per_ns, min_time_npho)
        self.radius_cm = float(radius_cm)
        self.min_sum = float(min_sum)

    def _source(self, npho, valid):
        """Per-event light-source fit (uvw cm, ok) from the inner face."""
        return estimate_position(npho, valid, self.geometry)

    def _fill(self, npho, time_ns, valid, valid_t, filled) -> None:
        geometry = self.geometry
        todo = ~valid
        cols = np.flatnonzero(todo.any(axis=0))
        rows = radius_neighbours(self.radius_cm, geometry)[cols]
        source = self._source(npho, valid)
        xyz = uvw_to_xyz(source.uvw)
        need = np.union1d(cols, rows.indices)  # the radius table contains the immediate one
        omega = np.zeros_like(npho)
        dist = np.zeros_like(npho)
        for start in range(0, len(xyz), _EVENT_BLOCK):
            stop = start + _EVENT_BLOCK
            omega[start:stop, need] = solid_angle_fraction(xyz[start:stop], geometry, sensors=need)
            dist[start:stop, need] = _distances(xyz[start:stop], geometry.position[need])

        count = _neighbour_sums(rows, valid.astype(np.float64))
        total = _neighbour_sums(rows, np.where(valid, npho, 0.0))
        omega_sum = _neighbour_sums(rows, np.where(valid, omega, 0.0))
        mean = total / np.where(count > 0, count, 1.0)
        use_omega = (total >= self.min_sum) & (omega_sum > 0) & source.ok[:, None]
        estimate = np.where(use_omega, total * omega[:, cols] / np.where(use_omega, omega_sum, 1.0),
                            mean)
        estimate = self._refine(estimate, cols, npho, valid, source)

        near = immediate_neighbours(geometry)[cols]
        times, has_t = self._propagation_times(near, cols, time_ns, valid_t, npho, dist)
        if not has_t.all():
            wide_times, wide_has = self._propagation_times(rows, cols, time_ns, valid_t, npho, dist)
            times = np.where(has_t, times, wide_times)
            has_t = has_t | wide_has
        ok = todo[:, cols] & (count > 0)
        ev, j = np.nonzero(ok)
        sensor = cols[j]
        npho[ev, sensor] = estimate[ev, j]
        keep_t = has_t[ev, j]
        time_ns[ev[keep_t], sensor[keep_t]] = times[ev, j][keep_t]
        valid[ev, sensor] = True
        valid_t[ev[keep_t], sensor[keep_t]] = True
        filled[ev, sensor] = True

    def _refine(self, estimate, cols, npho, valid, source):
        """Hook for subclasses: improve the (N, D) estimates of sensors ``cols``."""
        return estimate


class LocalFitInpainter(SolidAngleInpainter):
    """Local point-source fits for dead inner MPPCs near the shower core (see the module doc).

    Args:
        geometry: detector geometry (design by default).
        fit_radius_cm: inner MPPCs within this distance of the dead one enter its fit, cm.
        min_fit_npho: photon sum of those MPPCs needed to attempt the fit; dimmer dead inner
            sensors get the mean of their valid immediate neighbours.
        max_ratio: a fitted value above ``max_ratio`` times the brightest fitted neighbour is
            rejected (the ``solid-angle`` value is kept).
        fit_iterations: Levenberg-Marquardt iterations of each local fit (it starts from the
            event's inner-face fit, so few are needed).
        radius_cm, min_sum, v_eff_cm_per_ns, min_time_npho: as for
            :class:`SolidAngleInpainter`.
    """

    name = "local-fit"

    def __init__(self, geometry: Geometry | None = None, fit_radius_cm: float = 3.2,
                 min_fit_npho: float = 5.0e4, max_ratio: float = 3.0, fit_iterations: int = 6,
                 radius_cm: float = 20.0, min_sum: float = 50.0,
                 v_eff_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS,
                 min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD) -> None:
        super().__init__(geometry, radius_cm, min_sum, v_eff_cm_per_ns, min_time_npho)
        self.fit_iterations = int(fit_iterations)
        self.fit_radius_cm = float(fit_radius_cm)
        self.min_fit_npho = float(min_fit_npho)
        self.max_ratio = float(max_ratio)

    def _refine(self, estimate, cols, npho, valid, source):
        inner = np.asarray(self.geometry.face)[cols] == int(Face.INNER)
        candidates = ~valid[:, cols] & inner[None, :]
        if not candidates.any():
            return estimate
        ev, j = np.nonzero(candidates)
        patch = padded_rows(radius_neighbours(self.fit_radius_cm, self.geometry), cols[j])
        safe = np.where(patch >= 0, patch, 0)
        usable = (patch >= 0) & valid[ev[:, None], safe]
        light = np.where(usable, npho[ev[:, None], safe], 0.0)
        bright = light.sum(axis=1) >= self.min_fit_npho
        refined = estimate.copy()
        dim_ev, dim_j = ev[~bright], j[~bright]
        if len(dim_ev):
            near = immediate_neighbours(self.geometry)[cols]
            count = _neighbour_sums(near, valid.astype(np.float64))
            total = _neighbour_sums(near, np.where(valid, npho, 0.0))
            has = count[dim_ev, dim_j] > 0
            refined[dim_ev[has], dim_j[has]] = (total[dim_ev, dim_j] / np.maximum(
                count[dim_ev, dim_j], 1.0))[has]
        if not bright.any():
            return refined
        ev, j, patch = ev[bright], j[bright], patch[bright]
        light, usable = light[bright], usable[bright]
        light, weight = light_weights(light, usable)
        fit = fit_point_source(light, weight, patch, source.uvw[ev], iterations=self.fit_iterations,
                               geometry=self.geometry, min_sensors=MIN_FIT_SENSORS)
        predicted = fit.scale * omega_of(fit.uvw, cols[j][:, None], self.geometry)[:, 0]
        sane = fit.ok & (predicted >= 0) & (predicted <= self.max_ratio * light.max(axis=1))
        refined[ev[sane], j[sane]] = predicted[sane]
        return refined


register_inpainter(NeighbourAverageInpainter.name, NeighbourAverageInpainter)
register_inpainter(SolidAngleInpainter.name, SolidAngleInpainter)
register_inpainter(LocalFitInpainter.name, LocalFitInpainter)
