"""ONNX export of a neural inpainter checkpoint: raw sensor values and a dead mask in, repaired
raw sensor values out.

The exported graph (:class:`InpainterGraph`) does in torch ops what ``xecreco inpaint`` does with
:class:`~xecreco.models.inpaint.neural.NeuralInpainter` and writes to its output file:

inputs
    ``npho`` (N, 4760) float32, photons; ``sensor_time`` (N, 4760) float32, seconds; invalid
    values as in the files (NaN, +-inf, ``|x| >= 9e9``). ``dead`` (N, 4760) float32, 1 (any value
    > 0.5) = a sensor to repair on top of the invalid ones (like ``--dead`` / ``--dead-branch``).
inside
    the reader's validity masks (time valid only from ``time_npho_threshold`` photons), the dead
    mask, the checkpoint's :class:`~xecreco.normalization.NormalizationSpec` features and event
    time reference (:class:`xecreco.models.export.onnx.RawInputs`), the masked-sensor network with no
    extra hidden sensors, and the inverse transforms (npho photons, time s).
outputs
    ``npho_repaired`` (N, 4760) float32 photons: the input at valid sensors, the prediction at
    the repaired ones. ``sensor_time_repaired`` (N, 4760) float32 seconds: the input's valid
    times, the prediction at repaired sensors whose predicted npho reaches ``min_time_npho``
    photons, the MEG sentinel 1e10 everywhere else (like the files written by ``xecreco
    inpaint``). ``inpainted`` (N, 4760) bool: the repaired sensors (invalid or dead).

The ``local`` preset evaluates its networks at the unknown sensors only (``nonzero``, a
data-dependent shape); the export switches it to
:meth:`~xecreco.models.masked.local.LocalInpaintBody.forward_static`, which gives the same values
at those sensors. The encoder presets (``cpu``, ...) export as they are (their cell -> sensor
averaging is a gather, which ONNX represents exactly). The file is written
under a temporary name and renamed once onnxruntime matches the torch ``NeuralInpainter`` on
simulated-like events with a dead pattern (:func:`check_inpainter_onnx`).
"""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from xecreco._version import __version__
from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS
from xecreco.geometry.constants import INNER_N_COLS
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.io.schema import SENTINEL, BranchNames
from xecreco.models.export.onnx import (
    DEFAULT_OPSET,
    RawInputs,
    batch_from_raw,
    disagreement,
    save_checked,
    sim_like_inputs,
)
from xecreco.models.inpaint.neural import NeuralInpainter, inpainter_from_checkpoint
from xecreco.models.pipelines.inpaint import apply_dead_mask, output_arrays
from xecreco.normalization import NormalizationSpec, scaled_npho, valid_values

__all__ = ["INPAINTER_INPUTS", "INPAINTER_OUTPUTS", "InpainterGraph",
           "check_inpainter_onnx", "export_inpainter_onnx", "sim_like_dead"]

#: Input names of the exported inpainter graph.
INPAINTER_INPUTS = ("npho", "sensor_time", "dead")
#: Output names of the exported inpainter graph.
INPAINTER_OUTPUTS = ("npho_repaired", "sensor_time_repaired", "inpainted")
_UNITS = {
    "npho": "photons (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
    "sensor_time": "seconds (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
    "dead": "(N, 4760) float32; > 0.5 = sensor to repair (invalid sensors are repaired too)",
    "npho_repaired": "photons (N, 4760) float32; input at valid sensors, prediction at repaired",
    "sensor_time_repaired": "seconds (N, 4760) float32; 1e10 where no valid time",
    "inpainted": "(N, 4760) bool; True = repaired sensor",
}


class InpainterGraph(RawInputs):
    """Raw (npho, time, dead) -> repaired raw (npho, time) and the repaired mask.

    Args:
        model: a :class:`~xecreco.models.masked.network.MaskedSensorModel` (copied; a ``local`` body is
            switched to its static query path).
        spec: the normalisation it was trained with.
        min_time_npho: repaired sensors below this many predicted photons get no time (1e10).
        time_npho_threshold: minimum npho (photons) for an input time to be valid (reader).
    """

    def __init__(self, model: torch.nn.Module, spec: NormalizationSpec,
                 min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD,
                 time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD):
        super().__init__(spec, time_npho_threshold)
        self.model = copy.deepcopy(model).eval()
        if self.model.local is not None:
            self.model.local.static_queries = True
        self.min_time_npho = float(min_time_npho)
        self.npho_feature_min = float(spec.npho_forward(np.array([spec.npho_min]))[0])

    def forward(self, npho: torch.Tensor, time: torch.Tensor, dead: torch.Tensor):
        """``(npho_repaired, sensor_time_repaired, inpainted)``, see the module docstring."""
        features, reference, valid_npho, valid_time = self.inputs_to_features(
            npho, time, dead > 0.5)
        flags = torch.stack([valid_npho, valid_time], dim=2).to(features.dtype)
        x = torch.cat([features, flags], dim=2)
        pred = self.model(x, mask=torch.zeros_like(valid_npho))["sensors"]
        spec = self.spec
        y = torch.clamp(pred[..., 0], min=self.npho_feature_min)
        npho_pred = torch.clamp(scaled_npho(y, spec.npho_scheme) * spec.npho_scale,
                                min=spec.npho_min)
        time_ns = pred[..., 1] * spec.time_scale_ns + spec.time_shift_ns + reference[:, None]
        fill = ~valid_npho
        npho_out = torch.where(fill, npho_pred, npho)
        time_valid = valid_time | (fill & (npho_pred >= self.min_time_npho))
        time_out = torch.where(fill, time_ns * 1.0e-9, time)
        time_out = torch.where(time_valid, time_out, torch.full_like(time_out, SENTINEL))
        return npho_out, time_out, fill


def sim_like_dead(n: int, seed: int = 0) -> np.ndarray:
    """(n, 4760) float32 dead mask (1 = dead) for export checks: ~2 % scattered sensors, a
    4 x 4 block of the inner face in every second event, and no dead sensor in event 1."""
    rng = np.random.default_rng(seed + 13)
    dead = rng.random((n, N_SENSORS)) < 0.02
    for event in range(0, n, 2):
        row, col = rng.integers(0, 89), rng.integers(0, 40)
        block = (INNER_N_COLS * (row + np.arange(4))[:, None] + col + np.arange(4)[None]).ravel()
        dead[event, block] = True
    if n > 1:
        dead[1] = False
    return dead.astype(np.float32)


def check_inpainter_onnx(model_bytes: bytes, inpainter: NeuralInpainter, npho: np.ndarray,
                         time: np.ndarray, dead: np.ndarray,
                         time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD) -> dict:
    """Run the graph in onnxruntime and ``inpainter`` (torch) the way ``xecreco inpaint`` does on
    the same raw inputs; compare what each would write.

    npho (photons) and times (ns) must agree within the float32 tolerance of
    :func:`xecreco.models.export.onnx.disagreement` (the one used for every export), the repaired
    masks exactly, and the positions of the time sentinel everywhere but at repaired
    sensors whose predicted npho is within 1e-3 (relative) of ``min_time_npho``. UserError when
    they do not. Returns ``{"max_rel_diff", "tolerance_ratio", "npho_max_abs_diff", "time_max_abs_diff_ns",
    "events", "repaired"}``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, dict(zip(INPAINTER_INPUTS, (npho, time, dead))))
    batch = apply_dead_mask(batch_from_raw(npho, time, time_npho_threshold), dead > 0.5)
    names = BranchNames()
    want = output_arrays(batch, inpainter.inpaint(batch), names, [], {})
    want_npho = want[names.npho].astype(np.float64)
    want_time = want[names.time].astype(np.float64)
    got_npho, got_time = got[0].astype(np.float64), got[1].astype(np.float64)
    if not np.array_equal(got[2], want["inpainted"]):
        raise UserError("onnxruntime and torch repair different sensors on the check events; "
                        "the ONNX file was not written (report this as an xecreco bug)")
    npho_diff = np.abs(got_npho - want_npho)
    worst = disagreement(got_npho, want_npho, valid=np.ones(want_npho.shape, bool))
    rel = float((npho_diff / (np.abs(want_npho) + 1.0)).max())
    got_set, want_set = valid_values(got_time), valid_values(want_time)
    borderline = np.abs(want_npho / inpainter.min_time_npho - 1.0) < 1e-3
    if np.any((got_set != want_set) & ~(borderline & want["inpainted"])):
        raise UserError("onnxruntime and torch give times to different sensors on the check "
                        "events; the ONNX file was not written (report this as an xecreco bug)")
    both = got_set & want_set
    time_diff_ns = np.abs(got_time - want_time)[both] * 1e9
    time_max = float(time_diff_ns.max()) if time_diff_ns.size else 0.0
    if time_diff_ns.size:
        worst = max(worst, disagreement(got_time[both] * 1e9, want_time[both] * 1e9,
                                        valid=np.ones(int(both.sum()), bool)))
        rel = max(rel, float((time_diff_ns / (np.abs(want_time[both]) * 1e9 + 1.0)).max()))
    if worst > 1.0:
        raise UserError(f"onnxruntime and torch disagree by {worst:.3g} x the float32 tolerance "
                        "on the check events; the ONNX file was not written")
    return {"max_rel_diff": rel, "tolerance_ratio": worst, "npho_max_abs_diff": float(npho_diff.max()),
            "time_max_abs_diff_ns": time_max, "events": len(npho),
            "repaired": int(want["inpainted"].sum())}


def export_inpainter_onnx(checkpoint: str | Path, output: str | Path, *,
                          opset: int = DEFAULT_OPSET, check_events: int = 16,
                          seed: int = 0) -> dict:
    """Export an ``inpainter`` (or ``mae``) checkpoint to ONNX at ``output``, checked against
    the torch :class:`NeuralInpainter` in onnxruntime before the file is renamed into place.

    Returns ``{"output", "outputs", "max_rel_diff", ...}`` (see :func:`check_inpainter_onnx`);
    UserError for a checkpoint that is not an inpainter or when the check fails.
    """
    import onnx

    output = Path(output)
    inpainter = inpainter_from_checkpoint(checkpoint)
    wrapper = InpainterGraph(inpainter.model, inpainter.spec, inpainter.min_time_npho)
    npho, time = sim_like_inputs(max(int(check_events), 2), seed)
    dead = sim_like_dead(len(npho), seed)
    example = tuple(torch.from_numpy(a[:2]) for a in (npho, time, dead))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, example, buffer, dynamo=False, opset_version=int(opset),
                input_names=list(INPAINTER_INPUTS), output_names=list(INPAINTER_OUTPUTS),
                dynamic_axes={k: {0: "events"} for k in INPAINTER_INPUTS + INPAINTER_OUTPUTS},
            )
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        preset = inpainter.model.config.get("preset")
        raise UserError(f"checkpoint '{checkpoint}' (preset '{preset}') could not be traced to "
                        f"ONNX ({str(exc).splitlines()[0][:160]}); the 'local' and 'cpu' "
                        "inpainter presets export") from None
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {
        "xecreco_version": __version__,
        "task": "inpainter",
        "source_checkpoint": Path(checkpoint).name,
        "model_config": json.dumps(inpainter.model.config, sort_keys=True),
        "normalization": json.dumps(inpainter.spec.to_dict(), sort_keys=True),
        "inputs": json.dumps({k: _UNITS[k] for k in INPAINTER_INPUTS}),
        "outputs": json.dumps({k: _UNITS[k] for k in INPAINTER_OUTPUTS}),
        "time_npho_threshold": str(wrapper.time_npho_threshold),
        "min_time_npho": str(wrapper.min_time_npho),
        "sentinel": str(SENTINEL),
    }
    check = save_checked(
        proto, meta,
        lambda data: check_inpainter_onnx(data, inpainter, npho, time, dead,
                                          time_npho_threshold=wrapper.time_npho_threshold),
        output)
    return {"output": str(output), "outputs": list(INPAINTER_OUTPUTS), **check}
