"""The neural dead-channel inpainter (an :class:`~xecreco.models.base.Inpainter`).

A :class:`~xecreco.models.masked.network.MaskedSensorModel` trained with realistic dead-channel patterns
(``task.name: inpainter``; an MAE checkpoint works too) predicts the normalised npho and time of
every sensor; :class:`NeuralInpainter` keeps the measured values of valid sensors, replaces the
invalid ones by the predictions (npho through the inverse of the checkpoint's normalisation, time
relative to the event's reference time), marks them valid (time only from 50 photons on, like
the reader) and records them in ``extras["inpainted"]``.

Use it through a checkpoint path (``xecreco inpaint -m run/best.pt``, which the registry routes to
:func:`inpainter_from_checkpoint`) or, when this install ships one, the registered name
``default`` (the bundled ``models/bundled/default_inpainter.pt``, the ``local`` preset).
The training task is :mod:`xecreco.models.tasks.masked`.
"""

from __future__ import annotations

import numpy as np
import torch

from xecreco.errors import UserError
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD
from xecreco.models.base import EventBatch
from xecreco.models.masked.network import build_masked_model, masked_inputs, resolve_masked_config
from xecreco.normalization import NormalizationSpec

__all__ = ["NeuralInpainter", "inpainter_from_checkpoint"]

#: The inpainter shipped with the package, registered as ``default`` when present.
_TASKS = ("inpainter", "mae")


class NeuralInpainter:
    """Fill invalid sensors with a masked-sensor network's predictions.

    Args:
        model: a :class:`~xecreco.models.masked.network.MaskedSensorModel` (put in eval mode here).
        normalization: the :class:`NormalizationSpec` it was trained with.
        name: the inpainter's name (recorded in output provenance).
        batch_size: events per forward pass (bounds memory).
        min_time_npho: filled sensors below this many photons get no valid time.
        device: torch device for the forward passes.
    """

    def __init__(self, model, normalization: NormalizationSpec, name: str = "inpainter",
                 batch_size: int = 256, min_time_npho: float = DEFAULT_TIME_NPHO_THRESHOLD,
                 device: str | torch.device = "cpu"):
        self.model = model.eval().to(device)
        self.spec = normalization
        self.name = name
        self.batch_size = int(batch_size)
        self.min_time_npho = float(min_time_npho)
        self.device = torch.device(device)

    @torch.no_grad()
    def predict(self, batch: EventBatch) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (npho photons, time s) of every sensor, each (N, 4760) float64."""
        inputs = masked_inputs(self.spec, batch)
        preds = []
        for start in range(0, len(batch), self.batch_size):
            x = torch.from_numpy(inputs[start:start + self.batch_size]).to(self.device)
            none = torch.zeros(x.shape[:2], dtype=torch.bool, device=self.device)
            preds.append(self.model(x, mask=none)["sensors"].float().cpu().numpy())
        pred = np.concatenate(preds) if preds else np.zeros((0, inputs.shape[1], 2), np.float32)
        npho = self.spec.npho_inverse(pred[..., 0].astype(np.float64))
        reference = self.spec.time_reference_ns(batch)[:, None]
        time_s = self.spec.time_inverse(pred[..., 1], reference) * 1e-9
        return npho, time_s

    def inpaint(self, batch: EventBatch) -> EventBatch:
        """A copy of ``batch`` with the invalid sensors filled (see the module doc)."""
        fill = ~np.asarray(batch.valid_npho, dtype=bool)
        extras = dict(batch.extras)
        previous = extras.get("inpainted")
        done = np.zeros_like(fill) if previous is None else np.asarray(previous, dtype=bool)
        if not fill.any():
            extras["inpainted"] = done.copy()
            return batch.replace(extras=extras)
        npho_pred, time_pred = self.predict(batch)
        npho = np.where(fill, npho_pred, batch.npho).astype(np.float32)
        time = np.where(fill, time_pred, batch.time).astype(np.float32)
        valid_time = batch.valid_time | (fill & (npho_pred >= self.min_time_npho))
        time = np.where(valid_time, time, 0.0).astype(np.float32)
        extras["inpainted"] = done | fill
        return batch.replace(npho=npho, time=time, valid_npho=np.ones_like(fill),
                             valid_time=valid_time, extras=extras)


def inpainter_from_checkpoint(path, name: str | None = None, **kwargs) -> NeuralInpainter:
    """A :class:`NeuralInpainter` from an ``inpainter`` (or ``mae``) training checkpoint."""
    from xecreco.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path)
    task = ckpt.get("task")
    if task not in _TASKS:
        raise UserError(f"checkpoint '{path}' is a '{task}' checkpoint; an inpainter needs an "
                        "'inpainter' or 'mae' checkpoint (xecreco train with task.name inpainter)")
    try:
        config = resolve_masked_config(ckpt["model_config"], task=task)
        model = build_masked_model(config)
        weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
        model.load_state_dict(weights)
        spec = NormalizationSpec.from_dict(ckpt["normalization"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"checkpoint '{path}' does not match the inpainter network "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return NeuralInpainter(model, spec, name=name or "inpainter", **kwargs)
