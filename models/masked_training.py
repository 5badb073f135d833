"""Training pieces of the masked-sensor tasks (``mae`` and ``inpainter``) for :mod:`xecreco.train`.

The trainer talks to a :class:`xecreco.train.tasks.TaskSpec`; :func:`make_task` builds one for
``mae`` or ``inpainter``:

- data: :class:`MaskedSource`, the trainer's streaming :class:`~xecreco.train.data.RootSource`
  (shuffling, sharding, augmentations) with an event encoder that emits 4-channel features
  [npho, time, valid npho, valid time] and no regression targets (nothing is fitted);
- loss: :class:`MaskedLoss`, smooth-L1 (beta ``loss.beta``, in feature units) of the normalised
  npho over the hidden valid sensors plus that of the normalised time over the hidden sensors
  with a valid time (enough light; smooth-L1 keeps pile-up times far from the event from
  dominating); weights ``loss.weights.npho`` / ``loss.weights.time`` (default 1);
- validation metrics (hidden sensors, physical units): ``npho_mae`` (photons), ``npho_rel68``
  (68% quantile of |relative error| for sensors with >= 100 photons), ``npho_rel_bias``,
  ``time_mae_ns``. Use one of them (or ``val_loss``) as ``checkpoint.best_metric``.

The model config stored in checkpoints is :func:`xecreco.models.mae.resolve_masked_config` of
the config's ``model`` section (``preset`` + overrides).
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import nn

from xecreco.geometry.constants import N_SENSORS
from xecreco.train.data import RootSource
from xecreco.train.tasks import TaskSpec

__all__ = ["MaskedSource", "MaskedLoss", "masked_inputs", "make_task", "MIN_REL_NPHO"]

#: Hidden sensors with fewer true photons are left out of the relative npho error.
MIN_REL_NPHO = 100.0


def masked_inputs(spec, batch, out: np.ndarray | None = None) -> np.ndarray:
    """(N, 4760, 4) float32 network input: normalised [npho, time] and the validity flags,
    written into ``out`` when given (e.g. a slot of the training shuffle buffer)."""
    if out is None:
        out = np.empty((len(batch), N_SENSORS, 4), dtype=np.float32)
    spec.features(batch, out=out[..., :2])
    out[..., 2] = batch.valid_npho
    out[..., 3] = batch.valid_time
    return out


class _MaskingEncoder:
    """EventBatch -> {"features": 4-channel inputs, "targets": {}} (the trainer's pool format)."""

    def __init__(self, spec):
        self.spec = spec

    def encode(self, batch, keep_truth=False, energy_factor=None, features_out=None) -> dict:
        """``features_out`` (optional (N, 4760, 4) float32, a slot of the trainer's shuffle
        buffer) receives the inputs in place, as for the regressor's encoder."""
        return {"features": masked_inputs(self.spec, batch, out=features_out), "targets": {}}


class MaskedSource(RootSource):
    """:class:`RootSource` for the masked-sensor tasks: same files, shards, shuffling and
    augmentations, 4-channel features, no targets and no target standardisation."""

    def __init__(self, cfg, target_scaling=None):
        super().__init__(cfg.data, cfg.augment, [], cfg.normalization, seed=cfg.run.seed,
                         target_scaling=target_scaling)
        self.encoder = _MaskingEncoder(self.spec)

    def _fit_scaling(self):
        from xecreco.normalization import TargetScaling

        return TargetScaling.fit({})


class MaskedLoss(nn.Module):
    """Masked reconstruction loss on normalised features; returns (loss, {part: float})."""

    def __init__(self, npho_weight: float = 1.0, time_weight: float = 1.0, beta: float = 1.0):
        super().__init__()
        self.beta = float(beta)
        self.npho_weight = float(npho_weight)
        self.time_weight = float(time_weight)

    def forward(self, outputs: dict, batch=None):
        pred, target, mask = outputs["sensors"], outputs["target"], outputs["mask"]
        pred = pred.float()
        sel_n = mask & outputs["valid_npho"]
        sel_t = mask & outputs["valid_time"]
        err = F.smooth_l1_loss(pred, target.float(), reduction="none", beta=self.beta)
        npho = (err[..., 0] * sel_n).sum() / sel_n.sum().clamp(min=1)
        time = (err[..., 1] * sel_t).sum() / sel_t.sum().clamp(min=1)
        loss = self.npho_weight * npho + self.time_weight * time
        return loss, {"npho": float(npho.detach()), "time": float(time.detach())}


def _eval_batch(outputs, batch, source) -> dict:
    spec = source.spec
    pred = outputs["sensors"].float().cpu().numpy()
    target = outputs["target"].float().cpu().numpy()
    mask = outputs["mask"].cpu().numpy()
    valid_t = outputs["valid_time"].cpu().numpy()
    npho_pred = spec.npho_inverse(pred[..., 0][mask])
    npho_true = spec.npho_inverse(target[..., 0][mask])
    sel_t = mask & valid_t
    time_err = (pred[..., 1][sel_t] - target[..., 1][sel_t]) * spec.time_scale_ns
    return {"npho_err": (npho_pred - npho_true).astype(np.float64),
            "npho_true": npho_true.astype(np.float64), "time_err_ns": time_err.astype(np.float64)}


def _metrics(collected: dict, cfg) -> dict:
    err = collected.get("npho_err", np.zeros(0))
    true = collected.get("npho_true", np.zeros(0))
    terr = collected.get("time_err_ns", np.zeros(0))
    bright = true >= MIN_REL_NPHO
    rel = err[bright] / true[bright]
    return {
        "npho_mae": float(np.mean(np.abs(err))) if len(err) else 0.0,
        "npho_rel68": float(np.quantile(np.abs(rel), 0.68)) if len(rel) else 0.0,
        "npho_rel_bias": float(np.mean(rel)) if len(rel) else 0.0,
        "time_mae_ns": float(np.mean(np.abs(terr))) if len(terr) else 0.0,
    }


def make_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``mae`` or ``inpainter``."""
    from xecreco.models.mae import build_masked_model, resolve_masked_config

    def model_config(cfg) -> dict:
        return resolve_masked_config(cfg.model_config(), task=name)

    def build_source(cfg, target_scaling=None):
        return MaskedSource(cfg, target_scaling)

    def build_loss(cfg, source):
        weights = cfg.loss.weights
        return MaskedLoss(weights.get("npho", 1.0), weights.get("time", 1.0), cfg.loss.beta)

    return TaskSpec(name, build_masked_model, build_source, build_loss, _eval_batch, _metrics,
                    model_config)

