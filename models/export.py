"""ONNX export of a regressor checkpoint: raw sensor values in, physical quantities out.

The exported graph wraps the network in :class:`PhysicalModel`, which does what
:class:`xecreco.models.checkpoint_reco.CheckpointReconstructor` does around it, in torch ops:

inputs
    ``npho`` (N, 4760) float32, photons; ``sensor_time`` (N, 4760) float32, seconds (the file's
    ``time`` branch; the input is not called ``time`` because that is an output name). Invalid
    values use the file convention: NaN, +-inf or ``|value| >= 9e9`` (MEG II writes 1e10).
    Models whose outputs depend on the vertex (:func:`~xecreco.models.checkpoint_reco.
    needs_vertex`: the network uses it, or it has u, v, w and a time or direction head) take a
    third input ``vertex`` (N, 3) float32, cm (``xyzVTX``; a row with NaN = unknown).
inside
    validity masks as the reader builds them (``valid_npho``: ``|npho| < 9e9``; ``valid_time``:
    also ``|time| < 9e9`` and ``npho >= time_npho_threshold``), the per-event time reference and
    features of the checkpoint's :class:`~xecreco.normalization.NormalizationSpec`, the network,
    then :class:`~xecreco.models.checkpoint_reco.OutputsToPhysical`, the same torch code that
    ``xecreco predict -r CKPT`` runs: destandardisation, the time reference added back, the
    flight-time correction to a known vertex (networks that did not see it), (u, v, w) ->
    (x, y, z), and (theta, phi) from the vertex to (x, y, z) where the vertex is known (from the
    direction head elsewhere).
outputs
    ``energy`` GeV, ``u v w x y z`` cm, ``time`` ns, ``theta phi`` deg, ``npileup`` (enabled heads
    only), ``<q>_err`` with uncertainty heads, and ``status`` int32 (0 ok, 1 no valid sensor,
    4 no valid time; float outputs are -1e10 where they cannot be computed).

The torch input formulas mirror ``NormalizationSpec`` (the single definition); :func:`check_onnx`
compares the features with it and every output, angles included, with the checkpoint
reconstructor on check events with a vertex, within the float32 tolerance of
:func:`disagreement` (shared with the inpainter export), so a drift fails loudly. Metadata (model config,
normalisation, target scaling, output names and units, xecreco version) is stored in the ONNX
``metadata_props``.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xecreco._version import __version__
from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS, R_INNER, design_geometry
from xecreco.io.batch import EventBatch
from xecreco.io.reader import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.io.schema import INVALID_THRESHOLD, SENTINEL
from xecreco.models.base import FILL_VALUE, OUTPUT_UNITS, Status
from xecreco.models.checkpoint_reco import (
    CheckpointReconstructor,
    Member,
    OutputsToPhysical,
    load_member,
    needs_vertex,
    physical_outputs,
)
from xecreco.normalization import NormalizationSpec, TargetScaling

#: Input names of the exported graph: raw npho (photons) and sensor time (s); vertex-aware
#: models add :data:`VERTEX_INPUT` (see :func:`input_names`).
INPUT_NAMES = ("npho", "sensor_time")
VERTEX_INPUT = "vertex"
#: ONNX opset used by default.
DEFAULT_OPSET = 17
# Added to the times (ns) of sensors that may not serve as the time reference.
_FAR_TIME_NS = 1.0e30
_FAR_LIMIT_NS = 1.0e29
#: Agreement of an exported graph with xecreco's own result, per output (see
#: :func:`disagreement`): ``|got - want| <= AGREEMENT_ULPS * eps32 * max|want| + AGREEMENT_RTOL
#: * |want|``, i.e. float32 rounding at the output's scale (accumulated over the network's
#: depth) plus a relative part for values computed through exp (npho from a log feature).
AGREEMENT_ULPS = 64.0
AGREEMENT_RTOL = 1.0e-5
_EPS32 = float(np.finfo(np.float32).eps)


class RawInputs(nn.Module):
    """Raw file values -> validity masks and network features, in torch ops (export graphs).

    Shared by the regressor's :class:`PhysicalModel` and the inpainter's export wrapper
    (:mod:`xecreco.models.export_inpainter`); mirrors the reader and :class:`NormalizationSpec`.

    Args:
        spec: input normalisation.
        time_npho_threshold: minimum npho (photons) for a sensor time to be valid (reader default).
    """

    def __init__(self, spec: NormalizationSpec,
                 time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD):
        super().__init__()
        self.spec = spec
        self.time_npho_threshold = float(time_npho_threshold)

    # ------------------------------------------------------------------ normalisation
    def _npho_feature(self, npho: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        x = torch.clamp(npho, min=spec.npho_min) * (1.0 / spec.npho_scale)
        if spec.npho_scheme == "log1p":
            return torch.log(x + 1.0)
        if spec.npho_scheme == "sqrt":
            return torch.sqrt(x)
        if spec.npho_scheme == "anscombe":
            return 2.0 * (torch.sqrt(x + 3.0 / 8.0) - math.sqrt(3.0 / 8.0))
        return x

    def _mean_earliest(self, time_ns: torch.Tensor, usable: torch.Tensor):
        """Mean of the k earliest usable times per event (ns) and whether any was usable."""
        k = min(int(self.spec.reference_k), N_SENSORS)
        masked = torch.where(usable, time_ns, torch.full_like(time_ns, _FAR_TIME_NS))
        earliest = torch.topk(masked, k, dim=1, largest=False).values
        ok = earliest < _FAR_LIMIT_NS
        count = ok.to(time_ns.dtype).sum(dim=1)
        total = torch.where(ok, earliest, torch.zeros_like(earliest)).sum(dim=1)
        return total / torch.clamp(count, min=1.0), count > 0

    def inputs_to_features(self, npho: torch.Tensor, time: torch.Tensor,
                           dead: torch.Tensor | None = None):
        """``(features (N, 4760, 2), time_reference_ns (N,), valid_npho, valid_time)``.

        ``dead`` (N, 4760) bool, optional: sensors marked invalid on top of the file's invalid
        values (as :func:`xecreco.models.inpaint_pipeline.apply_dead_mask` does).
        """
        valid_npho = torch.abs(npho) < INVALID_THRESHOLD
        if dead is not None:
            valid_npho = valid_npho & ~dead
        npho = torch.where(valid_npho, npho, torch.zeros_like(npho))
        valid_time = valid_npho & (torch.abs(time) < INVALID_THRESHOLD)
        valid_time = valid_time & (npho >= self.time_npho_threshold)
        time_ns = torch.where(valid_time, time, torch.zeros_like(time)) * 1.0e9
        lit = valid_time & (npho >= self.spec.reference_npho_threshold)
        ref_lit, found_lit = self._mean_earliest(time_ns, lit)
        ref_any, _ = self._mean_earliest(time_ns, valid_time)
        reference = torch.where(found_lit, ref_lit, ref_any)
        spec = self.spec
        npho_f = torch.where(valid_npho, self._npho_feature(npho),
                             torch.full_like(npho, spec.npho_sentinel))
        offset = (reference + spec.time_shift_ns).unsqueeze(1)
        time_f = (time_ns - offset) * (1.0 / spec.time_scale_ns)
        time_f = torch.where(valid_time, time_f, torch.full_like(time_f, spec.time_sentinel))
        return torch.stack([npho_f, time_f], dim=2), reference, valid_npho, valid_time


class PhysicalModel(RawInputs):
    """Raw (npho, time) -> physical outputs around a regressor (see the module docstring).

    Args:
        model: the regressor (its ``head_names`` and ``config["uncertainty"]`` are used).
        spec: input normalisation.
        scaling: target standardisation.
        time_npho_threshold: minimum npho (photons) for a sensor time to be valid (reader default).
    """

    def __init__(self, model: nn.Module, spec: NormalizationSpec, scaling: TargetScaling,
                 time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD):
        super().__init__(spec, time_npho_threshold)
        self.model = model
        self.heads = tuple(model.head_names)
        self.uncertainty = bool(model.config["uncertainty"])
        self.physics = OutputsToPhysical(self.heads, scaling,
                                         bool(getattr(model, "uses_vertex", False)))
        self.output_names = output_names(self.heads, self.uncertainty)
        self.scaling = scaling
        self.scaling_dict = scaling.to_dict()

    # ------------------------------------------------------------------ outputs
    def forward(self, npho: torch.Tensor, time: torch.Tensor,
                vertex: torch.Tensor | None = None):
        """Tuple of outputs in the order of ``self.output_names`` (``vertex`` (N, 3) cm is used
        by vertex-aware models; None = the target centre)."""
        features, reference, valid_npho, valid_time = self.inputs_to_features(npho, time)
        if getattr(self.model, "uses_vertex", False):
            raw = self.model(features, vertex)
        else:
            raw = self.model(features)
        out = self.physics(raw, reference, vertex)
        no_sensor = ~valid_npho.any(dim=1)
        no_time = ~valid_time.any(dim=1)
        fill = torch.full_like(reference, FILL_VALUE)
        results = []
        for name in self.output_names:
            if name == "status":
                status = torch.where(no_time,
                                     torch.full_like(reference, float(Status.NO_VALID_TIME)),
                                     torch.zeros_like(reference))
                status = torch.where(no_sensor,
                                     torch.full_like(reference, float(Status.NO_VALID_SENSORS)),
                                     status)
                results.append(status.to(torch.int32))
                continue
            value = out[name]
            bad = no_sensor | (no_time if name in ("time", "time_err") else no_sensor)
            results.append(torch.where(bad, fill, value))
        return tuple(results)


def input_names(model: nn.Module) -> list[str]:
    """Input names of the exported graph of ``model``: the vertex too when its outputs depend
    on it (:func:`~xecreco.models.checkpoint_reco.needs_vertex`)."""
    return [*INPUT_NAMES, *([VERTEX_INPUT] if needs_vertex(model) else [])]


def sim_like_vertices(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 vertices (cm) on the MEG II target ellipse (27 x 6.6 cm), the last row NaN
    (unknown), for export checks."""
    rng = np.random.default_rng(seed + 7)
    vertex = np.zeros((n, 3), dtype=np.float32)
    vertex[:, 2] = rng.uniform(-13.0, 13.0, n)
    vertex[:, 1] = rng.uniform(-3.0, 3.0, n)
    vertex[-1] = np.nan
    return vertex


def output_names(heads, uncertainty: bool) -> list[str]:
    """Output names of the exported graph for the enabled heads, ``status`` last."""
    names = physical_outputs(heads)
    if uncertainty:
        errs = [q for q in ("energy", "u", "v", "w", "time", "npileup") if q in heads]
        if "direction" in heads:
            errs += ["theta", "phi"]
        names += [q + "_err" for q in errs]
    return names + ["status"]


def sim_like_inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(npho, time) (n, 4760) float32 resembling simulated photons, for export checks.

    Each event is a point source in the xenon (w 0.5-20 cm behind the inner face) whose light
    falls as A cos / d^2 on every sensor facing it (~1.5e5 photons at 50 MeV), with Poisson-like
    noise, light-propagation times at 8.5 cm/ns around a random event time (s), the time sentinel
    1e10 where npho < 50, a few dead sensors (1e10 in both), one NaN, and every fourth event
    dimmer. Not physics: only realistic ranges and the invalid-value conventions.
    """
    rng = np.random.default_rng(seed)
    geometry = design_geometry()
    u = rng.uniform(-20, 20, n)
    v = rng.uniform(-60, 60, n)
    w = rng.uniform(0.5, 20, n)
    r = w + R_INNER
    points = np.stack([-r * np.cos(v / R_INNER), r * np.sin(v / R_INNER), u], axis=1)
    delta = geometry.position[None] - points[:, None]
    dist = np.linalg.norm(delta, axis=-1)
    cos = np.clip(-np.sum(delta * geometry.normal[None], axis=-1) / dist, 0.0, None)
    area = np.where(geometry.is_mppc, 1.39, math.pi * 2.25**2)
    photons = rng.uniform(0.3, 1.0, n)[:, None] * 1.5e6 * area * cos / (4 * math.pi * dist**2)
    photons[::4] *= 0.05
    npho = photons + rng.normal(0.0, 1.0, photons.shape) * np.sqrt(photons + 4.0)
    time = (rng.uniform(-5, 5, n)[:, None] + dist / 8.5 + rng.normal(0, 0.3, dist.shape)) * 1e-9
    time = np.where(npho < 50, SENTINEL, time)
    dead = rng.random(npho.shape) < 0.02
    npho = np.where(dead, SENTINEL, npho).astype(np.float32)
    time = np.where(dead, SENTINEL, time).astype(np.float32)
    npho[0, 5] = np.nan
    return npho, time


def batch_from_raw(npho: np.ndarray, time: np.ndarray,
                    time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD,
                    vertex: np.ndarray | None = None) -> EventBatch:
    """An EventBatch with the reader's validity rules (used to check the export); ``vertex``
    (N, 3) cm, optional."""
    from xecreco.io.reader import ReaderStats, apply_validity

    npho, time = npho.copy(), time.copy()
    valid_npho, valid_time = apply_validity(npho, time, time_npho_threshold, ReaderStats())
    n = len(npho)
    ids = np.arange(n, dtype=np.int64)
    return EventBatch(npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time,
                      run=np.zeros(n, np.int64), event=ids, entry=ids,
                      vertex=None if vertex is None else np.asarray(vertex, np.float32))


def build_physical_model(checkpoint: str | Path) -> PhysicalModel:
    """The export wrapper around a regressor checkpoint (UserError on bad checkpoints)."""
    member = load_member(checkpoint)
    return PhysicalModel(member.model, member.normalization, member.scaling).eval()


def export_onnx(checkpoint: str | Path, output: str | Path, *, opset: int = DEFAULT_OPSET,
                check_events: int = 64, seed: int = 0) -> dict:
    """Export ``checkpoint`` to ONNX at ``output`` and check it against torch with onnxruntime.

    The file is written under a temporary name and renamed once the check passes
    (:func:`check_onnx`). Returns ``{"output", "outputs", "max_abs_diff": {name: float},
    "max_rel_diff", "tolerance_ratio", "events", "events_with_vertex"}``; raises UserError when
    onnxruntime disagrees with ``xecreco predict`` beyond the float32 tolerance.
    """
    import onnx

    output = Path(output)
    wrapper = build_physical_model(checkpoint)
    npho, time = sim_like_inputs(max(int(check_events), 2), seed)
    inputs = [npho, time]
    inputs_names = input_names(wrapper.model)
    if VERTEX_INPUT in inputs_names:
        inputs.append(sim_like_vertices(len(npho), seed))
    example = tuple(torch.from_numpy(x[:2]) for x in inputs)
    names = wrapper.output_names
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, example, buffer, dynamo=False, opset_version=int(opset),
            input_names=inputs_names, output_names=names,
            dynamic_axes={k: {0: "events"} for k in [*inputs_names, *names]},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    payload_meta = {
        "xecreco_version": __version__,
        "source_checkpoint": Path(checkpoint).name,
        "model_config": json.dumps(wrapper.model.config, sort_keys=True),
        "normalization": json.dumps(wrapper.spec.to_dict(), sort_keys=True),
        "target_scaling": json.dumps(wrapper.scaling_dict, sort_keys=True),
        "inputs": json.dumps({k: v for k, v in {
            "npho": "photons (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
            "sensor_time": "seconds (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
            VERTEX_INPUT: "cm (N, 3) float32 photon vertex (xyzVTX); NaN row: unknown",
        }.items() if k in inputs_names}),
        "outputs": json.dumps({k: OUTPUT_UNITS.get(k.removesuffix("_err"), "status code")
                               for k in names}),
        "time_npho_threshold": str(wrapper.time_npho_threshold),
        "fill_value": str(FILL_VALUE),
    }
    check = save_checked(proto, payload_meta, lambda data: check_onnx(data, wrapper, *inputs),
                         output)
    return {"output": str(output), "outputs": names, **check}


def save_checked(proto, metadata: dict, check, output: Path) -> dict:
    """Store ``metadata`` (str -> str) in the ONNX ``proto``, run ``check(serialised bytes)``
    (which raises UserError on a mismatch) and only then write ``output`` atomically (temporary
    name, renamed); returns what ``check`` returned."""
    import onnx

    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    result = check(proto.SerializeToString())
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
    return result


def disagreement(got: np.ndarray, want: np.ndarray, valid: np.ndarray | None = None,
                 period: float | None = None) -> float:
    """Largest ``|got - want|`` in units of the export tolerance (<= 1 agrees): ``AGREEMENT_ULPS
    * eps32 * max|want| + AGREEMENT_RTOL * |want|``, the maximum taken over ``valid`` entries
    (default: all finite ``want`` other than the fill value). ``period`` (e.g. 360 for phi in
    deg) wraps differences to the nearest period. Used for every exported graph."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if valid is None:
        valid = np.isfinite(want) & (want != FILL_VALUE)
    if got.shape != want.shape:
        return math.inf
    diff = np.abs(got - want)
    if period is not None:
        diff = np.abs((got - want + 0.5 * period) % period - 0.5 * period)
    diff = np.where(np.isnan(diff) & np.isnan(want) & np.isnan(got), 0.0, diff)
    if not np.any(valid):
        return float(np.max(diff, initial=0.0) > 0) * math.inf
    scale = float(np.max(np.abs(want[valid])))
    tolerance = AGREEMENT_ULPS * _EPS32 * scale + AGREEMENT_RTOL * np.abs(want)
    ratio = np.where(diff == 0, 0.0, diff / np.maximum(tolerance, np.finfo(np.float64).tiny))
    return float(np.max(ratio))


def check_onnx(model_bytes: bytes, wrapper: PhysicalModel, npho: np.ndarray,
               time: np.ndarray, vertex: np.ndarray | None = None) -> dict:
    """Run the ONNX graph in onnxruntime and compare every output with what ``xecreco predict
    -r CKPT`` gives (:class:`~xecreco.models.checkpoint_reco.CheckpointReconstructor` on the
    same events, float64 after the network): energies, positions, time, the angles from
    ``vertex`` (N, 3) cm (NaN rows: unknown) and the status.

    Also checks the wrapper's features against :meth:`NormalizationSpec.features` on the
    reader's masks (so the torch normalisation cannot drift from the numpy one). UserError when
    an output disagrees beyond the tolerance of :func:`disagreement`, or the status differs.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    wanted = input_names(wrapper.model)
    if VERTEX_INPUT in wanted and vertex is None:
        vertex = np.full((len(npho), 3), np.nan, dtype=np.float32)
    arrays = [npho, time] + ([vertex] if VERTEX_INPUT in wanted else [])
    onnx_out = session.run(None, dict(zip(wanted, arrays)))
    batch = batch_from_raw(npho, time, wrapper.time_npho_threshold, vertex)
    with torch.inference_mode():
        features = wrapper.inputs_to_features(torch.from_numpy(npho), torch.from_numpy(time))[0]
    reference = wrapper.spec.features(batch)
    feature_diff = float(np.max(np.abs(features.numpy() - reference)))
    if feature_diff > 1e-4:
        raise UserError(f"the export's input normalisation differs from NormalizationSpec by "
                        f"{feature_diff:.3g} in feature units; report this as an xecreco bug")
    member = Member(wrapper.model, wrapper.spec, wrapper.scaling, "export check")
    predicted = CheckpointReconstructor([member], "check").reconstruct(batch)
    max_abs, worst, worst_name, max_rel = {}, 0.0, "", 0.0
    for name, got in zip(wrapper.output_names, onnx_out):
        want = predicted[name]
        if name == "status":
            if not np.array_equal(got.astype(np.int64), want.astype(np.int64)):
                raise UserError("onnxruntime and `xecreco predict` give different status codes "
                                "on the check events; the ONNX file was not written (report this "
                                "as an xecreco bug)")
            continue
        period = 360.0 if name == "phi" else None
        ratio = disagreement(got, want, period=period)
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        if period is not None:
            diff = np.abs((diff + 180.0) % 360.0 - 180.0)
        max_abs[name] = float(diff.max())
        max_rel = max(max_rel, float((diff / (np.abs(want.astype(np.float64)) + 1.0)).max()))
        if ratio > worst:
            worst, worst_name = ratio, name
    if worst > 1.0:
        raise UserError(f"onnxruntime and `xecreco predict` disagree on '{worst_name}' by "
                        f"{max_abs[worst_name]:.3g} ({worst:.3g} x the float32 tolerance) on the "
                        "check events; the ONNX file was not written")
    return {"max_abs_diff": max_abs, "max_rel_diff": max_rel, "tolerance_ratio": worst,
            "feature_max_diff": feature_diff, "events": len(npho),
            "events_with_vertex": 0 if vertex is None else int(
                np.all(np.isfinite(vertex), axis=1).sum())}


def read_metadata(path: str | Path) -> dict:
    """The xecreco metadata of an exported ONNX file (JSON values decoded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    meta = {}
    for entry in proto.metadata_props:
        try:
            meta[entry.key] = json.loads(entry.value)
        except json.JSONDecodeError:
            meta[entry.key] = entry.value
    return meta
