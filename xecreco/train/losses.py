"""Multi-task regression losses on standardised targets.

Scalar targets (energy, time, u, v, w, npileup) are compared in standardised units (stored mean
and scale), so smooth-L1 / Huber ``beta`` is in standard deviations and needs no tiny value.
The direction is compared as a unit vector: ``angular`` is the opening angle (rad), ``cosine`` is
1 - cos. The binary ``pileup`` target (0 or 1, :mod:`xecreco.train.targets`) is trained with the
binary cross-entropy on the network's logit (``binary_cross_entropy_with_logits``), whatever
``types`` says; its ``pileup_logvar``, if any, is unused. Task weighting is manual (fixed
weights) or learned (homoscedastic uncertainty: each task loss L_i becomes exp(-s_i) L_i + s_i
with a learned s_i).

Physics-informed terms (:class:`PhysicsTerms`, off by default; ``loss.timing`` and
``loss.energy_conservation`` in the training config): timing consistency (no sensor may fire
before the light from the predicted emission time and first-interaction point could reach it,
:func:`timing_violation`, ns^2) and energy conservation (the predicted energy stays within a
tolerance of the energy the collected light implies, :func:`energy_violation`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xecreco.errors import UserError
from xecreco.geometry.constants import (
    LXE_LIGHT_SPEED_CM_PER_NS,
    R_INNER,
    SPEED_OF_LIGHT_CM_PER_NS,
    TARGET_CENTRE_CM,
)

SCALAR_TARGETS = ("energy", "time", "u", "v", "w", "npileup")


def angular_distance(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Opening angle (rad) between direction vectors (..., 3); stable near 0 and pi."""
    pred = F.normalize(pred, dim=-1, eps=1e-8)
    true = F.normalize(true, dim=-1, eps=1e-8)
    cross = torch.linalg.cross(pred, true, dim=-1)
    sin = torch.sqrt((cross * cross).sum(-1) + eps)
    cos = (pred * true).sum(-1)
    return torch.atan2(sin, cos)


def uvw_to_xyz_torch(uvw: torch.Tensor, r_inner: float) -> torch.Tensor:
    """Differentiable (u, v, w) -> (x, y, z), cm: x = -(w+R) cos(v/R), y = (w+R) sin(v/R), z = u.

    The torch twin of :func:`xecreco.geometry.uvw_to_xyz` (physics.md section 1), for losses.
    """
    u, v, w = uvw.unbind(-1)
    radius = w + r_inner
    phi = v / r_inner
    return torch.stack((-radius * torch.cos(phi), radius * torch.sin(phi), u), dim=-1)


#: quantile levels of the ``<name>_lo`` / ``<name>_hi`` outputs (the Gaussian +-1 sigma interval)
QUANTILE_LEVELS = (0.15865525393145707, 0.8413447460685429)


def pinball(pred: torch.Tensor, true: torch.Tensor, level: float) -> torch.Tensor:
    """Mean pinball (quantile) loss of ``pred`` as the ``level`` quantile of ``true``:
    max(level (t - p), (level - 1)(t - p)); minimal when ``pred`` is that quantile."""
    diff = true - pred
    return torch.maximum(level * diff, (level - 1.0) * diff).mean()


def quantile_loss(lo: torch.Tensor, hi: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Pinball losses of the 15.87 % and 84.13 % quantiles (a 68.27 % interval; in the target's
    standardised units)."""
    return pinball(lo, true, QUANTILE_LEVELS[0]) + pinball(hi, true, QUANTILE_LEVELS[1])


def _scalar_loss(kind: str, pred, true, beta: float, logvar=None):
    if kind == "smooth_l1":
        return F.smooth_l1_loss(pred, true, beta=beta)
    if kind == "huber":
        return F.huber_loss(pred, true, delta=beta)
    if kind == "mse":
        return F.mse_loss(pred, true)
    if kind == "gaussian_nll":
        if logvar is None:
            raise ValueError("gaussian_nll needs the model's '<target>_logvar' output "
                             "(enable uncertainty outputs in the model config)")
        logvar = logvar.clamp(-12.0, 12.0)
        return 0.5 * (logvar + (pred - true) ** 2 * torch.exp(-logvar)).mean()
    raise ValueError(f"unknown loss type {kind!r}")


class RegressionLoss(nn.Module):
    """Weighted sum of per-target losses (plus an optional angle-position consistency term).

    Args:
        targets: trained targets (names of :data:`xecreco.train.config.TARGET_UNITS`).
        types: target -> loss type (default smooth_l1) for scalar targets.
        beta: smooth-L1 beta / Huber delta (standard deviations).
        target_beta: target -> beta overriding ``beta`` for that target.
        direction: ``angular`` or ``cosine``.
        weights: target -> manual weight (default 1).
        weighting: ``manual`` or ``learned``.
        consistency: weight of 1 - cos(pred direction, unit(pred xyz - vertex)).
        affine: target -> (mean, scale) turning standardised u, v, w back into cm (needed by the
            consistency term).
        r_inner: inner radius R (cm) of the (u, v, w) frame.
        physics: optional :class:`PhysicsTerms` (timing consistency, energy conservation),
            evaluated when ``forward`` is given the input features.
    """

    def __init__(self, targets, types=None, beta=1.0, direction="angular", weights=None,
                 target_beta=None,
                 weighting="manual", consistency=0.0, affine=None, r_inner=R_INNER, physics=None):
        super().__init__()
        self.physics = physics
        self.targets = list(targets)
        self.types = {t: (types or {}).get(t, "smooth_l1") for t in self.targets}
        if "pileup" in self.types:
            self.types["pileup"] = "bce"
        self.beta = float(beta)
        self.target_beta = {t: float((target_beta or {}).get(t, beta)) for t in self.targets}
        self.direction = direction
        self.weights = {t: float((weights or {}).get(t, 1.0)) for t in self.targets}
        self.weighting = weighting
        self.consistency = float(consistency)
        self.affine = dict(affine or {})
        self.r_inner = float(r_inner)
        if weighting == "learned":
            self.log_vars = nn.Parameter(torch.zeros(len(self.targets)))
        else:
            self.register_parameter("log_vars", None)

    def forward(self, outputs: dict, targets: dict, vertex: torch.Tensor | None = None,
                features: torch.Tensor | None = None):
        """(total loss, {name: float}) for one batch; outputs/targets as in the model contract,
        ``features`` the batch's input features (N, 4760, C) for the physics terms."""
        parts: dict[str, torch.Tensor] = {}
        for name in self.targets:
            pred = outputs[name].float()
            true = targets[name].float()
            if name == "direction":
                angle = angular_distance(pred, true)
                if self.direction == "angular":
                    parts[name] = angle.mean()
                else:
                    parts[name] = (1 - torch.cos(angle)).mean()
            elif name == "pileup":
                parts[name] = F.binary_cross_entropy_with_logits(pred, true)
            else:
                logvar = outputs.get(f"{name}_logvar")
                parts[name] = _scalar_loss(self.types[name], pred, true, self.target_beta[name],
                                           None if logvar is None else logvar.float())
        total = outputs[self.targets[0]].new_zeros((), dtype=torch.float32)
        for i, name in enumerate(self.targets):
            if self.log_vars is not None:
                total = total + torch.exp(-self.log_vars[i]) * parts[name] + self.log_vars[i]
            else:
                total = total + self.weights[name] * parts[name]
        if self.consistency > 0 and vertex is not None:
            parts["consistency"] = self._consistency(outputs, vertex)
            total = total + self.consistency * parts["consistency"]
        for name in self.targets:  # 68 % intervals of models with quantile outputs
            if f"{name}_lo" in outputs and f"{name}_hi" in outputs:
                key = f"{name}_quantile"
                parts[key] = quantile_loss(outputs[f"{name}_lo"].float(),
                                           outputs[f"{name}_hi"].float(), targets[name].float())
                total = total + self.weights[name] * parts[key]
        if self.physics is not None and features is not None:
            terms = self.physics(outputs, features, vertex)
            parts.update(terms)
            total = total + self.physics.weighted(terms)
        # Keep every output in the graph (DDP needs a gradient, possibly 0, for every parameter).
        for name, value in outputs.items():
            if name not in self.targets and torch.is_tensor(value) and value.requires_grad:
                total = total + 0.0 * value.float().sum()
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def _consistency(self, outputs, vertex):
        uvw = []
        for name in ("u", "v", "w"):
            mean, scale = self.affine[name]
            uvw.append(outputs[name].float() * scale + mean)
        xyz = uvw_to_xyz_torch(torch.stack(uvw, dim=-1), self.r_inner)
        towards = F.normalize(xyz - vertex.float(), dim=-1, eps=1e-6)
        pred = F.normalize(outputs["direction"].float(), dim=-1, eps=1e-6)
        return (1 - (towards * pred).sum(-1)).mean()


# ------------------------------------------------------------------------- physics-informed terms


def timing_violation(t_emit_ns: torch.Tensor, xyz_cm: torch.Tensor, vertex_cm: torch.Tensor,
                     sensor_time_ns: torch.Tensor, sensor_valid: torch.Tensor,
                     sensor_xyz_cm: torch.Tensor, light_speed_cm_per_ns: float,
                     tolerance_ns: float) -> torch.Tensor:
    """Timing-consistency (causality) penalty, ns^2.

    A photon emitted at the vertex at ``t_emit`` flies at c to its first interaction ``xyz``;
    the scintillation light reaches sensor i at ``v_eff`` no earlier than
    ``a_i = t_emit + |xyz - vertex| / c + |x_i - xyz| / v_eff`` (physics.md section 5: the
    constant-fraction pick-off adds a positive delay, the timing noise a spread). The penalty is
    ``max(0, a_i - t_i - tolerance)^2`` averaged over the sensors with a valid time, then over
    the events (events without one contribute 0). ``tolerance_ns`` absorbs the timing noise and
    the shower extent (light from deposits beyond ``xyz`` can arrive up to ~1 ns earlier).

    Shapes: t_emit (N,), xyz and vertex (N, 3), sensor_time and sensor_valid (N, S), sensor_xyz
    (S, 3). Times in ns relative to any common per-event origin (e.g. the time reference of the
    inputs), lengths in cm.
    """
    flight = torch.linalg.vector_norm(xyz_cm - vertex_cm, dim=-1) / SPEED_OF_LIGHT_CM_PER_NS
    path = torch.linalg.vector_norm(sensor_xyz_cm.unsqueeze(0) - xyz_cm.unsqueeze(1), dim=-1)
    arrival = (t_emit_ns + flight).unsqueeze(1) + path / light_speed_cm_per_ns
    excess = torch.relu(arrival - sensor_time_ns - tolerance_ns)
    valid = sensor_valid.to(excess.dtype)
    per_event = (excess.square() * valid).sum(1) / valid.sum(1).clamp_min(1.0)
    return per_event.mean()


def energy_violation(energy_gev: torch.Tensor, light_photons: torch.Tensor, gain_gev_per_photon,
                     tolerance: float) -> torch.Tensor:
    """Energy-conservation penalty, dimensionless.

    The deposited energy turns into scintillation light in proportion (46,000 photons/MeV,
    physics.md section 2), of which a position-dependent fraction reaches the sensors, so the
    collected light S (photons, summed over the valid sensors) estimates the energy as
    ``gain x S`` (GeV; ``gain`` fitted on training events). The penalty is
    ``max(0, |E / (gain S) - 1| - tolerance)^2`` averaged over the events with light: deviations
    within ``tolerance`` (the spread of the collection fraction with position) cost nothing.
    Shapes: energy and light (N,).
    """
    estimate = light_photons * gain_gev_per_photon
    lit = (estimate > 0).to(energy_gev.dtype)
    ratio = energy_gev / estimate.clamp_min(1e-12)
    excess = torch.relu((ratio - 1.0).abs() - tolerance)
    return (excess.square() * lit).sum() / lit.sum().clamp_min(1.0)


def collected_light(features: torch.Tensor, npho_scheme: str, npho_scale: float) -> torch.Tensor:
    """(N,) photons summed over the sensors, from the npho feature (channel 0, ``npho_scheme``
    of :mod:`xecreco.normalization`; the invalid-sensor sentinel counts 0)."""
    from xecreco.normalization import scaled_npho

    npho = torch.clamp(scaled_npho(features[..., 0].float(), npho_scheme), min=0.0) * npho_scale
    return npho.sum(-1)


def fit_light_gain(features: torch.Tensor, energy_gev, npho_scheme: str,
                   npho_scale: float) -> float:
    """Median of true energy / collected light (GeV per photon) over events with light."""
    light = collected_light(features, npho_scheme, npho_scale).double()
    energy = torch.as_tensor(energy_gev, dtype=torch.float64)
    lit = light > 0
    if not bool(lit.any()):
        raise UserError("config key 'loss.energy_conservation': no light in the calibration "
                        "events to fit the light gain; check the training files' npho branch "
                        "or set loss.light_gain")
    return float(torch.median(energy[lit] / light[lit]))


class PhysicsTerms(nn.Module):
    """The optional physics-informed loss terms of the regressor (off unless a weight is > 0).

    Args:
        normalization: the :class:`xecreco.normalization.NormalizationSpec` of the features (to
            turn the npho and time channels back into photons and ns).
        affine: target -> (mean, scale) of the standardised targets (energy, time, u, v, w).
        timing: weight of :func:`timing_violation` (needs targets time, u, v, w).
        timing_tolerance_ns: its tolerance (ns).
        energy: weight of :func:`energy_violation` (needs the energy target).
        energy_tolerance: its relative tolerance.
        light_gain: GeV per collected photon (a persistent buffer, so it travels with the loss
            state on resume).
        sensor_xyz_cm: (4760, 3) sensor positions (cm), default the design geometry.
        light_speed_cm_per_ns: effective light speed in the xenon (default the simulation's).
        r_inner: inner radius R (cm) of the (u, v, w) frame.
    """

    def __init__(self, normalization, affine: dict, timing: float = 0.0,
                 timing_tolerance_ns: float = 2.0, energy: float = 0.0,
                 energy_tolerance: float = 0.1, light_gain: float = 0.0, sensor_xyz_cm=None,
                 light_speed_cm_per_ns: float = LXE_LIGHT_SPEED_CM_PER_NS,
                 r_inner: float = R_INNER):
        super().__init__()
        self.spec = normalization
        self.affine = dict(affine)
        self.timing, self.energy = float(timing), float(energy)
        self.timing_tolerance_ns = float(timing_tolerance_ns)
        self.energy_tolerance = float(energy_tolerance)
        self.light_speed = float(light_speed_cm_per_ns)
        self.r_inner = float(r_inner)
        if sensor_xyz_cm is None:
            from xecreco.geometry import design_geometry

            sensor_xyz_cm = design_geometry().position
        xyz = torch.tensor(np.array(sensor_xyz_cm), dtype=torch.float32)
        self.register_buffer("sensor_xyz", xyz, persistent=False)
        self.register_buffer("light_gain", torch.tensor(float(light_gain), dtype=torch.float64))

    def _physical(self, outputs: dict, name: str) -> torch.Tensor:
        mean, scale = self.affine[name]
        return outputs[name].float() * scale + mean

    def forward(self, outputs: dict, features: torch.Tensor,
                vertex: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """{"timing": ns^2, "energy_conservation": dimensionless} for the enabled terms."""
        parts = {}
        if self.timing > 0:
            spec = self.spec
            t_feature = features[..., 1].float()
            valid = t_feature != spec.time_sentinel
            sensor_time = t_feature * spec.time_scale_ns + spec.time_shift_ns
            uvw = torch.stack([self._physical(outputs, n) for n in ("u", "v", "w")], dim=-1)
            xyz = uvw_to_xyz_torch(uvw, self.r_inner)
            if vertex is None:  # the target centre
                vertex = xyz.new_tensor(TARGET_CENTRE_CM).expand_as(xyz)
            vertex = torch.where(torch.isfinite(vertex), vertex.float(), torch.zeros_like(xyz))
            parts["timing"] = timing_violation(
                self._physical(outputs, "time"), xyz, vertex, sensor_time, valid,
                self.sensor_xyz.to(xyz.device), self.light_speed, self.timing_tolerance_ns)
        if self.energy > 0:
            light = collected_light(features, self.spec.npho_scheme, self.spec.npho_scale)
            parts["energy_conservation"] = energy_violation(
                self._physical(outputs, "energy"), light, self.light_gain.float(),
                self.energy_tolerance)
        return parts

    def weighted(self, parts: dict) -> torch.Tensor:
        """Sum of the enabled terms times their weights."""
        return (self.timing * parts.get("timing", 0.0)
                + self.energy * parts.get("energy_conservation", 0.0))
