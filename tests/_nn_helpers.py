"""Helpers for the neural-model tests: a tiny model config, hand-built checkpoints, fake batches."""

from __future__ import annotations

import torch

from xecreco.io.batch import EventBatch
from xecreco.models.export.onnx import batch_from_raw, sim_like_inputs
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.presets import resolve_model_config
from xecreco.normalization import NormalizationSpec, TargetScaling
from xecreco.train.checkpoint import save_checkpoint

#: A small model (same structure as the cpu preset, narrow layers) to keep tests fast.
TINY = {
    "preset": "cpu",
    "encoder": {"token_dim": 16, "pool_heads": 2, "rect": {"dims": [8, 16]},
                "hex": {"dim": 8, "heads": 2}},
    "fusion": {"heads": 2},
    "head_hidden": 16,
}

SCALING = TargetScaling(
    mean={"energy": 0.05, "u": 0.0, "v": 1.0, "w": 5.0, "time": 40.0, "npileup": 0.3},
    scale={"energy": 0.01, "u": 10.0, "v": 30.0, "w": 6.0, "time": 2.0, "npileup": 0.6},
)


def tiny_config(**changes) -> dict:
    """The resolved tiny config with top-level changes (e.g. ``uncertainty=True``)."""
    return resolve_model_config({**TINY, **changes})


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter (GRN gammas and relative terms included) a random non-zero value,
    so that every part of the network influences the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    return model


def make_checkpoint(path, config: dict | None = None, seed: int = 0, state_dict=None,
                    task: str = "regressor") -> dict:
    """Write a regressor checkpoint in the payload format by hand; returns the payload."""
    config = resolve_model_config(config or TINY)
    torch.manual_seed(seed)
    model = randomise(build_model(config), seed)
    payload = {
        "format": "xecreco-checkpoint", "format_version": 1, "task": task,
        "model_config": config,
        "normalization": NormalizationSpec().to_dict(),
        "target_scaling": SCALING.to_dict(),
        "state_dict": state_dict if state_dict is not None else model.state_dict(),
        "ema_state_dict": None,
        "train_state": {}, "metrics": {}, "xecreco_version": "test",
    }
    save_checkpoint(path, payload)
    return payload


def sim_batch(n: int, seed: int = 0) -> EventBatch:
    """A reader-style batch of simulated-like events (see ``sim_like_inputs``)."""
    npho, time = sim_like_inputs(n, seed)
    return batch_from_raw(npho, time)


def fit_losses(model: torch.nn.Module, inputs: torch.Tensor, loss_fn, steps: int,
               lr: float) -> list[float]:
    """Train ``model`` on one fixed batch with AdamW for ``steps`` steps; the losses, in order
    (``loss_fn(model(inputs))`` returns ``(loss, parts)`` like the masked-model losses)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss, _ = loss_fn(model(inputs))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
