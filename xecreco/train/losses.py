"""Multi-task regression losses on standardised targets.

Scalar targets (energy, time, u, v, w, npileup) are compared in standardised units (stored mean
and scale), so smooth-L1 / Huber ``beta`` is in standard deviations and needs no tiny value.
The direction is compared as a unit vector: ``angular`` is the opening angle (rad), ``cosine`` is
1 - cos. Task weighting is manual (fixed weights) or learned (homoscedastic uncertainty: each task
loss L_i becomes exp(-s_i) L_i + s_i with a learned s_i).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
        direction: ``angular`` or ``cosine``.
        weights: target -> manual weight (default 1).
        weighting: ``manual`` or ``learned``.
        consistency: weight of 1 - cos(pred direction, unit(pred xyz - vertex)).
        affine: target -> (mean, scale) turning standardised u, v, w back into cm (needed by the
            consistency term).
        r_inner: inner radius R (cm) of the (u, v, w) frame.
    """

    def __init__(self, targets, types=None, beta=1.0, direction="angular", weights=None,
                 weighting="manual", consistency=0.0, affine=None, r_inner=64.97):
        super().__init__()
        self.targets = list(targets)
        self.types = {t: (types or {}).get(t, "smooth_l1") for t in self.targets}
        self.beta = float(beta)
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

    def forward(self, outputs: dict, targets: dict, vertex: torch.Tensor | None = None):
        """(total loss, {name: float}) for one batch; outputs/targets as in the model contract."""
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
            else:
                logvar = outputs.get(f"{name}_logvar")
                parts[name] = _scalar_loss(self.types[name], pred, true, self.beta,
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
