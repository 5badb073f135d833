"""Exponential moving average of model weights."""

from __future__ import annotations

import torch
from torch import nn


class ModelEma:
    """Keeps ``shadow = d * shadow + (1 - d) * weights`` after every optimizer step.

    With ``warmup`` the decay is ``min(decay, (1 + n) / (10 + n))`` after n updates, so early
    averages are not dominated by the random initialisation. Only trainable parameters are
    averaged; buffers and frozen parameters (``requires_grad`` False, e.g. ``model.trainable``)
    are copied, so they stay bit-identical (averaging a constant moves it by rounding).
    The shadow lives in float32 on the model's device.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if value.dtype.is_floating_point and name in trainable:
                shadow.mul_(d).add_(value.detach(), alpha=1.0 - d)
            else:
                shadow.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        """The averaged weights (a model state dict)."""
        return self.shadow

    def train_state(self) -> dict:
        return {"updates": self.updates}

    def load(self, shadow: dict, train_state: dict | None = None) -> None:
        for name, value in shadow.items():
            self.shadow[name].copy_(value)
        if train_state:
            self.updates = int(train_state.get("updates", 0))
