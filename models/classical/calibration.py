"""Calibration constants of the classical reconstruction: container, JSON I/O, defaults.

The constants are derived from a simulated sample with truth by
:func:`xecreco.models.classical.fit.fit_calibration` (``xecreco calibrate``). A default set,
produced by that command on the documented default-simulation sample (docs/reconstruction.md),
ships as ``models/bundled/classical_calibration.json`` and is what ``classical`` uses unless told
otherwise.

Tables binned in a reconstructed quantity are stored as (bin centres, values) and applied by
linear interpolation with constant extrapolation.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry.constants import LXE_LIGHT_SPEED_CM_PER_NS
from xecreco.io.paths import atomic_output

CALIBRATION_FORMAT = "xecreco-classical-calibration"
CALIBRATION_VERSION = 1

#: Sensor groups with their own light-collection weight in the photon sum. The 12 coarse outer
#: ids sitting on the dense central lattice belong to ``outer_centre`` (physics.md section 1).
SENSOR_GROUPS = ("inner", "outer_coarse", "outer_centre", "us", "ds", "top", "bottom")


@dataclass
class ClassicalCalibration:
    """Every constant the classical reconstruction uses.

    Position (local solid-angle fit, LSAF):
        window_half: half-size of the inner-MPPC window around the seed (sensors), the fit uses
            (2 * window_half + 1)^2 sensors.
        fit_rel_sigma: relative systematic error per sensor added to the Poisson term in the
            LSAF chi^2 (models the shower extent the point-source model ignores).
        fit_iterations: Levenberg-Marquardt iterations.
        min_inner_npho: inner photon sum below which the event is TOO_LITTLE_LIGHT.
        w_table_cm, w_shift_cm: depth correction, w = w_fit + interp(w_fit).
        u_table_cm, u_offset_cm, u_incidence_cm: u = u_fit + offset(w_fit) +
            incidence(w_fit) * tan_u, tan_u the photon incidence tangent from the vertex.
        v_table_cm, v_offset_cm, v_incidence_cm: the same for v.
    Energy:
        group_weights: photons -> "photon sum" weight per sensor group (SENSOR_GROUPS order).
        energy_table_cm, energy_scale: GeV per weighted photon vs reconstructed w (cm).
        recovery_radius_cm: same-face neighbours used to recover a dead channel (cm).
        recovery_neighbours: at most this many nearest of them are used.
        recovery_min_sum: below this neighbour sum (photons) the plain neighbour mean is used.
    Timing:
        light_speed_cm_ns: effective light propagation speed in the xenon (cm/ns).
        walk_log10_npho, walk_mppc_ns, walk_pmt_ns: per-sensor time offset (ns) vs log10(npho).
        sigma_mppc_ns, sigma_pmt_ns: per-sensor time resolution (ns) vs log10(npho).
        time_offset_ns: global offset subtracted from the combined time (ns).
        outlier_nsigma: sensors further than this from the weighted mean are dropped.
        time_min_npho: sensors with fewer photons are not used for timing.
    Pile-up:
        pileup_coef: logistic-regression coefficients (intercept, log second-peak ratio,
            log timing chi2/ndf) giving ``pileup_prob``.
        pileup_exclusion_cm: radius around the main cluster excluded in the second-peak search.
    Provenance:
        source: free text saying how the constants were made (command, sample).
    """

    window_half: int = 5
    fit_rel_sigma: float = 0.05
    fit_iterations: int = 10
    min_inner_npho: float = 2000.0
    w_table_cm: list = field(default_factory=lambda: [0.0, 40.0])
    w_shift_cm: list = field(default_factory=lambda: [0.0, 0.0])
    u_table_cm: list = field(default_factory=lambda: [0.0, 40.0])
    u_offset_cm: list = field(default_factory=lambda: [0.0, 0.0])
    u_incidence_cm: list = field(default_factory=lambda: [0.0, 0.0])
    v_table_cm: list = field(default_factory=lambda: [0.0, 40.0])
    v_offset_cm: list = field(default_factory=lambda: [0.0, 0.0])
    v_incidence_cm: list = field(default_factory=lambda: [0.0, 0.0])
    group_weights: list = field(default_factory=lambda: [1.0] * len(SENSOR_GROUPS))
    energy_table_cm: list = field(default_factory=lambda: [0.0, 40.0])
    energy_scale: list = field(default_factory=lambda: [1.0e-9, 1.0e-9])
    recovery_radius_cm: float = 20.0
    recovery_neighbours: int = 12
    recovery_min_sum: float = 50.0
    light_speed_cm_ns: float = LXE_LIGHT_SPEED_CM_PER_NS
    walk_log10_npho: list = field(default_factory=lambda: [2.0, 6.0])
    walk_mppc_ns: list = field(default_factory=lambda: [0.0, 0.0])
    walk_pmt_ns: list = field(default_factory=lambda: [0.0, 0.0])
    sigma_mppc_ns: list = field(default_factory=lambda: [1.0, 0.05])
    sigma_pmt_ns: list = field(default_factory=lambda: [1.0, 0.05])
    time_offset_ns: float = 0.0
    outlier_nsigma: float = 3.0
    time_min_npho: float = 100.0
    pileup_coef: list = field(default_factory=lambda: [-4.0, 2.0, 1.0])
    pileup_exclusion_cm: float = 20.0
    source: str = "uncalibrated defaults"

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict with format and version keys."""
        payload = {"format": CALIBRATION_FORMAT, "format_version": CALIBRATION_VERSION}
        payload.update(asdict(self))
        return payload

    @classmethod
    def from_dict(cls, payload: dict, origin: str = "<dict>") -> "ClassicalCalibration":
        """Rebuild from :meth:`to_dict` output; UserError on a wrong format or unknown key."""
        if payload.get("format") != CALIBRATION_FORMAT:
            raise UserError(
                f"{origin}: not a classical calibration file (format "
                f"{payload.get('format')!r}); produce one with `xecreco calibrate`"
            )
        if payload.get("format_version") != CALIBRATION_VERSION:
            raise UserError(
                f"{origin}: calibration format_version {payload.get('format_version')} is not "
                f"supported (expected {CALIBRATION_VERSION}); regenerate it with `xecreco calibrate`"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in payload.items() if k not in ("format", "format_version")}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"{origin}: unknown calibration keys {unknown}")
        if len(values.get("group_weights", SENSOR_GROUPS)) != len(SENSOR_GROUPS):
            raise UserError(f"{origin}: group_weights must have {len(SENSOR_GROUPS)} entries")
        return cls(**values)

    def table(self, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) float64 arrays of a stored table."""
        return np.asarray(getattr(self, x_name), float), np.asarray(getattr(self, y_name), float)


def interp_table(x: np.ndarray, xp, fp) -> np.ndarray:
    """Linear interpolation of a calibration table, constant beyond its ends."""
    return np.interp(np.asarray(x, float), np.asarray(xp, float), np.asarray(fp, float))


def save_calibration(calibration: ClassicalCalibration, path) -> Path:
    """Write the calibration as JSON under a temporary name (``.NAME.<pid>.<random>.tmp``, see
    :func:`xecreco.io.paths.atomic_output`) renamed on success. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        with open(tmp, "x") as out:
            json.dump(calibration.to_dict(), out, indent=1)
            out.write("\n")
        os.chmod(tmp, 0o644)
    return path


def load_calibration(path) -> ClassicalCalibration:
    """Read a calibration JSON written by :func:`save_calibration`."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"calibration file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"calibration file {path} is not valid JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise UserError(f"calibration file {path} does not hold a JSON object")
    return ClassicalCalibration.from_dict(payload, origin=str(path))


def default_calibration() -> ClassicalCalibration:
    """The shipped calibration (``xecreco/models/bundled/classical_calibration.json``).

    Falls back to the uncalibrated :class:`ClassicalCalibration` defaults only when the data
    file is absent from the installation.
    """
    from xecreco.models.bundled import BUNDLED_CALIBRATION as resource

    if not resource.is_file():
        return ClassicalCalibration()
    payload = json.loads(resource.read_text())
    return ClassicalCalibration.from_dict(payload, origin=str(resource))
