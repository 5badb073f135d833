"""Training tasks: what model, data, loss and validation metrics a config's ``task.name`` means.

The training loop only talks to a :class:`TaskSpec`. ``regressor`` is built in; other tasks (MAE
pretraining, the inpainter) register themselves with :func:`register_task` from their own modules
(listed in :data:`TASK_MODULES`, imported on first use so the core never imports the models at
import time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from xecreco.errors import UserError
from xecreco.train.losses import RegressionLoss
from xecreco.train.metrics import physics_metrics


@dataclass
class TaskSpec:
    """The pieces of one training task.

    build_model(model_config: dict) -> nn.Module.
    build_source(cfg: TrainConfig, target_scaling: dict | None) -> a batch source (see
        :class:`xecreco.train.data.RootSource` for the interface: ``normalization``,
        ``target_scaling``, ``steps_per_epoch(world)``, ``train_batches(epoch, rank, world)``,
        ``val_batches(rank, world)``, ``to_physical(name, values)``, ``affine(name)``).
    build_loss(cfg, source) -> nn.Module with ``(outputs, batch) -> (loss, {part: float})``.
    eval_batch(outputs, batch, source) -> {key: numpy array} collected over validation;
        ``outputs`` is the network's output dict for ``batch`` (the loop's one forward pass,
        :func:`model_outputs`, vertex included for vertex-aware models).
    metrics(collected: {key: concatenated array}, cfg) -> {metric: float}.
    model_config(cfg) -> the complete model config dict stored in checkpoints (default: the
        config's ``{"preset": ..., **overrides}`` unchanged).
    prepare_model(model, source) -> None: data-dependent set-up of a fresh model before the
        first step (not on resume: the checkpoint holds its result); optional.
    """

    name: str
    build_model: Callable
    build_source: Callable
    build_loss: Callable
    eval_batch: Callable
    metrics: Callable
    model_config: Callable = None
    prepare_model: Callable = None

    def resolved_model_config(self, cfg) -> dict:
        return self.model_config(cfg) if self.model_config is not None else cfg.model_config()


_TASKS: dict[str, TaskSpec] = {}

#: Modules that register further tasks when imported (absent ones are skipped).
TASK_MODULES = ("xecreco.models.mae", "xecreco.models.inpainter")


def register_task(spec: TaskSpec) -> None:
    """Make ``spec`` available as ``task.name: <spec.name>``."""
    _TASKS[spec.name] = spec


def get_task(name: str) -> TaskSpec:
    """The registered task ``name``; UserError listing the known tasks otherwise."""
    if name not in _TASKS:
        for module in TASK_MODULES:
            try:
                importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name != module:
                    raise
    if name not in _TASKS:
        known = ", ".join(sorted(_TASKS))
        raise UserError(f"config key 'task.name': unknown task '{name}' (known: {known})")
    return _TASKS[name]


def model_outputs(model: torch.nn.Module, batch: dict):
    """``model(features)``, or ``model(features, vertex)`` for models that use the vertex."""
    if getattr(model, "uses_vertex", False):
        return model(batch["features"], batch["vertex"])
    return model(batch["features"])


# ----------------------------------------------------------------------------- regressor task


def build_regressor(model_config: dict):
    """The regression network of :mod:`xecreco.models.regressor` (imported lazily)."""
    from xecreco.models.regressor import build_model

    return build_model(model_config)


def regressor_model_config(cfg) -> dict:
    """The resolved regressor config; heads default to ``task.targets`` and uncertainty outputs
    are switched on when a target uses the gaussian_nll loss (unless overrides say otherwise)."""
    from xecreco.models.regressor import resolve_model_config

    config = cfg.model_config()
    config.setdefault("heads", list(cfg.task.targets))
    summary = config.get("summary", {})
    if summary is not None:  # the light summary inverts the configured npho transform
        scheme = cfg.normalization.get("npho_scheme", "log1p")
        config["summary"] = {**summary, "npho_scheme": scheme}
    if "gaussian_nll" in cfg.loss.types.values():
        config.setdefault("uncertainty", True)
    return resolve_model_config(config)


def prepare_regressor(model, source) -> None:
    """Calibrate the light-summary references on the first training events (models without
    ``calibrate_references``, e.g. plugin regressors, need nothing)."""
    calibrate = getattr(model, "calibrate_references", None)
    if calibrate is None:
        return
    batch = source.calibration_batch()
    energy = batch["truth"].get("energy")
    calibrate(batch["features"].to(next(model.parameters()).device),
                               None if energy is None else torch.as_tensor(energy),
                               source.scaling)


def regressor_source(cfg, target_scaling=None):
    from xecreco.models.regressor import DEFAULT_PRESET, PRESETS
    from xecreco.train.data import RootSource

    # custom tasks may train other networks through this source: only presets have a summary
    ours = cfg.model_config().get("preset", DEFAULT_PRESET) in PRESETS
    summary = regressor_model_config(cfg)["summary"] if ours else None
    need_vertex = cfg.loss.consistency > 0 or bool(summary and summary["vertex"])
    return RootSource(cfg.data, cfg.augment, cfg.task.targets, cfg.normalization, seed=cfg.run.seed,
                      need_vertex=need_vertex, target_scaling=target_scaling)


class _BatchLoss(torch.nn.Module):
    """Adapts :class:`RegressionLoss` to the ``(outputs, batch)`` call of the loop."""

    def __init__(self, loss: RegressionLoss):
        super().__init__()
        self.loss = loss

    def forward(self, outputs, batch):
        return self.loss(outputs, batch["targets"], batch.get("vertex"))


def regressor_loss(cfg, source):
    from xecreco.geometry import R_INNER

    lo = cfg.loss
    affine = {}
    if lo.consistency > 0:
        missing = [t for t in ("u", "v", "w", "direction") if t not in cfg.task.targets]
        if missing:
            raise UserError("config key 'loss.consistency' needs the targets u, v, w and "
                            "direction; "
                            f"task.targets lacks {', '.join(missing)}")
        affine = {t: source.affine(t) for t in ("u", "v", "w")}
    return _BatchLoss(RegressionLoss(cfg.task.targets, types=lo.types, beta=lo.beta,
                                     direction=lo.direction, weights=lo.weights,
                                     weighting=lo.weighting, consistency=lo.consistency,
                                     affine=affine, r_inner=R_INNER))


def regressor_eval_batch(outputs, batch, source) -> dict:
    out = {}
    for name, truth in batch["truth"].items():
        pred = outputs[name].float().cpu().numpy()
        out[f"pred_{name}"] = source.to_physical(name, pred)
        out[f"true_{name}"] = np.asarray(truth)
    return out


def regressor_metrics(collected: dict, cfg) -> dict:
    pred = {k[5:]: v for k, v in collected.items() if k.startswith("pred_")}
    true = {k[5:]: v for k, v in collected.items() if k.startswith("true_")}
    return physics_metrics(pred, true, cfg.checkpoint.metric_weights)


register_task(TaskSpec("regressor", build_regressor, regressor_source, regressor_loss,
                       regressor_eval_batch, regressor_metrics, regressor_model_config,
                       prepare_regressor))
