"""Task heads: small MLPs from the fused event representation to each regression target.

Scalar heads ("energy", "time", "u", "v", "w", "npileup") give one standardised value per event;
the "direction" head gives a unit 3-vector. With uncertainties on, every head also gives a
log-variance ``<name>_logvar`` (N,) for a Gaussian negative log-likelihood: of the standardised
target for scalar heads, of each unit-vector component for the direction head.
"""

from __future__ import annotations

import torch
from torch import nn

#: Every head the regressor knows, with its output width (before the optional log-variance).
HEAD_WIDTHS = {"energy": 1, "time": 1, "u": 1, "v": 1, "w": 1, "direction": 3, "npileup": 1}

# Lower bound of the direction norm before normalising (keeps the division finite).
_MIN_NORM = 1e-6


class TaskHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear from (N, D) to one task's outputs.

    Returns ``{name: (N,) or (N, 3)}`` plus ``{name + "_logvar": (N,)}`` when ``uncertainty``.
    The direction output is divided by its norm, so it is a unit vector. Heads compute in fp32
    (autocast off), so their outputs are fp32 also in a bf16-autocast forward.
    """

    def __init__(self, name: str, in_dim: int, hidden: int, uncertainty: bool = False):
        super().__init__()
        if name not in HEAD_WIDTHS:
            raise ValueError(f"unknown head '{name}': use one of {', '.join(HEAD_WIDTHS)}")
        self.name = name
        self.width = HEAD_WIDTHS[name]
        self.uncertainty = uncertainty
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, self.width + int(uncertainty)),
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # fp32 even under bf16 autocast: the heads cost nothing, and a bf16 output (8-bit
        # mantissa) would add about 0.5 % rounding to an energy of two standard deviations
        with torch.autocast(x.device.type, enabled=False):
            out = self.net(x.float())
        value = out[:, : self.width]
        if self.name == "direction":
            norm = torch.sqrt(torch.sum(value * value, dim=1, keepdim=True))
            value = value / torch.clamp(norm, min=_MIN_NORM)
        else:
            value = value[:, 0]
        result = {self.name: value}
        if self.uncertainty:
            result[self.name + "_logvar"] = out[:, self.width]
        return result
