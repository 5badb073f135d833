"""The masked-sensor training tasks: ``mae`` (pretraining, random masks) and ``inpainter``
(realistic dead-channel masks), for :mod:`xecreco.train`.

Data and loss: :class:`~xecreco.models.masked.training.MaskedSource` and
:class:`~xecreco.models.masked.training.MaskedLoss`; network:
:func:`~xecreco.models.masked.network.build_masked_model`. Validation metrics (hidden sensors,
physical units): ``npho_mae`` (photons), ``npho_rel68`` (68% quantile of |relative error| for
sensors with >= 100 photons), ``npho_rel_bias``, ``time_mae_ns``. Use one of them (or
``val_loss``) as ``checkpoint.best_metric``. The model config stored in checkpoints is
:func:`~xecreco.models.masked.network.resolve_masked_config` of the config's ``model`` section
(``preset`` + overrides).
"""

from __future__ import annotations

import numpy as np

from xecreco.models.masked.network import build_masked_model, resolve_masked_config
from xecreco.models.masked.training import MaskedLoss, MaskedSource
from xecreco.train.tasks import TaskSpec

__all__ = ["make_task", "mae_task", "inpainter_task", "MIN_REL_NPHO"]

#: Hidden sensors with fewer true photons are left out of the relative npho error.
MIN_REL_NPHO = 100.0


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

    def model_config(cfg) -> dict:
        return resolve_masked_config(cfg.model_config(), task=name)

    def build_source(cfg, target_scaling=None):
        return MaskedSource(cfg, target_scaling)

    def build_loss(cfg, source):
        weights = cfg.loss.weights
        return MaskedLoss(weights.get("npho", 1.0), weights.get("time", 1.0), cfg.loss.beta)

    return TaskSpec(name, build_masked_model, build_source, build_loss, _eval_batch, _metrics,
                    model_config)


def mae_task() -> TaskSpec:
    """``task.name: mae`` (entry point of the ``xecreco.tasks`` group)."""
    return make_task("mae")


def inpainter_task() -> TaskSpec:
    """``task.name: inpainter`` (entry point of the ``xecreco.tasks`` group)."""
    return make_task("inpainter")
