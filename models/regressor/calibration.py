"""Energy-response calibration of a regressor checkpoint: median(E_reco / E_true) = 1 at every
energy.

A network trained on a limited spectrum, with a loss that pulls towards the conditional mean of
the leakage tail, has a reconstructed-energy scale that can drift with energy (the bundled
network, trained on 5-110 MeV: +1.0 to +1.3 % at 10-100 MeV and +0.4 % at 115 MeV; the earlier
15-60 MeV one from +1.2 % at 17.6 MeV to -1.3 % at 100 MeV; docs/models.md). The calibration is a monotone
piecewise-linear map g of the reconstructed energy, fitted on a scan sample of discrete true
energies (:func:`~xecreco.validation.studies.scan.scan_lines`):

- knots: at each line i, x_i = median reconstructed energy (GeV) of the line's events and
  y_i = the line's true energy (GeV); g passes through every knot, so (g being monotone)
  median(g(E_reco)) = g(median(E_reco)) = E_true at every fitted line, and g is linear in
  between;
- outside the knots g keeps the end knots' response ratio: g(E) = E * y_0 / x_0 below x_0 and
  E * y_n / x_n above x_n (a constant relative correction, no extrapolated slope).

g is written as s_0 E + sum_k c_k max(E - x_k, 0) (:class:`EnergyCorrection`), plain torch ops
that the ONNX export traces as they are, and is applied in
:class:`~xecreco.models.regressor.reconstructor.OutputsToPhysical`, the one outputs-to-physical
step of ``predict`` and of the ONNX graph; ``energy_err`` is scaled by g'(E).

The calibration is stored in the checkpoint under :data:`PAYLOAD_KEY` as a plain dict
(:meth:`EnergyCalibration.to_dict`); ``xecreco calibrate -r CHECKPOINT SCAN.root -o OUT.pt``
fits it (:func:`calibrate_checkpoint`) on the checkpoint's *uncalibrated* outputs and writes a
copy of the checkpoint that carries it (any calibration already there is replaced).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xecreco.errors import UserError

__all__ = [
    "FORMAT",
    "PAYLOAD_KEY",
    "MIN_LINE_EVENTS",
    "EnergyCalibration",
    "EnergyCorrection",
    "fit_energy_calibration",
    "calibration_from_payload",
    "calibrate_checkpoint",
]

FORMAT = "xecreco-energy-calibration"
FORMAT_VERSION = 1
#: the checkpoint payload key that holds the calibration dict.
PAYLOAD_KEY = "energy_calibration"
#: fewest events a line needs for its median (statistical error about 1.25 sigma / sqrt(n)).
MIN_LINE_EVENTS = 200


@dataclass(frozen=True)
class EnergyCalibration:
    """The knots of the correction g (see the module docstring).

    Attributes:
        reco_gev: knot positions: median reconstructed energy at each line, GeV, increasing.
        true_gev: knot values: the lines' true energies, GeV, increasing.
        info: provenance, JSON-ready (lines in MeV, events per line, the command that fitted it).
    """

    reco_gev: tuple
    true_gev: tuple
    info: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        x = np.asarray(self.reco_gev, dtype=np.float64)
        y = np.asarray(self.true_gev, dtype=np.float64)
        if x.ndim != 1 or x.size < 2 or x.shape != y.shape:
            raise ValueError("an energy calibration needs >= 2 knots with as many values")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and x[0] > 0 and y[0] > 0):
            raise ValueError("energy calibration knots must be finite and positive")
        if np.any(np.diff(x) <= 0) or np.any(np.diff(y) <= 0):
            raise ValueError("energy calibration knots must increase (the correction is "
                             "monotone)")

    def slopes(self) -> np.ndarray:
        """Slopes of g (dimensionless): below the first knot, between knots, above the last."""
        x = np.asarray(self.reco_gev, dtype=np.float64)
        y = np.asarray(self.true_gev, dtype=np.float64)
        return np.concatenate([[y[0] / x[0]], np.diff(y) / np.diff(x), [y[-1] / x[-1]]])

    def hinges(self) -> tuple[float, list[float], list[float]]:
        """(s_0, knots x_k, slope changes c_k) of g(E) = s_0 E + sum_k c_k max(E - x_k, 0)."""
        s = self.slopes()
        return (float(s[0]), [float(v) for v in self.reco_gev],
                [float(s[k + 1] - s[k]) for k in range(len(self.reco_gev))])

    def apply(self, energy_gev) -> np.ndarray:
        """g(E) in GeV for reconstructed energies in GeV (numpy, float64)."""
        e = np.asarray(energy_gev, dtype=np.float64)
        slope0, knots, changes = self.hinges()
        out = slope0 * e
        for knot, change in zip(knots, changes):
            out = out + change * np.maximum(e - knot, 0.0)
        return out

    def to_dict(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "reco_gev": [float(v) for v in self.reco_gev],
                "true_gev": [float(v) for v in self.true_gev], "info": dict(self.info)}

    @classmethod
    def from_dict(cls, data, origin: str = "energy calibration") -> "EnergyCalibration":
        """From :meth:`to_dict`; UserError naming ``origin`` when it is not a valid one."""
        check_stored_format(data, key=PAYLOAD_KEY, fmt=FORMAT, version=FORMAT_VERSION,
                            what="energy calibration", origin=origin)
        try:
            return cls(tuple(float(v) for v in data["reco_gev"]),
                       tuple(float(v) for v in data["true_gev"]), dict(data.get("info") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{origin}: bad energy calibration ({exc}); refit it with "
                            "`xecreco calibrate -r`") from None


def check_stored_format(data, *, key: str, fmt: str, version: int, what: str,
                        origin: str) -> None:
    """UserError (one line, naming ``origin``) unless ``data``, the checkpoint's ``key`` entry,
    is a dict of format ``fmt`` at a version this xecreco reads (<= ``version``); ``what`` names
    it in the message. Shared by the stored fits of ``xecreco calibrate -r`` (this energy
    calibration and :mod:`~xecreco.models.regressor.timerefit`'s time combination)."""
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise UserError(f"{origin}: '{key}' is not an xecreco {what} (no format '{fmt}'); "
                        "refit it with `xecreco calibrate -r`")
    if int(data.get("format_version", 0)) > version:
        raise UserError(f"{origin}: {what} format version {data.get('format_version')} is "
                        f"newer than this xecreco reads ({version}); upgrade xecreco")


class EnergyCorrection(torch.nn.Module):
    """g and g' of an :class:`EnergyCalibration` in torch (constants baked in, any dtype)."""

    def __init__(self, calibration: EnergyCalibration):
        super().__init__()
        self.slope0, self.knots, self.changes = calibration.hinges()

    def forward(self, energy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(g(E), g'(E)) for reconstructed energies E in GeV."""
        value = energy * self.slope0
        derivative = torch.full_like(energy, self.slope0)
        for knot, change in zip(self.knots, self.changes):
            above = energy - knot
            value = value + change * torch.relu(above)
            derivative = derivative + change * (above > 0).to(energy.dtype)
        return value, derivative


def fit_energy_calibration(reco_gev, true_gev, lines_gev, *,
                           min_events: int = MIN_LINE_EVENTS, info: dict | None = None
                           ) -> EnergyCalibration:
    """Knots from events of known lines: the median reconstructed energy of each line.

    Args:
        reco_gev, true_gev: (N,) reconstructed and true energies, GeV (usable events only).
        lines_gev: the sample's true energies, GeV, ascending; every event must be on one.
        min_events: fewest events per line.
        info: provenance stored with the calibration.
    Raises:
        UserError: a line with too few events, or medians that do not increase with energy
            (no monotone correction maps them onto the lines).
    """
    reco = np.asarray(reco_gev, dtype=np.float64)
    true = np.asarray(true_gev, dtype=np.float64)
    lines = np.asarray(lines_gev, dtype=np.float64)
    nearest = np.argmin(np.abs(true[:, None] - lines[None, :]), axis=1)
    medians, counts = [], []
    for i, line in enumerate(lines):
        sel = reco[nearest == i]
        if sel.size < min_events:
            raise UserError(f"the {1000 * line:g} MeV line has {sel.size} usable events; an "
                            f"energy calibration needs >= {min_events} per line: simulate more")
        medians.append(float(np.median(sel)))
        counts.append(int(sel.size))
    if np.any(np.diff(medians) <= 0):
        raise UserError("the median reconstructed energy does not increase with the true "
                        f"energy ({', '.join(f'{1000 * m:.4g}' for m in medians)} MeV at "
                        f"{', '.join(f'{1000 * v:g}' for v in lines)} MeV); no monotone "
                        "correction fits this model")
    meta = {"lines_MeV": [float(1000 * v) for v in lines], "events_per_line": counts,
            "response_before": [float(m / v) for m, v in zip(medians, lines)], **(info or {})}
    return EnergyCalibration(tuple(medians), tuple(float(v) for v in lines), meta)


def calibration_from_payload(payload: dict, origin) -> EnergyCalibration | None:
    """The calibration stored in a checkpoint payload (None when it has none)."""
    data = payload.get(PAYLOAD_KEY)
    return None if data is None else EnergyCalibration.from_dict(data, str(origin))


def calibrate_checkpoint(checkpoint, inputs, output, *, tree: str = "tree",
                         branches: dict | None = None, step_events: int = 1000,
                         min_events: int = MIN_LINE_EVENTS, min_depth_cm: float = 0.0,
                         progress: bool = False, source: str = "",
                         time_combination: bool = True):
    """Fit the energy calibration of ``checkpoint`` on scan files and write a calibrated copy.

    With ``time_combination`` (and a model with time and u, v, w heads, and ``timeTruth`` in the
    scan) the sensor-time refit is fitted on the same events as well
    (:func:`~xecreco.models.regressor.timerefit.fit_time_combination`, on all depths: the time
    is quoted for all events) and stored under its own key; the refit's tables are those of the
    classical calibration ``classical`` uses. Returns ``(energy calibration, time combination
    or None)``.

    The checkpoint's uncalibrated energies are predicted on ``inputs`` (simulated scan: discrete
    true energies, see :func:`~xecreco.validation.studies.scan.scan_lines`); events with status
    0, a finite energy and no simulated pile-up enter, and with ``min_depth_cm`` > 0 only those
    whose true depth (``uvwTruth`` w, cm) is at least that (2 cm: the MEG deep class, on which
    energy resolutions are quoted; the response depends on depth, so the median is then 1 for
    those events rather than for all). ``output`` (never one of the inputs) is written
    atomically with the calibration under :data:`PAYLOAD_KEY`.

    Raises:
        UserError: not a regressor checkpoint, no energy head, inputs without energyTruth (or
            uvwTruth with ``min_depth_cm``) or not a scan, too few events per line, or a
            non-monotone response.
    """
    import tempfile
    from dataclasses import replace

    import uproot

    from xecreco.io.paths import check_output_file
    from xecreco.io.schema import FILL_THRESHOLD
    from xecreco.models.classical.reconstructor import ClassicalReconstructor
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.models.regressor.reconstructor import (
        CheckpointReconstructor,
        check_payload,
        load_member,
        load_payload,
    )
    from xecreco.models.regressor.timerefit import PAYLOAD_KEY as TIME_KEY
    from xecreco.models.regressor.timerefit import TimeCombination, fit_time_combination
    from xecreco.train.checkpoint import save_checkpoint
    from xecreco.validation.studies.scan import scan_lines

    inputs = [str(p) for p in inputs]
    check_output_file(output, [checkpoint, *inputs])
    payload = load_payload(checkpoint)
    check_payload(payload, checkpoint)
    member = load_member(checkpoint)
    if "energy" not in member.model.head_names:
        raise UserError(f"{checkpoint}: the model has no energy head; nothing to calibrate")
    member.energy_calibration = None  # fit on the uncalibrated response
    member.time_combination = None  # and the network's own time
    reconstructors = [CheckpointReconstructor([member], "uncalibrated")]
    heads = set(member.model.head_names)
    refit_base = None
    if time_combination and {"time", "u", "v", "w"} <= heads:
        refit_base = TimeCombination.from_classical(ClassicalReconstructor().calibration,
                                                    (0.05,), (0.0,), (0.0,))
        sensors_only = replace(member, time_combination=refit_base)
        reconstructors.append(CheckpointReconstructor([sensors_only], "sensors"))
    with tempfile.TemporaryDirectory(prefix="xecreco-calibrate-") as tmp:
        pred = Path(tmp) / "predictions.root"
        predict_files(inputs, pred, reconstructors, tree=tree, branches=branches,
                      progress=progress, step_events=step_events)
        with uproot.open(pred) as handle:
            t = handle["reco"]
            if "energyTruth" not in t.keys():
                raise UserError(f"{inputs[0]}: no energyTruth branch; the energy calibration "
                                "needs a simulated scan (xecreco simulate --source E1,E2,...)")
            names = ["uncalibrated_energy", "uncalibrated_status", "energyTruth"]
            names += ["nPileup"] if "nPileup" in t.keys() else []
            if refit_base is not None and "timeTruth" not in t.keys():
                refit_base = None  # no truth to fit the time combination on
            if refit_base is not None:
                names += ["uncalibrated_time", "sensors_time", "sensors_status", "timeTruth"]
            if min_depth_cm > 0:
                if "uvwTruth" not in t.keys():
                    raise UserError(f"{inputs[0]}: no uvwTruth branch; --min-depth selects "
                                    "events by their true depth: drop it or use simulated input")
                names.append("uvwTruth")
            arrays = t.arrays(names, library="np")
    ok = (arrays["uncalibrated_status"] == 0) & (
        np.abs(arrays["uncalibrated_energy"]) < FILL_THRESHOLD) & (arrays["energyTruth"] > 0)
    if "nPileup" in arrays:
        ok &= arrays["nPileup"] == 0
    clean = ok.copy()
    if min_depth_cm > 0:
        ok &= arrays["uvwTruth"][:, 2] >= min_depth_cm
    true = arrays["energyTruth"][ok].astype(np.float64)
    lines = scan_lines(1000.0 * true, min_events=1)
    if lines is None:
        raise UserError(f"{inputs[0]}: the true energies are not a scan of discrete lines (2 "
                        "to 20 energies); simulate one with xecreco simulate --source "
                        "10,17.6,25,40,52.83,70,83,100")
    calibration = fit_energy_calibration(
        arrays["uncalibrated_energy"][ok], true, lines / 1000.0, min_events=min_events,
        info={"source": source, "checkpoint": Path(str(checkpoint)).name,
              "min_depth_cm": float(min_depth_cm),
              "inputs": [Path(p).name for p in inputs]})
    combination = None
    if refit_base is not None:
        timed = clean & (arrays["sensors_status"] == 0) & (
            np.abs(arrays["uncalibrated_time"]) < FILL_THRESHOLD) & (
            np.abs(arrays["sensors_time"]) < FILL_THRESHOLD)
        combination = fit_time_combination(
            refit_base, arrays["uncalibrated_time"][timed], arrays["sensors_time"][timed],
            arrays["timeTruth"][timed],
            calibration.apply(arrays["uncalibrated_energy"][timed]),
            arrays["energyTruth"][timed], lines / 1000.0,
            info={"source": source, "checkpoint": Path(str(checkpoint)).name,
                  "inputs": [Path(p).name for p in inputs]})
    payload = dict(payload)
    payload[PAYLOAD_KEY] = calibration.to_dict()
    payload.pop(TIME_KEY, None)  # refitted here or left out: never an old one on a new scale
    if combination is not None:
        payload[TIME_KEY] = combination.to_dict()
    save_checkpoint(output, payload)
    return calibration, combination
