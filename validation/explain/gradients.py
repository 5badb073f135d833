"""Gradients of the neural regressor's physical outputs with respect to its input features.

For every member network of a
:class:`~xecreco.models.regressor.reconstructor.CheckpointReconstructor` the input features ``x``
(N, 4760, 2) [normalised npho, normalised time] come from the member's own
:class:`~xecreco.normalization.NormalizationSpec`, and the outputs are the physical ones of
:class:`~xecreco.models.regressor.reconstructor.OutputsToPhysical` (destandardised, time
reference, any flight correction and the checkpoint's sensor-time refit included: the raw
sensor times are constants there, so the time's gradient flows through the network's own time,
position and energy), in display units: energy MeV, u, v, w mm, time ps.

- saliency: ``|d output / d x|`` per sensor and channel, averaged over events (output units per
  feature unit);
- gradient x input: ``(x - sentinel) * d output / d x`` summed over both channels, per sensor;
  the sentinel is the feature a missing or dead sensor gets, so this is the first-order change of
  the output when the sensor is switched off. Summed over a face's sensors it is that face's
  contribution; the face sums add up to the sum over all 4760 sensors.

Ensembles: each member's gradients with respect to its own features, averaged over members (the
gradient of the ensemble mean when the members share one normalisation). Events are independent
in these networks (no batch statistics in eval mode), so one backward pass of the summed output
gives every event's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from xecreco.geometry import N_SENSORS, face_ids
from xecreco.models.nn.encoder import FACE_NAMES
from xecreco.validation.explain.occlusion import HEADLINE_OUTPUTS

__all__ = ["DISPLAY_SCALE", "GradientResult", "member_gradients", "gradients", "face_sums"]

#: file units -> display units of the gradient outputs (GeV -> MeV, cm -> mm, ns -> ps).
DISPLAY_SCALE = {"energy": 1000.0, "u": 10.0, "v": 10.0, "w": 10.0, "time": 1000.0}
#: Units of the gradient outputs.
DISPLAY_UNITS = {"energy": "MeV", "u": "mm", "v": "mm", "w": "mm", "time": "ps"}


def _tensor(values):
    return torch.as_tensor(np.asarray(values, dtype=np.float32))


def member_gradients(member, batch, outputs=HEADLINE_OUTPUTS, chunk: int = 128):
    """``{output: (gradient (N, 4760, C), input minus sentinel (N, 4760, C))}`` float32 numpy of
    one member network (display units per feature unit, see the module docstring); C = 2, or 3
    for a dead-flag network (its flag channel's "sentinel" is 0, measured)."""
    model = member.model
    spec = member.normalization
    physics = member.physics
    features, reference = spec.features_and_reference(batch, flag=member.dead_flag)
    reference = np.asarray(reference, dtype=np.float64)
    sentinel = np.zeros(features.shape[-1], dtype=np.float32)
    sentinel[:2] = spec.npho_sentinel, spec.time_sentinel
    device = next(model.parameters()).device
    wanted = [q for q in outputs if q in physics.scalar_targets]
    grads = {q: np.empty(features.shape, dtype=np.float32) for q in wanted}
    uses_vertex = bool(getattr(model, "uses_vertex", False))
    sensors = None
    if physics.time_refit is not None:  # the time is the sensor-time refit's combination
        from xecreco.models.regressor.reconstructor import sensor_inputs
        from xecreco.models.regressor.timerefit import SensorInputs

        sensors = sensor_inputs(batch)
    for start in range(0, len(batch), chunk):
        rows = slice(start, start + chunk)
        x = torch.from_numpy(features[rows]).to(device).requires_grad_(True)
        vertex = None if batch.vertex is None else _tensor(batch.vertex[rows]).to(device)
        with torch.enable_grad():
            raw = model(x, vertex) if uses_vertex else model(x)
            rows_sensors = None if sensors is None else SensorInputs(
                *(v[rows].to(device) for v in sensors))
            phys = physics.member(raw, torch.from_numpy(reference[rows]).float().to(device),
                                  vertex, rows_sensors)
            for i, q in enumerate(wanted):
                (g,) = torch.autograd.grad(phys[q].sum() * DISPLAY_SCALE[q], x,
                                           retain_graph=i < len(wanted) - 1)
                grads[q][rows] = g.detach().cpu().numpy()
    return {q: (grads[q], features - sentinel) for q in wanted}


@dataclass
class GradientResult:
    """Event-averaged gradient summaries of each output.

    Attributes:
        saliency: output -> (4760, 2) mean ``|d output / d x|`` of the npho and time features
            (display units per feature unit).
        grad_x_input: output -> (N, 4760) gradient x input per event and sensor (display units).
        units: output -> display unit.
    """

    saliency: dict
    grad_x_input: dict
    units: dict

    def face_table(self) -> dict:
        """output -> {face name: {"mean", "mean_abs"}, "total": {...}}: per event, the gradient x
        input summed over the face's sensors (and over all sensors), averaged over events
        (signed and absolute), display units."""
        table = {}
        for q, gxi in self.grad_x_input.items():
            sums = face_sums(gxi)
            total = gxi.sum(axis=1, dtype=np.float64)
            entry = {name: {"mean": float(s.mean()), "mean_abs": float(np.abs(s).mean())}
                     for name, s in sums.items()}
            entry["total"] = {"mean": float(total.mean()), "mean_abs": float(np.abs(total).mean())}
            table[q] = entry
        return table


def face_sums(per_sensor: np.ndarray) -> dict[str, np.ndarray]:
    """face name -> (N,) float64 sum over the face's sensors of ``per_sensor`` (N, 4760)."""
    if per_sensor.shape[-1] != N_SENSORS:
        raise ValueError(f"per-sensor values must have {N_SENSORS} columns, got "
                         f"{per_sensor.shape}")
    return {name: per_sensor[:, face_ids(face)].sum(axis=1, dtype=np.float64)
            for face, name in FACE_NAMES.items()}


def gradients(reconstructor, batch, outputs=HEADLINE_OUTPUTS) -> GradientResult:
    """Saliency and gradient x input of a neural reconstructor (averaged over its members)."""
    members = reconstructor.members
    saliency, gxi = {}, {}
    for member in members:
        for q, (grad, inputs) in member_gradients(member, batch, outputs).items():
            s = np.abs(grad[..., :2]).mean(axis=0) / len(members)  # npho and time features
            p = (grad * inputs).sum(axis=2) / len(members)
            saliency[q] = saliency[q] + s if q in saliency else s
            gxi[q] = gxi[q] + p if q in gxi else p
    return GradientResult(saliency, gxi, {q: DISPLAY_UNITS[q] for q in saliency})
