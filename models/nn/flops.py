"""Model size and cost: trainable parameters and floating-point operations per event.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on a forward pass (it
counts matrix products and convolutions, 2 FLOPs per multiply-add; element-wise ops such as
norms, activations and softmax are not counted), divided by the number of events in the pass.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from xecreco.geometry import N_SENSORS


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def flops_per_event(model: nn.Module, in_channels: int = 2, events: int = 4) -> float:
    """Forward FLOPs per event of ``model`` on (events, 4760, in_channels) random features."""
    features = torch.randn(events, N_SENSORS, in_channels)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(features)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / events


def model_cost(model: nn.Module, in_channels: int = 2) -> dict:
    """``{"parameters": int, "flops_per_event": float}`` for a model."""
    return {"parameters": count_parameters(model),
            "flops_per_event": flops_per_event(model, in_channels)}
