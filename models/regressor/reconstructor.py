"""A :class:`~xecreco.models.base.Reconstructor` from one or several regressor checkpoints.

Everything needed comes from the checkpoint: the model is rebuilt from its embedded
``model_config``, inputs are normalised with its embedded ``NormalizationSpec``, outputs are
destandardised with its ``TargetScaling`` and the per-event time reference is added back. Outputs
are in file units (GeV, cm, ns, deg) with an int32 status. Several checkpoints form an ensemble:
the outputs are the member means and ``<q>_err`` the spread between members (combined in
quadrature with the members' own predicted uncertainties, if they have any). A checkpoint whose
model config has ``mc_samples`` = T > 0 (and ``dropout`` > 0) runs T forward passes with dropout
active (seeds 0..T-1, so predictions are reproducible), combined like ensemble members: MC-dropout
uncertainties. Quantile heads give ``<q>_err`` = half their 68 % interval.

The network outputs become physical quantities in one place, :class:`OutputsToPhysical`, written
in torch: this reconstructor runs it in float64, the ONNX graph of :mod:`xecreco.models.export.regressor`
in float32, so both give the same numbers (the export checks it on events with a vertex).
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xecreco.errors import UserError
from xecreco.geometry import R_INNER, direction_to_angles
from xecreco.geometry.constants import SPEED_OF_LIGHT_CM_PER_NS, TARGET_CENTRE_CM
from xecreco.io.schema import FILL_THRESHOLD, FILL_VALUE, INPAINTED_BRANCH, Status
from xecreco.models.regressor.calibration import (
    EnergyCalibration,
    EnergyCorrection,
    calibration_from_payload,
)
from xecreco.models.regressor.network import Regressor, build_model
from xecreco.models.regressor.presets import input_channels
from xecreco.models.regressor.timerefit import (
    SensorInputs,
    SensorTimeRefit,
    TimeCombination,
    time_combination_from_payload,
)
from xecreco.normalization import NormalizationSpec, TargetScaling, batch_not_measured
from xecreco.train.checkpoint import FORMAT as CHECKPOINT_FORMAT
from xecreco.train.checkpoint import load_checkpoint

#: Scalar outputs that are regressed after standardisation with :class:`TargetScaling`.
SCALAR_TARGETS = ("energy", "u", "v", "w", "time", "npileup", "pileup_energy")
#: Events per forward pass.
DEFAULT_BATCH_SIZE = 1024
_DEG = 180.0 / math.pi


def load_payload(path: str | Path) -> dict:
    """The checkpoint dict at ``path`` (``weights_only`` load; UserError if unreadable)."""
    return load_checkpoint(path)


def check_payload(payload: dict, path, task: str = "regressor") -> None:
    """UserError unless ``payload`` is an xecreco checkpoint of ``task`` with the needed keys."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not an xecreco checkpoint (no format '{CHECKPOINT_FORMAT}'); "
                        "pass a file written by `xecreco train`")
    if payload.get("task") != task:
        raise UserError(f"{path}: is a '{payload.get('task')}' checkpoint, not a '{task}' one; "
                        f"pass a {task} checkpoint")
    missing = [k for k in ("model_config", "normalization", "target_scaling", "state_dict")
               if not payload.get(k)]
    if missing:
        raise UserError(f"{path}: checkpoint lacks {', '.join(missing)}; it is incomplete or "
                        "corrupt, re-save it with `xecreco train`")


def _state_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """One-line description of how ``state`` differs from ``model.state_dict()``, or None."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected
              if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("wrong shape", shapes)):
        if keys:
            parts.append(f"{len(keys)} {label} (e.g. {keys[0]})")
    return "; ".join(parts) or None


def model_from_payload(payload: dict, path) -> Regressor:
    """Rebuild the regressor from the payload's model_config and load its (EMA) weights.

    UserError (one line) when the config is invalid or the weights do not fit it.
    """
    try:
        model = build_model(payload["model_config"])
    except UserError as exc:
        raise UserError(f"{path}: invalid model_config: {exc}") from None
    except (TypeError, ValueError, KeyError, RuntimeError, IndexError) as exc:  # edited config
        raise UserError(f"{path}: invalid model_config ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120] if str(exc) else ''}); the checkpoint "
                        "is corrupt or was edited") from None
    state = payload.get("ema_state_dict") or payload["state_dict"]
    problem = _state_mismatch(model, state)
    if problem:
        preset = payload["model_config"].get("preset", "?") if isinstance(
            payload["model_config"], dict) else "?"
        raise UserError(f"{path}: weights do not match the embedded model_config (preset "
                        f"'{preset}'): {problem}; the checkpoint is corrupt or was edited")
    model.load_state_dict(state)
    model.eval()
    return model


def physical_outputs(heads) -> list[str]:
    """Physical output names (file units) a regressor with these heads produces: (u, v, w) add
    (x, y, z), the direction head gives (theta, phi), the pileup head ``pileup_prob`` and the
    pileup_energy head ``pileup_energy`` (GeV, the estimated in-gate pile-up energy)."""
    names = [q for q in ("energy", "u", "v", "w") if q in heads]
    if {"u", "v", "w"} <= set(heads):
        names += ["x", "y", "z"]
    if "time" in heads:
        names.append("time")
    if "direction" in heads:
        names += ["theta", "phi"]
    if "npileup" in heads:
        names.append("npileup")
    if "pileup" in heads:
        names.append("pileup_prob")
    if "pileup_energy" in heads:
        names.append("pileup_energy")
    return names


def needs_vertex(model) -> bool:
    """Whether a regressor's outputs depend on the event vertex: the network uses it
    (:attr:`Regressor.uses_vertex`), or (u, v, w) and a direction or time head are there (angles
    from the vertex, flight-time correction)."""
    heads = set(model.head_names)
    return bool(getattr(model, "uses_vertex", False)) or (
        {"u", "v", "w"} <= heads and bool({"direction", "time"} & heads))


def uvw_to_xyz_torch(u, v, w):
    """(x, y, z) cm from (u, v, w) cm tensors (:func:`xecreco.geometry.uvw_to_xyz` in torch)."""
    radius = w + R_INNER
    azimuth = v * (1.0 / R_INNER)
    return -radius * torch.cos(azimuth), radius * torch.sin(azimuth), u


def angles_torch(dx, dy, dz):
    """(theta, phi) deg of vectors (:func:`xecreco.geometry.direction_to_angles` in torch)."""
    rho = torch.sqrt(dx * dx + dy * dy)
    return torch.atan2(rho, dz) * _DEG, torch.atan2(dy, -dx) * _DEG


def known_vertex_torch(vertex, like: torch.Tensor):
    """``(vertex (N, 3) cm with unknown rows set to the target centre, known (N,) bool)``;
    ``vertex`` None = all unknown. Rows with a non-finite or ``|value| >= FILL_THRESHOLD`` (1e9) entry are
    unknown (written without isfinite/all so that the ONNX graph is plain)."""
    centre = torch.tensor(TARGET_CENTRE_CM, dtype=like.dtype, device=like.device)
    if vertex is None:
        return centre.expand(like.shape[0], 3), torch.zeros_like(like, dtype=torch.bool)
    vertex = vertex.to(like.dtype)
    known = (torch.abs(vertex) < FILL_THRESHOLD).to(like.dtype).sum(dim=1) > 2.5
    return torch.where(known[:, None], vertex, centre), known


class OutputsToPhysical(torch.nn.Module):
    """Standardised network outputs -> physical outputs in file units: the one definition,
    used by :class:`CheckpointReconstructor` (float64) and the ONNX graph (float32).

    Per member (:meth:`member`): destandardise with the :class:`TargetScaling`, ``<q>_err`` from
    log-variances, correct the energy (and its error) with the checkpoint's energy calibration
    when it has one, add the per-event time reference (ns) back, and for networks that did not see
    the vertex move the time of flight from the target centre to the known vertex; the
    ``pileup`` logit becomes ``pileup_prob`` = sigmoid(logit), in [0, 1]. Then
    (:meth:`finish`, after an ensemble mean): (u, v, w) -> (x, y, z) cm, and (theta, phi) deg
    from the vertex to (x, y, z) where the vertex is known, from the direction head elsewhere.

    Args:
        heads: the network's heads.
        scaling: its target standardisation.
        uses_vertex: whether the network itself saw the vertex (no flight correction then).
        energy_calibration: the checkpoint's energy-response calibration
            (:mod:`~xecreco.models.regressor.calibration`), applied to the destandardised energy
            (GeV) and its error; None = none.
        time_combination: the checkpoint's sensor-time refit
            (:mod:`~xecreco.models.regressor.timerefit`): the time becomes its combination of
            the network's time with the sensor times at the network's position (after the energy
            calibration, whose energy sets the weights); None = the network's time.
    """

    def __init__(self, heads, scaling: TargetScaling, uses_vertex: bool,
                 energy_calibration: EnergyCalibration | None = None,
                 time_combination: TimeCombination | None = None):
        super().__init__()
        self.heads = tuple(heads)
        self.scalar_targets = [q for q in SCALAR_TARGETS if q in self.heads]
        self.mean = {q: float(scaling.mean.get(q, 0.0)) for q in self.scalar_targets}
        self.scale = {q: float(scaling.scale.get(q, 1.0)) for q in self.scalar_targets}
        self.uses_vertex = bool(uses_vertex)
        self.energy_correction = (EnergyCorrection(energy_calibration)
                                  if energy_calibration is not None and "energy" in self.heads
                                  else None)
        refit = time_combination is not None and {"time", "u", "v", "w"} <= set(self.heads)
        self.time_refit = SensorTimeRefit(time_combination) if refit else None

    def member(self, raw: dict, time_ref_ns: torch.Tensor, vertex,
               sensors: SensorInputs | None = None) -> dict:
        """One network's outputs (``direction`` kept as a vector) and its ``<q>_err``.
        ``sensors``: the batch's raw sensor values, needed with a time combination."""
        out: dict[str, torch.Tensor] = {}
        for q in self.scalar_targets:
            out[q] = raw[q] * self.scale[q] + self.mean[q]
            if q + "_logvar" in raw:
                out[q + "_err"] = torch.exp(0.5 * raw[q + "_logvar"]) * abs(self.scale[q])
            elif q + "_lo" in raw:  # quantile heads: half the 68 % interval
                out[q + "_err"] = 0.5 * (raw[q + "_hi"] - raw[q + "_lo"]) * abs(self.scale[q])
        if "pileup_energy" in out:  # as the network's energy reference uses it: >= 0
            out["pileup_energy"] = out["pileup_energy"].clamp(min=0.0)
        if self.energy_correction is not None:
            out["energy"], slope = self.energy_correction(out["energy"])
            if "energy_err" in out:
                out["energy_err"] = out["energy_err"] * slope
        if "time" in out:
            out["time"] = out["time"] + time_ref_ns.to(out["time"].dtype)
            if not self.uses_vertex and {"u", "v", "w"} <= set(out):
                out["time"] = out["time"] + flight_change_torch(
                    uvw_to_xyz_torch(out["u"], out["v"], out["w"]), vertex)
        if self.time_refit is not None:
            if sensors is None:
                raise ValueError("a regressor with a time combination needs the sensor values")
            xyz = uvw_to_xyz_torch(out["u"], out["v"], out["w"])
            origin, _ = known_vertex_torch(vertex, out["time"])
            energy = out["energy"] if "energy" in out else torch.full_like(out["time"], 0.05)
            out["time"], err = self.time_refit(sensors, xyz, origin, out["time"], energy,
                                               out.get("time_err"))
            if err is not None:
                out["time_err"] = err
        if "pileup" in raw:  # a logit: the probability that the event has >= 5 MeV of pile-up
            out["pileup_prob"] = torch.sigmoid(raw["pileup"])
        if "direction" in raw:
            d = raw["direction"]
            out["direction"] = d
            if "direction_logvar" in raw:
                theta, _ = angles_torch(d[:, 0], d[:, 1], d[:, 2])
                sigma_deg = torch.exp(0.5 * raw["direction_logvar"]) * _DEG
                out["theta_err"] = sigma_deg
                out["phi_err"] = sigma_deg / torch.clamp(torch.sin(theta * (1.0 / _DEG)),
                                                         min=1e-3)
        return out

    @staticmethod
    def finish(out: dict, vertex) -> dict:
        """Adds (x, y, z) and replaces the ``direction`` vector by (theta, phi), see above."""
        out = dict(out)
        xyz = None
        if {"u", "v", "w"} <= set(out):
            xyz = uvw_to_xyz_torch(out["u"], out["v"], out["w"])
            out["x"], out["y"], out["z"] = xyz
        if "direction" in out:
            d = out.pop("direction")
            theta, phi = angles_torch(d[:, 0], d[:, 1], d[:, 2])
            if xyz is not None:
                origin, known = known_vertex_torch(vertex, xyz[0])
                t_vtx, p_vtx = angles_torch(xyz[0] - origin[:, 0], xyz[1] - origin[:, 1],
                                            xyz[2] - origin[:, 2])
                theta, phi = torch.where(known, t_vtx, theta), torch.where(known, p_vtx, phi)
            out["theta"], out["phi"] = theta, phi
        return out

    def forward(self, raw: dict, time_ref_ns: torch.Tensor, vertex=None,
                sensors: SensorInputs | None = None) -> dict:
        """:meth:`member` then :meth:`finish` (one network, as in the ONNX graph)."""
        return self.finish(self.member(raw, time_ref_ns, vertex, sensors), vertex)


def flight_change_torch(xyz, vertex) -> torch.Tensor:
    """(N,) ns to add to the time of a network that never saw the vertex: it predicts the
    emission time for the average vertex, the target centre, so the time of flight is moved
    from there to the measured vertex: (|x - centre| - |x - vertex|) / c (0 where unknown)."""
    x, y, z = xyz
    origin, known = known_vertex_torch(vertex, x)
    centre = TARGET_CENTRE_CM

    def dist(cx, cy, cz):
        return torch.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)

    change = (dist(*centre) - dist(origin[:, 0], origin[:, 1], origin[:, 2])) * (
        1.0 / SPEED_OF_LIGHT_CM_PER_NS)
    return torch.where(known, change, torch.zeros_like(change))


@dataclass
class Member:
    """One loaded checkpoint: network, input normalisation, target scaling, path, its
    energy-response calibration (None: uncalibrated) and its time combination (None: the
    network's time)."""

    model: Regressor
    normalization: NormalizationSpec
    scaling: TargetScaling
    path: str
    energy_calibration: EnergyCalibration | None = None
    time_combination: TimeCombination | None = None

    @property
    def dead_flag(self) -> bool:
        """Whether the network takes the dead flag as a third input channel."""
        return bool(getattr(self.model, "dead_flag", False))

    @property
    def inputs_key(self) -> tuple[NormalizationSpec, bool]:
        """What its input features depend on: the normalisation and the dead flag (members with
        equal keys share their features)."""
        return self.normalization, self.dead_flag

    @property
    def physics(self) -> OutputsToPhysical:
        """This member's :class:`OutputsToPhysical`."""
        return OutputsToPhysical(self.model.head_names, self.scaling,
                                 bool(getattr(self.model, "uses_vertex", False)),
                                 self.energy_calibration, self.time_combination)


def _default_name(paths: list[str]) -> str:
    stem = re.sub(r"\W", "_", Path(paths[0]).stem) or "nn"
    if stem[0].isdigit():
        stem = "nn_" + stem
    return stem if len(paths) == 1 else f"{stem}_ens{len(paths)}"


class CheckpointReconstructor:
    """Neural regressor(s) behind the Reconstructor interface (see the module docstring).

    Args:
        members: loaded checkpoints (model, normalisation, target scaling).
        name: branch prefix, an identifier.
        batch_size: events per forward pass.
        device: torch device for inference.
        mc_samples: MC-dropout passes per member (None: each model config's ``mc_samples``;
            0: the deterministic network, as in the ONNX graph).
    """

    def __init__(self, members: list[Member], name: str, batch_size: int = DEFAULT_BATCH_SIZE,
                 device: str = "cpu", mc_samples: int | None = None):
        if not name.isidentifier():
            raise UserError(f"reconstructor name '{name}' is not an identifier: use letters, "
                            "digits and underscores")
        heads = {m.model.head_names for m in members}
        if len(heads) != 1:
            raise UserError("ensemble checkpoints predict different quantities "
                            f"({', '.join(m.path for m in members)}); ensemble like with like")
        self.members = members
        self.name = name
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        for member in members:
            member.model.to(self.device)
        self.outputs = tuple(physical_outputs(members[0].model.head_names))
        config = members[0].model.config
        #: MC-dropout passes per member (None: each model config's ``mc_samples``; 0: off)
        self.mc_samples = mc_samples
        mc = config.get("mc_samples", 0) if mc_samples is None else mc_samples
        self.has_uncertainty = bool(config["uncertainty"] or config.get("quantiles") or mc)
        with_errors = self.has_uncertainty or len(members) > 1
        #: the ``<q>_err`` keys every reconstruct() call returns
        self.error_outputs = tuple(
            q + "_err" for q in ("energy", "u", "v", "w", "time", "theta", "phi", "npileup")
            if with_errors and q in self.outputs)
        #: input branches it reads from ``batch.extras`` when a file has them: the inpainted
        #: mask for dead-flag networks (:func:`xecreco.normalization.batch_not_measured`)
        self.input_extras = (INPAINTED_BRANCH,) if any(m.dead_flag for m in members) else ()

    def _passes(self, member: Member, features: np.ndarray, vertex: np.ndarray | None,
                samples: int):
        """The standardised outputs of each pass: one deterministic pass (``samples`` 0) or
        ``samples`` MC-dropout passes, dropout active and the torch RNG seeded with 0, 1, ...
        (one dropout switch and RNG fork for all of them)."""
        if not samples:
            yield self._forward(member, features, vertex)
            return
        with torch.random.fork_rng(devices=[]), mc_dropout(member.model):
            for seed in range(samples):
                torch.manual_seed(seed)
                yield self._forward(member, features, vertex)

    def _forward(self, member: Member, features: np.ndarray,
                 vertex: np.ndarray | None) -> dict[str, np.ndarray]:
        """Standardised network outputs for (N, 4760, C) features (and the (N, 3) cm vertex for
        models that use it; None = the target centre), as float64 numpy."""
        chunks: list[dict[str, torch.Tensor]] = []
        uses_vertex = getattr(member.model, "uses_vertex", False)
        with torch.inference_mode():
            for start in range(0, len(features), self.batch_size):
                rows = slice(start, start + self.batch_size)
                x = torch.from_numpy(features[rows]).to(self.device)
                if uses_vertex:
                    v = None if vertex is None else torch.from_numpy(
                        np.ascontiguousarray(vertex[rows], dtype=np.float32)).to(self.device)
                    outputs = member.model(x, v)
                else:
                    outputs = member.model(x)
                chunks.append({k: v.float().cpu() for k, v in outputs.items()})
        return {k: torch.cat([c[k] for c in chunks]).double().numpy() for k in chunks[0]}

    @staticmethod
    def _physical(physics: OutputsToPhysical, raw: dict[str, np.ndarray],
                  time_ref_ns: np.ndarray, vertex: np.ndarray | None,
                  sensors: SensorInputs | None = None) -> dict[str, np.ndarray]:
        """:meth:`OutputsToPhysical.member` in float64 (numpy in and out)."""
        with torch.inference_mode():
            out = physics.member({k: torch.from_numpy(v) for k, v in raw.items()},
                                 torch.from_numpy(time_ref_ns), _vertex_tensor(vertex), sensors)
        return {k: v.numpy() for k, v in out.items()}

    def prepare(self, batch) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
        """The network inputs of ``batch``: ``{member.inputs_key: (features, time reference ns
        float64)}``, once per distinct (normalisation, dead flag) of the members; dead-flag
        networks get the flag of :func:`xecreco.normalization.batch_not_measured` (invalid or
        ``extras["inpainted"]``). numpy only (no model), so a pipeline can run it ahead in
        another thread and pass it to :meth:`reconstruct`."""
        prepared: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
        for member in self.members:
            key = member.inputs_key  # frozen spec + bool: equal keys share features
            if key not in prepared:
                features, time_ref = member.normalization.features_and_reference(
                    batch, flag=member.dead_flag)
                prepared[key] = (features, np.asarray(time_ref, dtype=np.float64))
        return prepared

    def reconstruct(self, batch, prepared=None) -> dict[str, np.ndarray]:
        """Physical outputs (float32, file units), ``<q>_err`` where available, int32 status.
        ``prepared``: :meth:`prepare` of this batch when the caller computed it already."""
        n = len(batch)
        if n == 0:
            empty = {q: np.zeros(0, np.float32) for q in self.outputs + self.error_outputs}
            return {**empty, "status": np.zeros(0, np.int32)}
        per_member = []
        features_cache = self.prepare(batch) if prepared is None else prepared
        sensors = (sensor_inputs(batch) if any(m.time_combination is not None
                                               for m in self.members) else None)
        for member in self.members:
            features, time_ref = features_cache[member.inputs_key]
            samples = int(member.model.config.get("mc_samples", 0)
                          if self.mc_samples is None else self.mc_samples)
            physics = member.physics
            for raw in self._passes(member, features, batch.vertex, samples):
                per_member.append(self._physical(physics, raw, time_ref, batch.vertex, sensors))
        result = _combine(per_member, n)
        with torch.inference_mode():
            result = OutputsToPhysical.finish({k: torch.from_numpy(v) for k, v in result.items()},
                                              _vertex_tensor(batch.vertex))
        return _finalise({k: v.numpy() for k, v in result.items()}, batch, n)


@contextmanager
def mc_dropout(model: torch.nn.Module):
    """Dropout layers of ``model`` in training mode (everything else as it is) inside the block:
    each forward is one Monte-Carlo dropout sample."""
    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    before = [m.training for m in layers]
    for m in layers:
        m.train()
    try:
        yield
    finally:
        for m, mode in zip(layers, before):
            m.train(mode)


def sensor_inputs(batch) -> SensorInputs:
    """The batch's raw sensor values for the time refit: times (s), npho, and the usable mask
    (valid time, and measured: :func:`~xecreco.normalization.batch_not_measured` is False)."""
    usable = np.asarray(batch.valid_time, dtype=bool) & ~batch_not_measured(batch)
    return SensorInputs(torch.from_numpy(np.asarray(batch.time)),
                        torch.from_numpy(np.asarray(batch.npho)), torch.from_numpy(usable))


def _vertex_tensor(vertex) -> torch.Tensor | None:
    """The (N, 3) cm vertex as a float64 tensor (None stays None: all unknown)."""
    return None if vertex is None else torch.from_numpy(np.asarray(vertex, dtype=np.float64))


def _combine(per_member: list[dict[str, np.ndarray]], n: int) -> dict[str, np.ndarray]:
    """Ensemble mean, and ``<q>_err`` = sqrt(mean member err^2 + member spread^2)."""
    result: dict[str, np.ndarray] = {}
    several = len(per_member) > 1

    def merge(q, values, errors):
        result[q] = np.mean(values, axis=0)
        var = np.zeros(n)
        have_err = False
        if errors is not None:
            var = var + np.mean(np.square(errors), axis=0)
            have_err = True
        if several:
            var = var + np.var(values, axis=0, ddof=1)
            have_err = True
        if have_err:
            result[q + "_err"] = np.sqrt(var)

    first = per_member[0]
    if "pileup_prob" in first:  # ensemble: mean probability (no error output)
        result["pileup_prob"] = np.mean([m["pileup_prob"] for m in per_member], axis=0)
    for q in SCALAR_TARGETS:
        if q in first:
            errors = [m[q + "_err"] for m in per_member] if q + "_err" in first else None
            merge(q, [m[q] for m in per_member], errors)
    if "direction" in first:
        mean_vec = np.mean([m["direction"] for m in per_member], axis=0)
        result["direction"] = mean_vec  # angles: OutputsToPhysical.finish
        theta, phi = direction_to_angles(mean_vec)
        for q, centre in (("theta", np.asarray(theta, float)), ("phi", np.asarray(phi, float))):
            values = []
            for m in per_member:
                angles = direction_to_angles(m["direction"])
                member_value = np.asarray(angles[0] if q == "theta" else angles[1], float)
                # differences wrapped to (-180, 180] so phi spreads ignore the 360-degree seam
                values.append(centre + (member_value - centre + 180.0) % 360.0 - 180.0)
            errors = [m[q + "_err"] for m in per_member] if q + "_err" in first else None
            merge(q, values, errors)
            del result[q]  # the angles themselves come from OutputsToPhysical.finish
    return result


def _finalise(result: dict[str, np.ndarray], batch, n: int) -> dict[str, np.ndarray]:
    """Status codes, fill values where an output cannot be computed, float32 casting."""
    status = np.full(n, int(Status.OK), dtype=np.int32)
    no_time = ~np.asarray(batch.valid_time).any(axis=1)
    no_sensor = ~np.asarray(batch.valid_npho).any(axis=1)
    finite = np.ones(n, dtype=bool)
    for key, values in result.items():
        finite &= np.isfinite(values)
    status[~finite] = int(Status.FIT_FAILED)
    status[no_time & finite] = int(Status.NO_VALID_TIME)
    status[no_sensor] = int(Status.NO_VALID_SENSORS)
    out = {}
    for key, values in result.items():
        values = np.where(np.isfinite(values), values, FILL_VALUE)
        if key in ("time", "time_err"):
            values = np.where(no_time, FILL_VALUE, values)
        values = np.where(no_sensor | ~finite, FILL_VALUE, values)
        out[key] = values.astype(np.float32)
    out["status"] = status
    return out


def load_member(path: str | Path, energy_calibration: bool = True,
                time_combination: bool = True) -> Member:
    """One checkpoint: payload checks, model, normalisation spec, target scaling and (unless
    ``energy_calibration`` / ``time_combination`` is False) the energy calibration and the
    time combination stored in it."""
    return member_from_payload(load_payload(path), path, energy_calibration, time_combination)


def member_from_payload(payload: dict, path, energy_calibration: bool = True,
                        time_combination: bool = True) -> Member:
    """:func:`load_member` of a checkpoint payload already loaded (``path`` names it in
    errors)."""
    check_payload(payload, path)
    model = model_from_payload(payload, path)
    channels = int(model.config["encoder"]["in_channels"])
    if channels != input_channels(model.config):
        raise UserError(f"{path}: the model expects {channels} input channels per sensor but "
                        f"NormalizationSpec.features gives {input_channels(model.config)} [npho, "
                        "time (, dead flag)]; it is not a regressor checkpoint this xecreco can "
                        "run")
    try:
        normalization = NormalizationSpec.from_dict(payload["normalization"])
        scaling = TargetScaling.from_dict(payload["target_scaling"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: bad normalization/target_scaling in the checkpoint ({exc}); "
                        "re-save it with `xecreco train`") from None
    calibration = calibration_from_payload(payload, path) if energy_calibration else None
    combination = time_combination_from_payload(payload, path) if time_combination else None
    return Member(model, normalization, scaling, str(path), calibration, combination)


def reconstructor_from_checkpoint(path_or_paths, name: str | None = None,
                                  batch_size: int = DEFAULT_BATCH_SIZE,
                                  device: str = "cpu",
                                  energy_calibration: bool = True,
                                  time_combination: bool = True,
                                  pileup_expert: bool = True) -> CheckpointReconstructor:
    """A reconstructor from one checkpoint path, or an ensemble from a list of paths.

    Args:
        path_or_paths: a checkpoint path or a sequence of them (ensemble).
        name: branch prefix (default: the first file's stem, ``_ens<k>`` appended for ensembles).
        batch_size: events per forward pass.
        device: torch device ("cpu", "cuda").
        energy_calibration: apply each checkpoint's stored energy calibration (False: the raw
            network response, as ``xecreco calibrate -r`` fits it).
        time_combination: apply each checkpoint's stored time combination (False: the
            network's own time).
        pileup_expert: a checkpoint holding a pile-up expert becomes the gated pair
            (:mod:`xecreco.models.regressor.gated`); False: its main network alone.
    """
    paths = [str(path_or_paths)] if isinstance(path_or_paths, (str, Path)) else [
        str(p) for p in path_or_paths]
    if not paths:
        raise UserError("no checkpoint given: pass at least one checkpoint path")
    payloads = [load_payload(p) for p in paths]
    members = [member_from_payload(payload, p, energy_calibration, time_combination)
               for payload, p in zip(payloads, paths)]
    name = name or _default_name(paths)
    from xecreco.models.regressor import gated

    if pileup_expert and any(gated.EXPERT_KEY in payload for payload in payloads):
        if len(paths) > 1:
            raise UserError(f"{paths[0]}: checkpoints with a pile-up expert "
                            f"('{gated.EXPERT_KEY}') cannot form an ensemble; pass one of them")
        return gated.gated_from_payload(payloads[0], members[0], paths[0], name, batch_size,
                                        device, energy_calibration, time_combination)
    return CheckpointReconstructor(members, name, batch_size, device)
