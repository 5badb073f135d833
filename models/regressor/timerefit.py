"""The sensor-time refit of a regressor: the network's time combined with a weighted mean of the
sensor times taken at the network's own position.

Why (measured on 20,000 fresh 52.83 MeV photons, docs/models.md): the network's time and the
classical weighted sensor-time mean err almost independently (correlation 0.24), and the
sensor-time mean taken at the network's first-interaction point is better than the classical
one (43 vs 46 ps core sigma), so a weighted sum of the two beats both.

Per event, with (x, y, z) the network's first-interaction point P and t_nn its emission time:

    t0_i = t_i - |x_i - P| / v_eff - walk_i(log10 npho_i)        (sensor i's time at P, ns)

over the usable sensors (valid time, measured, not inpainted, npho >= ``min_npho``), with
per-sensor resolutions sigma_i(log10 npho_i) of the same tables; starting from the network's own
time at P (t_nn + |P - vertex| / c), ``passes`` times: keep the sensors within ``outlier_nsigma``
sigma_i of the current mean (all usable ones if none would stay) and take their 1/sigma_i^2
weighted mean. Then

    t_sensors = mean - |P - vertex| / c - offset(E)
    time = a(E) t_nn + (1 - a(E)) t_sensors

with a(E) in [0, 1] and offset(E) piecewise linear in the reconstructed energy E between knots
(constant beyond the end knots), and t_nn where no sensor is usable. ``time_err`` (uncertainty
heads) becomes sqrt((a err_nn)^2 + ((1 - a) sigma_sensors)^2), with
sigma_sensors = (sum 1/sigma_i^2)^-1/2.

The walk and resolution tables, the light speed and the outlier cut are the classical
calibration's (:class:`~xecreco.models.classical.calibration.ClassicalCalibration`), copied into
the checkpoint so that the network never changes with the calibration file; a(E) and the offset
are fitted by ``xecreco calibrate -r`` (:func:`fit_time_combination`) on a scan sample.

All of it is torch ops (:class:`SensorTimeRefit`) in
:class:`~xecreco.models.regressor.reconstructor.OutputsToPhysical`, so ``predict`` (float64) and
the ONNX graph (float32) run the same code. Stored in the checkpoint under :data:`PAYLOAD_KEY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import torch

from xecreco.errors import UserError
from xecreco.geometry import design_geometry
from xecreco.geometry.constants import SPEED_OF_LIGHT_CM_PER_NS
from xecreco.models.classical.timing import weighted_time_fit
from xecreco.models.regressor.calibration import check_stored_format

__all__ = [
    "PAYLOAD_KEY",
    "TimeCombination",
    "SensorInputs",
    "SensorTimeRefit",
    "fit_time_combination",
    "time_combination_from_payload",
]

FORMAT = "xecreco-time-combination"
FORMAT_VERSION = 1
#: the checkpoint payload key that holds the time combination dict.
PAYLOAD_KEY = "time_combination"
#: network weights a(E) tried per scan line by :func:`fit_time_combination`.
WEIGHT_GRID = tuple(np.round(np.linspace(0.0, 1.0, 41), 4))
#: knots of the uniform log10(npho) grid the walk and resolution tables are resampled on.
TABLE_STEP = 0.125
#: the tuple-valued fields of :class:`TimeCombination` (lists of floats in the stored dict).
_TUPLE_FIELDS = ("energy_gev", "network_weight", "offset_ns", "table_log10_npho",
                 "walk_mppc_ns", "walk_pmt_ns", "sigma_mppc_ns", "sigma_pmt_ns")


@dataclass(frozen=True)
class TimeCombination:
    """Constants of the refit and the combination (see the module docstring).

    Attributes:
        energy_gev: knots of a(E), reconstructed energy (GeV), increasing.
        network_weight: a at each knot, in [0, 1].
        offset_ns: offset(E) at each knot, subtracted from the sensor-time estimate (ns).
        light_speed_cm_ns: effective light speed (cm/ns).
        table_log10_npho: start and step of the uniform log10(npho) grid of the tables.
        walk_mppc_ns, walk_pmt_ns, sigma_mppc_ns, sigma_pmt_ns: per-sensor walk (ns) and
            resolution (ns) on that grid (constant beyond its ends).
        outlier_nsigma: sensors further than this many sigma_i from the mean are dropped.
        min_npho: fewest photons of a usable sensor.
        passes: outlier-rejection passes.
        info: provenance, JSON-ready.
    """

    energy_gev: tuple
    network_weight: tuple
    offset_ns: tuple
    light_speed_cm_ns: float
    table_log10_npho: tuple
    walk_mppc_ns: tuple
    walk_pmt_ns: tuple
    sigma_mppc_ns: tuple
    sigma_pmt_ns: tuple
    outlier_nsigma: float = 3.0
    min_npho: float = 100.0
    passes: int = 2
    info: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        e = np.asarray(self.energy_gev, dtype=np.float64)
        a = np.asarray(self.network_weight, dtype=np.float64)
        if e.ndim != 1 or e.size < 1 or e.shape != a.shape or len(self.offset_ns) != e.size:
            raise ValueError("a time combination needs >= 1 energy knot with as many weights "
                             "and offsets")
        if not np.all(np.isfinite(np.asarray(self.offset_ns, dtype=np.float64))):
            raise ValueError("time combination offsets must be finite")
        if np.any(np.diff(e) <= 0) or not np.all(np.isfinite(e)):
            raise ValueError("time combination energy knots must be finite and increase")
        if np.any((a < 0) | (a > 1)) or not np.all(np.isfinite(a)):
            raise ValueError("time combination network weights must lie in [0, 1]")
        n = len(self.walk_mppc_ns)
        if n < 2 or any(len(t) != n for t in (self.walk_pmt_ns, self.sigma_mppc_ns,
                                              self.sigma_pmt_ns)):
            raise ValueError("time combination tables need >= 2 entries each, all alike")
        if len(self.table_log10_npho) != 2 or not self.table_log10_npho[1] > 0:
            raise ValueError("table_log10_npho must be (start, step > 0)")
        if min(min(self.sigma_mppc_ns), min(self.sigma_pmt_ns)) <= 0:
            raise ValueError("time combination resolutions must be positive")
        if not (self.light_speed_cm_ns > 0 and self.outlier_nsigma > 0 and self.passes >= 1):
            raise ValueError("light speed, outlier cut and passes must be positive")

    @classmethod
    def from_classical(cls, calibration, energy_gev=(0.05,), network_weight=(1.0,),
                       offset_ns=(0.0,), info: dict | None = None) -> "TimeCombination":
        """The refit constants of a classical calibration (its tables resampled on a uniform
        grid of step :data:`TABLE_STEP`, same linear interpolation) and the given a(E) and
        offset(E)."""
        xp = np.asarray(calibration.walk_log10_npho, dtype=np.float64)
        grid = np.arange(xp[0], xp[-1] + 0.5 * TABLE_STEP, TABLE_STEP)

        def resample(values):
            return tuple(float(v) for v in np.interp(grid, xp, np.asarray(values, float)))

        return cls(
            tuple(float(v) for v in energy_gev), tuple(float(v) for v in network_weight),
            tuple(float(v) for v in offset_ns), float(calibration.light_speed_cm_ns),
            (float(grid[0]), float(TABLE_STEP)),
            resample(calibration.walk_mppc_ns), resample(calibration.walk_pmt_ns),
            resample(np.maximum(calibration.sigma_mppc_ns, 1e-3)),
            resample(np.maximum(calibration.sigma_pmt_ns, 1e-3)),
            float(calibration.outlier_nsigma), float(calibration.time_min_npho), 2,
            dict(info or {}))

    def with_weights(self, energy_gev, network_weight, offset_ns,
                     info: dict | None = None) -> "TimeCombination":
        """The same refit with another a(E) and offset(E) (checked as at construction)."""
        return replace(self, energy_gev=tuple(float(v) for v in energy_gev),
                       network_weight=tuple(float(v) for v in network_weight),
                       offset_ns=tuple(float(v) for v in offset_ns), info=dict(info or {}))

    def to_dict(self) -> dict:
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            **{k: [float(v) for v in getattr(self, k)] for k in _TUPLE_FIELDS},
            "light_speed_cm_ns": float(self.light_speed_cm_ns),
            "outlier_nsigma": float(self.outlier_nsigma), "min_npho": float(self.min_npho),
            "passes": int(self.passes), "info": dict(self.info),
        }

    @classmethod
    def from_dict(cls, data, origin: str = "time combination") -> "TimeCombination":
        """From :meth:`to_dict`; UserError naming ``origin`` when it is not a valid one."""
        check_stored_format(data, key=PAYLOAD_KEY, fmt=FORMAT, version=FORMAT_VERSION,
                            what="time combination", origin=origin)
        try:
            floats = {k: tuple(float(v) for v in data[k]) for k in _TUPLE_FIELDS}
            return cls(**floats, light_speed_cm_ns=float(data["light_speed_cm_ns"]),
                       outlier_nsigma=float(data["outlier_nsigma"]),
                       min_npho=float(data["min_npho"]), passes=int(data["passes"]),
                       info=dict(data.get("info") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{origin}: bad time combination ({exc}); refit it with "
                            "`xecreco calibrate -r`") from None


class SensorInputs(NamedTuple):
    """Raw sensor values of a batch for the refit: ``time_s`` (N, 4760) s as in the file,
    ``npho`` (N, 4760) photons, ``usable`` (N, 4760) bool (valid time and measured: not dead,
    not inpainted)."""

    time_s: torch.Tensor
    npho: torch.Tensor
    usable: torch.Tensor


def _uniform_table(x: torch.Tensor, start: float, step: float, table: torch.Tensor, knots: int,
                   offset: torch.Tensor | None = None):
    """Linear interpolation on the grid start + k step (``knots`` knots) at ``x`` (constant
    beyond the ends) of every row of ``table`` (K, m) at once: (K, len(x)). ``offset``
    (len(x),) int64, optional: where each entry's ``knots`` values start in a row (the MPPC or
    the PMT half of a row of 2 x ``knots``); None: at 0. A floor and two gathers per row, plain
    for the ONNX export."""
    last = knots - 1
    pos = torch.clamp((x - start) * (1.0 / step), 0.0, float(last))
    low = torch.clamp(torch.floor(pos), max=float(last - 1))
    frac = pos - low
    index = low.to(torch.int64)
    if offset is not None:
        index = index + offset
    return table[:, index] * (1.0 - frac) + table[:, index + 1] * frac


def _piecewise_linear(x: torch.Tensor, xp, fp) -> torch.Tensor:
    """np.interp(x, xp, fp) for a few python-float knots, as clamps (constant beyond the ends)."""
    out = torch.full_like(x, float(fp[0]))
    for k in range(len(xp) - 1):
        slope = (fp[k + 1] - fp[k]) / (xp[k + 1] - xp[k])
        out = out + slope * (torch.clamp(x, float(xp[k]), float(xp[k + 1])) - float(xp[k]))
    return out


class SensorTimeRefit(torch.nn.Module):
    """The refit and combination of a :class:`TimeCombination` in torch (any float dtype)."""

    def __init__(self, combination: TimeCombination):
        super().__init__()
        self.combination = combination
        geometry = design_geometry()
        self.register_buffer("position", torch.tensor(
            np.asarray(geometry.position, dtype=np.float64)), persistent=False)
        self.register_buffer("is_mppc", torch.tensor(
            np.asarray(geometry.is_mppc, dtype=bool)), persistent=False)
        # (walk, sigma) x (MPPC knots, then PMT knots): one lookup gives both for any sensor
        tables = np.asarray([list(combination.walk_mppc_ns) + list(combination.walk_pmt_ns),
                             list(combination.sigma_mppc_ns) + list(combination.sigma_pmt_ns)])
        self.register_buffer("tables", torch.from_numpy(tables), persistent=False)
        self.knots = len(combination.walk_mppc_ns)

    def sensor_time(self, sensors: SensorInputs, xyz, vertex_xyz: torch.Tensor,
                    t_network: torch.Tensor):
        """``(t_sensors (N,) ns before the offset, sigma_sensors (N,) ns, n_used (N,))`` at the
        point ``xyz``
        ((x, y, z) tuple of (N,) cm) with the (N, 3) cm vertex (unknown rows: the target
        centre), starting from the network's emission time ``t_network`` (N,) ns.

        Works on the flat list of usable (event, sensor) pairs only (a few hundred of the
        4760 sensors per event); the mean is the classical timing's
        :func:`~xecreco.models.classical.timing.weighted_time_fit`."""
        c = self.combination
        dtype = t_network.dtype
        n_events, n_sensors = sensors.npho.shape
        npho_all = sensors.npho.reshape(-1)
        usable = sensors.usable.reshape(-1) & (npho_all >= c.min_npho)
        flat = torch.nonzero(usable).reshape(-1)
        event = torch.div(flat, n_sensors, rounding_mode="floor")
        sensor = flat - event * n_sensors
        npho = npho_all[flat].to(dtype)
        time_ns = sensors.time_s.reshape(-1)[flat].to(dtype) * 1e9
        point = torch.stack(xyz, dim=1)
        path = torch.sqrt(((self.position.to(dtype)[sensor] - point[event]) ** 2).sum(dim=1))
        flight = torch.sqrt(((point - vertex_xyz) ** 2).sum(dim=1)) * (
            1.0 / SPEED_OF_LIGHT_CM_PER_NS)
        log_npho = torch.log10(torch.clamp(npho, min=1.0))
        start, step = c.table_log10_npho
        pmt_offset = (~self.is_mppc[sensor]).to(torch.int64) * self.knots
        walk, sigma = _uniform_table(log_npho, start, step, self.tables.to(dtype), self.knots,
                                     pmt_offset)
        t0 = time_ns - path * (1.0 / c.light_speed_cm_ns) - walk
        mean, used = weighted_time_fit(event, t0, sigma, t_network + flight, c.outlier_nsigma,
                                       c.passes)
        weights = torch.where(used, 1.0 / (sigma * sigma), torch.zeros_like(sigma))
        zeros = torch.zeros_like(t_network)
        total = zeros.scatter_add(0, event, weights)
        n_used = zeros.scatter_add(0, event, used.to(dtype))
        sigma_sensors = torch.rsqrt(torch.clamp(total, min=1e-30))
        return mean - flight, sigma_sensors, n_used

    def forward(self, sensors: SensorInputs, xyz, vertex_xyz: torch.Tensor,
                t_network: torch.Tensor, energy_gev: torch.Tensor,
                t_network_err: torch.Tensor | None = None):
        """``(time (N,) ns, time_err (N,) ns or None)``: the combination of the module
        docstring (the network's time where no sensor is usable)."""
        c = self.combination
        t_sensors, sigma_sensors, n_used = self.sensor_time(sensors, xyz, vertex_xyz, t_network)
        weight = _piecewise_linear(energy_gev, c.energy_gev, c.network_weight)
        weight = torch.where(n_used > 0, weight, torch.ones_like(weight))
        offset = _piecewise_linear(energy_gev, c.energy_gev, c.offset_ns)
        time = weight * t_network + (1.0 - weight) * (t_sensors - offset)
        err = None
        if t_network_err is not None:
            err = torch.sqrt((weight * t_network_err) ** 2
                             + ((1.0 - weight) * sigma_sensors) ** 2)
        return time, err


def fit_time_combination(base: TimeCombination, t_network_ns, t_sensors_ns, t_true_ns,
                         energy_gev, true_energy_gev, lines_gev, *, info: dict | None = None
                         ) -> TimeCombination:
    """a(E) and the offset from events of known energy lines.

    Args:
        base: the refit constants (its own a(E) and offset are not used).
        t_network_ns, t_sensors_ns, t_true_ns: (N,) the network's time, the sensor-time estimate
            with offset 0, and the true emission time, ns (usable events only).
        energy_gev: (N,) reconstructed energy (GeV): the knots sit at each line's median.
        true_energy_gev: (N,) true energy (GeV): which line an event belongs to.
        lines_gev: the sample's true energies (GeV), ascending; every event lies on one.
        info: provenance stored with the combination.

    Per line, a is the grid value (:data:`WEIGHT_GRID`) that minimises the sigma68 of the
    combined residual, and the offset puts the median of the combined residual at 0 (where
    a = 1 the sensor times do not enter and the offset is their median residual).
    """
    from xecreco.validation.estimators.widths import sigma68_sorted

    t_nn = np.asarray(t_network_ns, dtype=np.float64)
    t_s = np.asarray(t_sensors_ns, dtype=np.float64)
    t_true = np.asarray(t_true_ns, dtype=np.float64)
    energy = np.asarray(energy_gev, dtype=np.float64)
    lines = np.asarray(lines_gev, dtype=np.float64)
    true_energy = np.asarray(true_energy_gev, dtype=np.float64)
    nearest = np.argmin(np.abs(true_energy[:, None] - lines[None, :]), axis=1)
    knots, weights, offsets, widths = [], [], [], []
    for i in range(len(lines)):
        sel = nearest == i
        if sel.sum() < 20:
            continue
        r_nn, r_s = t_nn[sel] - t_true[sel], t_s[sel] - t_true[sel]
        best = None
        for a in WEIGHT_GRID:
            width = float(sigma68_sorted(np.sort(a * r_nn + (1 - a) * r_s)))
            if best is None or width < best[1]:
                best = (float(a), width)
        a = best[0]
        offsets.append(float(np.median(r_s)) if a >= 1.0 else
                       float(np.median(a * r_nn + (1 - a) * r_s)) / (1.0 - a))
        knots.append(float(np.median(energy[sel])))
        weights.append(a)
        widths.append(1000.0 * best[1])
    if not knots:
        raise UserError("no scan line has >= 20 usable events for the time combination: "
                        "simulate more")
    order = np.argsort(knots)
    meta = {"lines_MeV": [float(1000 * v) for v in lines],
            "sigma68_ps": [float(w) for w in np.asarray(widths)[order]],
            **(info or {})}
    return base.with_weights(np.asarray(knots)[order], np.asarray(weights)[order],
                             np.asarray(offsets)[order], meta)


def time_combination_from_payload(payload: dict, origin) -> TimeCombination | None:
    """The time combination stored in a checkpoint payload (None when it has none)."""
    data = payload.get(PAYLOAD_KEY)
    return None if data is None else TimeCombination.from_dict(data, str(origin))
