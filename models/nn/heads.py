"""Task heads: small MLPs from the fused event representation to each regression target.

Scalar heads ("energy", "time", "u", "v", "w", "npileup", "pileup_energy") give one standardised
value per event, the "pileup" head one logit (its sigmoid: the probability of >= 5 MeV of
in-gate pile-up);
the "direction" head gives a unit 3-vector. With uncertainties on, every head also gives a
log-variance ``<name>_logvar`` (N,) for a Gaussian negative log-likelihood: of the standardised
target for scalar heads, of each unit-vector component for the direction head. With quantiles
on, every scalar head but "pileup" also gives ``<name>_lo`` and ``<name>_hi`` (N,), its standardised
15.87 % and 84.13 % quantiles (a 68.27 % interval; trained with the pinball loss of
:func:`xecreco.train.losses.quantile_loss`): value - softplus(a) and value + softplus(b) around
the detached central value, so the interval always contains it and its training does not move
the central value. ``dropout`` > 0 drops hidden units (training and MC-dropout inference).
"""

from __future__ import annotations

import torch
from torch import nn

#: Every head the regressor knows, with its output width (before the optional log-variance).
HEAD_WIDTHS = {"energy": 1, "time": 1, "u": 1, "v": 1, "w": 1, "direction": 3, "npileup": 1,
               "pileup": 1, "pileup_energy": 1}
#: Quantile levels of ``<name>_lo`` / ``<name>_hi``: the Gaussian +-1 sigma interval.
QUANTILE_LEVELS = (0.15865525393145707, 0.8413447460685429)

# Lower bound of the direction norm before normalising (keeps the division finite).
_MIN_NORM = 1e-6


class TaskHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear from (N, D) to one task's outputs.

    Returns ``{name: (N,) or (N, 3)}`` plus ``{name + "_logvar": (N,)}`` when ``uncertainty``.
    The direction output is divided by its norm, so it is a unit vector. Heads compute in fp32
    (autocast off), so their outputs are fp32 also in a bf16-autocast forward.
    """

    def __init__(self, name: str, in_dim: int, hidden: int, uncertainty: bool = False,
                 dropout: float = 0.0, quantiles: bool = False):
        super().__init__()
        if name not in HEAD_WIDTHS:
            raise ValueError(f"unknown head '{name}': use one of {', '.join(HEAD_WIDTHS)}")
        self.name = name
        self.width = HEAD_WIDTHS[name]
        self.uncertainty = uncertainty
        self.quantiles = bool(quantiles) and name not in ("direction", "pileup")
        self.net = nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden),
            nn.GELU(),
            nn.Linear(hidden, self.width + int(uncertainty) + 2 * int(self.quantiles)),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        # fp32 even under bf16 autocast: the heads cost nothing, and a bf16 output (8-bit
        # mantissa) would add about 0.5 % rounding to an energy of two standard deviations
        with torch.autocast(x.device.type, enabled=False):
            if self.dropout is None:
                out = self.net(x.float())
            else:
                out = self.net[3](self.dropout(self.net[:3](x.float())))
        value = out[:, : self.width]
        if self.name == "direction":
            norm = torch.sqrt(torch.sum(value * value, dim=1, keepdim=True))
            value = value / torch.clamp(norm, min=_MIN_NORM)
        else:
            value = value[:, 0]
        result = {self.name: value}
        if self.uncertainty:
            result[self.name + "_logvar"] = out[:, self.width]
        if self.quantiles:
            k = self.width + int(self.uncertainty)
            centre = value.detach()
            result[self.name + "_lo"] = centre - nn.functional.softplus(out[:, k])
            result[self.name + "_hi"] = centre + nn.functional.softplus(out[:, k + 1])
        return result
