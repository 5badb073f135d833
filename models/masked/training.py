"""Training pieces of the masked-sensor models (data source and loss), used by the ``mae`` and
``inpainter`` tasks (:mod:`xecreco.models.tasks.masked`, which adds the validation metrics):

- data: :class:`MaskedSource`, the trainer's streaming :class:`~xecreco.train.data.RootSource`
  (shuffling, sharding, augmentations) with an event encoder that emits 4-channel features
  [npho, time, valid npho, valid time] and no regression targets (nothing is fitted);
- loss: :class:`MaskedLoss`, smooth-L1 (beta ``loss.beta``, in feature units) of the normalised
  npho over the hidden valid sensors plus that of the normalised time over the hidden sensors
  with a valid time (enough light; smooth-L1 keeps pile-up times far from the event from
  dominating); weights ``loss.weights.npho`` / ``loss.weights.time`` (default 1);
- the network inputs: :func:`xecreco.models.masked.network.masked_inputs`, shared with
  inference.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from xecreco.errors import UserError
from xecreco.models.masked.network import masked_inputs
from xecreco.train.data import RootSource

__all__ = ["MaskedSource", "MaskedLoss"]


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
        if cfg.data.source != "files":
            raise UserError("config key 'data.source': the masked-sensor tasks train on files "
                            "(data.train_files); simulation is for the regressor task")
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
