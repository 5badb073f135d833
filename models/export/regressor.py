"""ONNX export of a regressor checkpoint: raw sensor values in, physical quantities out.

The exported graph wraps the network in :class:`PhysicalModel`, which does what
:class:`xecreco.models.regressor.reconstructor.CheckpointReconstructor` does around it, in torch ops:

inputs
    ``npho`` (N, 4760) float32, photons; ``sensor_time`` (N, 4760) float32, seconds (the file's
    ``time`` branch; the input is not called ``time`` because that is an output name). Invalid
    values use the file convention: NaN, +-inf or ``|value| >= 9e9`` (MEG II writes 1e10).
    Models whose outputs depend on the vertex (:func:`~xecreco.models.regressor.reconstructor.
    needs_vertex`: the network uses it, or it has u, v, w and a time or direction head) take a
    third input ``vertex`` (N, 3) float32, cm (``xyzVTX``; a row with NaN = unknown).
    Dead-flag models (``model.dead_flag``) take one more input last, ``inpainted`` (N, 4760)
    bool, True at sensors an inpainter filled (the inpainter graph's ``inpainted`` output, the
    branch ``xecreco inpaint`` writes; all False for unrepaired input): the network's dead flag
    is 1 there and at invalid sensors, as in ``xecreco predict``.
inside
    validity masks as the reader builds them (``valid_npho``: ``|npho| < 9e9``; ``valid_time``:
    also ``|time| < 9e9`` and ``npho >= time_npho_threshold``), the per-event time reference and
    features of the checkpoint's :class:`~xecreco.normalization.NormalizationSpec`, the network,
    then :class:`~xecreco.models.regressor.reconstructor.OutputsToPhysical`, the same torch code that
    ``xecreco predict -r CKPT`` runs: destandardisation, the checkpoint's energy calibration
    (when it has one), the time reference added back, the
    flight-time correction to a known vertex (networks that did not see it), the checkpoint's
    sensor-time refit (when it has a time combination, :mod:`~xecreco.models.regressor.timerefit`;
    usable sensors: valid time, and for dead-flag models not inpainted), (u, v, w) ->
    (x, y, z), and (theta, phi) from the vertex to (x, y, z) where the vertex is known (from the
    direction head elsewhere).
outputs
    ``energy`` GeV, ``u v w x y z`` cm, ``time`` ns, ``theta phi`` deg, ``npileup`` and
    ``pileup_prob`` (probability in [0, 1], the sigmoid of the pileup head's logit) (enabled
    heads only), ``<q>_err`` with uncertainty heads, and ``status`` int32 (0 ok, 1 no valid sensor,
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
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xecreco._version import __version__
from xecreco.errors import UserError
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.io.schema import FILL_VALUE, OUTPUT_UNITS, Status
from xecreco.models.export.onnx import (
    DEFAULT_OPSET,
    RawInputs,
    batch_from_raw,
    disagreement,
    save_checked,
    sim_like_inpainted,
    sim_like_inputs,
)
from xecreco.models.regressor.reconstructor import (
    CheckpointReconstructor,
    Member,
    OutputsToPhysical,
    needs_vertex,
    physical_outputs,
)
from xecreco.models.regressor.timerefit import SensorInputs
from xecreco.normalization import NormalizationSpec, TargetScaling, not_measured

#: Input names of the exported graph: raw npho (photons) and sensor time (s); vertex-aware
#: models add :data:`VERTEX_INPUT` (see :func:`input_names`).
INPUT_NAMES = ("npho", "sensor_time")
VERTEX_INPUT = "vertex"
#: Input of dead-flag models: the sensors an inpainter filled (see the module docstring).
INPAINTED_INPUT = "inpainted"


class PhysicalModel(RawInputs):
    """Raw (npho, time) -> physical outputs around a regressor (see the module docstring).

    Args:
        model: the regressor (its ``head_names`` and ``config["uncertainty"]`` are used).
        spec: input normalisation.
        scaling: target standardisation.
        time_npho_threshold: minimum npho (photons) for a sensor time to be valid (reader default).
        energy_calibration: the checkpoint's energy calibration (None: none).
        time_combination: the checkpoint's sensor-time refit (None: the network's time).
    """

    def __init__(self, model: nn.Module, spec: NormalizationSpec, scaling: TargetScaling,
                 time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD,
                 energy_calibration=None, time_combination=None):
        super().__init__(spec, time_npho_threshold)
        self.model = model
        self.heads = tuple(model.head_names)
        self.uncertainty = bool(model.config["uncertainty"])
        self.energy_calibration = energy_calibration
        self.time_combination = time_combination
        self.physics = OutputsToPhysical(self.heads, scaling,
                                         bool(getattr(model, "uses_vertex", False)),
                                         energy_calibration, time_combination)
        self.output_names = output_names(self.heads, self.uncertainty,
                                         bool(model.config.get("quantiles")))
        self.scaling = scaling
        self.dead_flag = bool(getattr(model, "dead_flag", False))
        #: the graph inputs after npho and sensor_time (:func:`input_names`)
        self.optional_inputs = tuple(input_names(model)[len(INPUT_NAMES):])

    def reference_reconstructor(self) -> CheckpointReconstructor:
        """What ``xecreco predict`` runs for this graph: the deterministic network (no
        MC-dropout passes), to compare the graph's outputs with (:func:`check_onnx`)."""
        member = Member(self.model, self.spec, self.scaling, "export check",
                        self.energy_calibration, self.time_combination)
        return CheckpointReconstructor([member], "check", mc_samples=0)

    def metadata(self) -> dict:
        """The ``metadata_props`` entries that describe the network (JSON strings)."""
        return {
            "model_config": json.dumps(self.model.config, sort_keys=True),
            "normalization": json.dumps(self.spec.to_dict(), sort_keys=True),
            "target_scaling": json.dumps(self.scaling.to_dict(), sort_keys=True),
            "energy_calibration": json.dumps(None if self.energy_calibration is None
                                             else self.energy_calibration.to_dict(),
                                             sort_keys=True),
            "time_combination": json.dumps(None if self.time_combination is None
                                           else self.time_combination.to_dict(),
                                           sort_keys=True),
        }

    # ------------------------------------------------------------------ outputs
    def forward(self, npho: torch.Tensor, time: torch.Tensor, *optional: torch.Tensor):
        """Tuple of outputs in the order of ``self.output_names``. ``optional``: the inputs of
        :attr:`optional_inputs` in that order (``vertex`` (N, 3) cm for vertex-aware models,
        missing = the target centre; ``inpainted`` (N, 4760) bool for dead-flag models,
        missing = nothing inpainted)."""
        given = dict(zip(self.optional_inputs, optional))
        vertex = given.get(VERTEX_INPUT)
        inpainted = given.get(INPAINTED_INPUT)
        features, reference, valid_npho, valid_time = self.inputs_to_features(
            npho, time, flag=self.dead_flag, inpainted=inpainted)
        if getattr(self.model, "uses_vertex", False):
            raw = self.model(features, vertex)
        else:
            raw = self.model(features)
        sensors = None
        if self.physics.time_refit is not None:
            sensors = SensorInputs(time, npho,
                                   valid_time & ~not_measured(valid_npho, inpainted))
        out = self.physics(raw, reference, vertex, sensors)
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
    on it (:func:`~xecreco.models.regressor.reconstructor.needs_vertex`), then the inpainted
    mask for dead-flag models."""
    return [*INPUT_NAMES, *([VERTEX_INPUT] if needs_vertex(model) else []),
            *([INPAINTED_INPUT] if getattr(model, "dead_flag", False) else [])]


def sim_like_vertices(n: int, seed: int = 0) -> np.ndarray:
    """(n, 3) float32 vertices (cm) on the MEG II target ellipse (27 x 6.6 cm), the last row NaN
    (unknown), for export checks."""
    rng = np.random.default_rng(seed + 7)
    vertex = np.zeros((n, 3), dtype=np.float32)
    vertex[:, 2] = rng.uniform(-13.0, 13.0, n)
    vertex[:, 1] = rng.uniform(-3.0, 3.0, n)
    vertex[-1] = np.nan
    return vertex


def output_names(heads, uncertainty: bool, quantiles: bool = False) -> list[str]:
    """Output names of the exported graph for the enabled heads, ``status`` last (``<q>_err``
    of the scalar heads with log-variance or quantile outputs, of theta and phi with a
    log-variance direction head)."""
    names = physical_outputs(heads)
    if uncertainty or quantiles:
        errs = [q for q in ("energy", "u", "v", "w", "time", "npileup") if q in heads]
        if "direction" in heads and uncertainty:
            errs += ["theta", "phi"]
        names += [q + "_err" for q in errs]
    return names + ["status"]


class GatedPhysicalModel(nn.Module):
    """The ONNX form of :class:`~xecreco.models.regressor.gated.PileupGatedReconstructor`:
    both networks' :class:`PhysicalModel` on every event (a graph has no cheaper way to run the
    expert on some events only, so it costs both networks), then the gate's selection in
    ``torch.where``: the same outputs as ``xecreco predict``.

    Args:
        primary: the main network's wrapper (its inputs and outputs are the graph's, plus
            ``pileup_energy`` when the expert has it).
        expert: the pile-up expert's wrapper (the same inputs).
        gate: the thresholds (:class:`~xecreco.models.regressor.gated.PileupGate`).
    """

    def __init__(self, primary: PhysicalModel, expert: PhysicalModel, gate):
        super().__init__()
        if input_names(primary.model) != input_names(expert.model):
            raise UserError("the pile-up expert takes other graph inputs "
                            f"({', '.join(input_names(expert.model))}) than the main network "
                            f"({', '.join(input_names(primary.model))}); the pair cannot be "
                            "exported as one graph")
        self.primary, self.expert, self.gate = primary, expert, gate
        self.model, self.spec, self.scaling = primary.model, primary.spec, primary.scaling
        self.time_npho_threshold = primary.time_npho_threshold
        self.dead_flag = primary.dead_flag
        names = [n for n in primary.output_names if n != "status"]
        names += [n for n in ("pileup_energy",) if n in expert.output_names and n not in names]
        self.output_names = names + ["status"]

    def inputs_to_features(self, *args, **kwargs):
        """The main network's features (:meth:`RawInputs.inputs_to_features`)."""
        return self.primary.inputs_to_features(*args, **kwargs)

    def reference_reconstructor(self):
        """The gated reconstructor ``xecreco predict`` runs (deterministic networks)."""
        from xecreco.models.regressor.gated import PileupGatedReconstructor

        def member(wrapper, path):
            return Member(wrapper.model, wrapper.spec, wrapper.scaling, path,
                          wrapper.energy_calibration, wrapper.time_combination)

        return PileupGatedReconstructor(member(self.primary, "export check"),
                                        member(self.expert, "export check (expert)"),
                                        self.gate, "check", batch_size=1024)

    def metadata(self) -> dict:
        """The main network's metadata, the expert's under ``pileup_expert_*`` and the gate."""
        meta = self.primary.metadata()
        meta.update({f"pileup_expert_{k}": v for k, v in self.expert.metadata().items()})
        meta["pileup_gate"] = json.dumps(self.gate.to_dict(), sort_keys=True)
        return meta

    def forward(self, npho: torch.Tensor, time: torch.Tensor, *optional: torch.Tensor):
        """Tuple of outputs in the order of ``self.output_names`` (inputs as
        :meth:`PhysicalModel.forward`)."""
        main = dict(zip(self.primary.output_names, self.primary(npho, time, *optional)))
        expert = dict(zip(self.expert.output_names, self.expert(npho, time, *optional)))
        run = (main["pileup_prob"] >= self.gate.run_threshold) & (main["status"] == 0)
        use = run & (expert["pileup_prob"] >= self.gate.use_threshold)
        results = []
        for name in self.output_names:
            if name == "pileup_prob":
                results.append(torch.where(run, expert[name], main[name]))
            elif name not in main:  # the expert's own output (pileup_energy): 0 where it
                results.append(torch.where(run, expert[name],  # did not run
                                           torch.zeros_like(expert[name])))
            else:
                results.append(torch.where(use, expert[name], main[name]))
        return tuple(results)


def build_physical_model(checkpoint: str | Path):
    """The export wrapper around a regressor checkpoint (UserError on bad checkpoints): a
    :class:`PhysicalModel`, or a :class:`GatedPhysicalModel` for a checkpoint with a pile-up
    expert (:mod:`xecreco.models.regressor.gated`)."""
    from xecreco.models.regressor import gated
    from xecreco.models.regressor.reconstructor import load_payload, member_from_payload

    payload = load_payload(checkpoint)

    def wrap(member):
        return PhysicalModel(member.model, member.normalization, member.scaling,
                             energy_calibration=member.energy_calibration,
                             time_combination=member.time_combination).eval()

    primary = wrap(member_from_payload(payload, checkpoint))
    if gated.EXPERT_KEY not in payload:
        return primary
    pair = gated.gated_from_payload(payload, member_from_payload(payload, checkpoint),
                                    checkpoint, "check", 1024, "cpu")
    return GatedPhysicalModel(primary, wrap(pair.expert.members[0]), pair.gate).eval()


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
    vertex = inpainted = None
    if VERTEX_INPUT in inputs_names:
        vertex = sim_like_vertices(len(npho), seed)
        inputs.append(vertex)
    if INPAINTED_INPUT in inputs_names:
        inpainted = sim_like_inpainted(npho, seed)
        inputs.append(inpainted)
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
        **wrapper.metadata(),
        "inputs": json.dumps({k: v for k, v in {
            "npho": "photons (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
            "sensor_time": "seconds (N, 4760) float32; invalid: NaN, inf, |x| >= 9e9",
            VERTEX_INPUT: "cm (N, 3) float32 photon vertex (xyzVTX); NaN row: unknown",
            INPAINTED_INPUT: "(N, 4760) bool, True where an inpainter filled the sensor",
        }.items() if k in inputs_names}),
        "outputs": json.dumps({k: OUTPUT_UNITS.get(k.removesuffix("_err"), "status code")
                               for k in names}),
        "time_npho_threshold": str(wrapper.time_npho_threshold),
        "fill_value": str(FILL_VALUE),
    }
    check = save_checked(proto, payload_meta,
                         lambda data: check_onnx(data, wrapper, npho, time, vertex, inpainted),
                         output)
    return {"output": str(output), "outputs": names, **check}


def check_onnx(model_bytes: bytes, wrapper, npho: np.ndarray,
               time: np.ndarray, vertex: np.ndarray | None = None,
               inpainted: np.ndarray | None = None) -> dict:
    """Run the ONNX graph in onnxruntime and compare every output with what ``xecreco predict
    -r CKPT`` gives (:class:`~xecreco.models.regressor.reconstructor.CheckpointReconstructor` on the
    same events, float64 after the network): energies, positions, time, the angles from
    ``vertex`` (N, 3) cm (NaN rows: unknown) and the status. ``inpainted`` ((N, 4760) bool,
    dead-flag models; None: nothing inpainted) is the graph's input and the batch's
    ``extras["inpainted"]``.

    Also checks the wrapper's features against :meth:`NormalizationSpec.features` on the
    reader's masks (so the torch normalisation cannot drift from the numpy one). UserError when
    an output disagrees beyond the tolerance of :func:`disagreement`, or the status differs.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    wanted = input_names(wrapper.model)
    if VERTEX_INPUT in wanted and vertex is None:
        vertex = np.full((len(npho), 3), np.nan, dtype=np.float32)
    if INPAINTED_INPUT in wanted and inpainted is None:
        inpainted = np.zeros(npho.shape, dtype=bool)
    arrays = [npho, time] + ([vertex] if VERTEX_INPUT in wanted else []) + (
        [inpainted] if INPAINTED_INPUT in wanted else [])
    onnx_out = session.run(None, dict(zip(wanted, arrays)))
    flag = wrapper.dead_flag
    batch = batch_from_raw(npho, time, wrapper.time_npho_threshold, vertex,
                           inpainted if flag else None)
    with torch.inference_mode():
        features = wrapper.inputs_to_features(
            torch.from_numpy(npho), torch.from_numpy(time), flag=flag,
            inpainted=torch.from_numpy(inpainted) if flag else None)[0]
    reference = wrapper.spec.features(batch, flag=flag)
    feature_diff = float(np.max(np.abs(features.numpy() - reference)))
    if feature_diff > 1e-4:
        raise UserError(f"the export's input normalisation differs from NormalizationSpec by "
                        f"{feature_diff:.3g} in feature units; report this as an xecreco bug")
    # the graph is the deterministic network: compare without MC-dropout passes
    predicted = wrapper.reference_reconstructor().reconstruct(batch)
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
