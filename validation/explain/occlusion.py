"""Per-face occlusion: the resolution of each headline output when one detector face is masked.

A masked face is what a detector with that face dead looks like to every reconstruction: its
sensors get ``valid_npho = valid_time = False`` in the :class:`~xecreco.io.batch.EventBatch`
(the reader's one validity convention). The neural regressor then sees the normalisation's
sentinel features there (:meth:`xecreco.normalization.NormalizationSpec.features`, 0 by default,
the same as a dead sensor), and the classical reconstruction ignores those sensors.

Residuals (reconstructed minus true, the units of the validation report): energy relative, in %;
u, v, w in mm; time in ps. The resolution is sigma68 (:func:`xecreco.validation.estimators.sigma68`)
over the events with status 0 in that run. The ratio masked / unmasked has a paired bootstrap
error (the same resampled events for both), so it resolves changes far below the error of either
width alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xecreco.geometry import Face, face_ids
from xecreco.models.nn.encoder import FACE_NAMES
from xecreco.validation.estimators import sigma68

__all__ = ["HEADLINE_OUTPUTS", "OUTPUT_UNITS", "mask_face", "residuals", "occlusion"]

#: Headline outputs of the explain page, in display order.
HEADLINE_OUTPUTS = ("energy", "u", "v", "w", "time")
#: Units of the residuals and resolutions of each output.
OUTPUT_UNITS = {"energy": "%", "u": "mm", "v": "mm", "w": "mm", "time": "ps"}


def mask_face(batch, face: Face):
    """A copy of ``batch`` with every sensor of ``face`` invalid (npho and time), as if dead."""
    ids = face_ids(face)
    valid_npho = batch.valid_npho.copy()
    valid_time = batch.valid_time.copy()
    valid_npho[:, ids] = False
    valid_time[:, ids] = False
    npho = batch.npho.copy()
    time = batch.time.copy()
    npho[:, ids] = 0.0  # the reader's value at invalid sensors
    time[:, ids] = 0.0
    return batch.replace(npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time)


def residuals(outputs: dict, truth: dict) -> dict[str, np.ndarray]:
    """Residuals (float64, NaN where the status is not 0 or the output is missing) of the
    headline outputs: energy (%), u, v, w (mm), time (ps)."""
    ok = np.asarray(outputs["status"]) == 0
    energy_true = np.asarray(truth["energyTruth"], dtype=np.float64)
    uvw_true = np.asarray(truth["uvwTruth"], dtype=np.float64)
    out = {}
    for q in HEADLINE_OUTPUTS:
        if q not in outputs:
            continue
        reco = np.asarray(outputs[q], dtype=np.float64)
        if q == "energy":
            res = (reco - energy_true) / energy_true * 100.0
        elif q == "time":
            res = (reco - np.asarray(truth["timeTruth"], dtype=np.float64)) * 1000.0
        else:
            res = (reco - uvw_true[:, "uvw".index(q)]) * 10.0
        out[q] = np.where(ok, res, np.nan)
    return out


def _paired_ratio_error(base: np.ndarray, masked: np.ndarray, replicas: int,
                        seed: int) -> float | None:
    """Bootstrap error of sigma68(masked) / sigma68(base), resampling the events together."""
    rng = np.random.default_rng(seed)
    n = len(base)
    ratios = []
    for _ in range(replicas):
        idx = rng.integers(0, n, n)
        b = sigma68(base[idx], replicas=0).value
        m = sigma68(masked[idx], replicas=0).value
        if b and m is not None:
            ratios.append(m / b)
    return float(np.std(ratios, ddof=1)) if len(ratios) >= 2 else None


@dataclass
class OcclusionResult:
    """Resolutions with each face masked.

    Attributes:
        outputs: the headline outputs studied (those the reconstruction produces).
        baseline: output -> {"sigma68", "error", "n"} without masking (units of OUTPUT_UNITS).
        faces: face name -> output -> {"sigma68", "error", "n", "ratio", "ratio_error",
            "efficiency"} with that face masked (``efficiency``: fraction of events with status 0).
        baseline_efficiency: fraction of events with status 0 without masking.
        changed: face name -> largest |output change| over events and outputs (file units), a
            check that masking did or did not reach the reconstruction.
    """

    outputs: tuple
    baseline: dict = field(default_factory=dict)
    faces: dict = field(default_factory=dict)
    baseline_efficiency: float = 0.0
    changed: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"outputs": list(self.outputs), "units": {q: OUTPUT_UNITS[q] for q in self.outputs},
                "baseline": self.baseline, "baseline_efficiency": self.baseline_efficiency,
                "faces": self.faces, "max_abs_output_change": self.changed}


def _width(res: np.ndarray) -> dict:
    est = sigma68(res, replicas=20)
    return {"sigma68": est.value, "error": est.error, "n": est.n}


def occlusion(reconstructor, batch, *, replicas: int = 20, seed: int = 0,
              progress=None) -> OcclusionResult:
    """Reconstruct ``batch`` unmasked and with each face masked (see the module docstring).

    Args:
        reconstructor: any :class:`~xecreco.models.base.Reconstructor`.
        batch: events with truth ``energyTruth``, ``uvwTruth`` and ``timeTruth``.
        replicas: bootstrap replicas of the ratio errors.
        seed: bootstrap seed.
        progress: optional callable ``progress(face_name)`` called before each masked run.
    """
    base_out = reconstructor.reconstruct(batch)
    base_res = residuals(base_out, batch.truth)
    outputs = tuple(q for q in HEADLINE_OUTPUTS if q in base_res)
    result = OcclusionResult(outputs)
    result.baseline = {q: _width(base_res[q]) for q in outputs}
    result.baseline_efficiency = float(np.mean(np.asarray(base_out["status"]) == 0))
    for face, name in FACE_NAMES.items():
        if progress is not None:
            progress(name)
        out = reconstructor.reconstruct(mask_face(batch, face))
        res = residuals(out, batch.truth)
        efficiency = float(np.mean(np.asarray(out["status"]) == 0))
        per_output = {}
        for q in outputs:
            entry = _width(res[q])
            base = result.baseline[q]["sigma68"]
            entry["ratio"] = (entry["sigma68"] / base if base and entry["sigma68"] is not None
                              else None)
            entry["ratio_error"] = _paired_ratio_error(base_res[q], res[q], replicas, seed)
            entry["efficiency"] = efficiency
            per_output[q] = entry
        result.faces[name] = per_output
        result.changed[name] = float(max(
            np.max(np.abs(np.asarray(out[q], np.float64) - np.asarray(base_out[q], np.float64)))
            for q in outputs))
    return result
