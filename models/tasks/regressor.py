"""The ``regressor`` training task: the network of :mod:`xecreco.models.regressor`, trained on
the standardised targets of ``task.targets`` with :class:`xecreco.train.losses.RegressionLoss`.

Validation metrics: :func:`xecreco.train.metrics.physics_metrics` of the physical-unit
predictions (resolutions, biases; ``checkpoint.best_metric`` picks one). The task's own config
rules (targets, metric names, per-target loss keys) are :func:`validate_regressor_config`.
"""

from __future__ import annotations

import difflib

import numpy as np
import torch

from xecreco.errors import UserError
from xecreco.geometry import R_INNER
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.presets import DEFAULT_PRESET, PRESETS, resolve_model_config
from xecreco.train.data import RootSource
from xecreco.train.simsource import SimulationSource
from xecreco.train.ddp import env_info
from xecreco.train.config import LOSS_TYPES, TARGET_UNITS
from xecreco.train.losses import PhysicsTerms, RegressionLoss, fit_light_gain
from xecreco.train.metrics import REGRESSOR_METRICS, physics_metrics, sigma68
from xecreco.train.tasks import TaskSpec

__all__ = ["regressor_task"]


def _suggest(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(known)})"


def validate_regressor_config(cfg) -> None:
    """The regressor's config rules: ``task.targets`` (at least one, each a known target),
    ``checkpoint.best_metric`` (a regressor metric), ``loss.types`` / ``loss.weights`` /
    ``loss.target_beta`` (keys among the targets, known loss types, weights >= 0). UserError
    naming the key otherwise."""

    def need(cond, key, what):
        if not cond:
            raise UserError(f"config key '{key}': {what}")

    for t in cfg.task.targets:
        need(t in TARGET_UNITS, "task.targets", f"unknown target '{t}'{_suggest(t, TARGET_UNITS)}")
    need(len(cfg.task.targets) > 0, "task.targets", "at least one target")
    best = cfg.checkpoint.best_metric
    need(best in REGRESSOR_METRICS, "checkpoint.best_metric",
         f"unknown metric '{best}'{_suggest(best, REGRESSOR_METRICS)}")
    for section in ("types", "weights", "target_beta"):
        for t, v in getattr(cfg.loss, section).items():
            need(t in cfg.task.targets, f"loss.{section}.{t}", f"'{t}' is not in task.targets")
            if section == "types":
                need(t != "pileup", "loss.types.pileup",
                     "the pileup target is always trained with BCE on a logit; remove the key")
                need(v in LOSS_TYPES, f"loss.types.{t}", f"one of {', '.join(LOSS_TYPES)}")
            else:
                need(isinstance(v, (int, float)) and v >= 0, f"loss.weights.{t}",
                     "a number >= 0")


def build_regressor(model_config: dict):
    """The regression network of :mod:`xecreco.models.regressor.network`."""
    return build_model(model_config)


def regressor_model_config(cfg) -> dict:
    """The resolved regressor config; heads default to ``task.targets`` and uncertainty outputs
    are switched on when a target uses the gaussian_nll loss (unless overrides say otherwise)."""
    config = cfg.model_config()
    config.setdefault("heads", list(cfg.task.targets))
    summary = config.get("summary", {})
    if summary is not None:  # the light summary inverts the configured npho transform
        scheme = cfg.normalization.get("npho_scheme", "log1p")
        config["summary"] = {**summary, "npho_scheme": scheme}
    if "gaussian_nll" in cfg.loss.types.values():
        config.setdefault("uncertainty", True)
    return resolve_model_config(config)


def rescale_to_residuals(model, batch: dict, scaling) -> dict[str, float]:
    """``loss.reference_scale: residual``: set the scale of each referenced target (energy, u, v)
    in ``scaling`` (the source's: what the loss, the checkpoint and the reconstructor use) to the
    sigma68 of target - reference over the calibration ``batch`` (finite values). Returns the new
    scales; the model's reference buffers follow at the next ``calibrate_references``."""
    device = next(model.parameters()).device
    residuals = model.reference_residuals(batch["features"].to(device), batch["truth"])
    scales = {}
    for name, residual in residuals.items():
        spread = sigma68(residual[np.isfinite(residual)])
        if not spread > 0:
            raise UserError(f"loss.reference_scale: residual: target '{name}' equals its light "
                            "reference on every calibration event; use reference_scale: target")
        scaling.scale[name] = scales[name] = spread
    return scales


def prepare_regressor(model, source) -> None:
    """Calibrate the light-summary references on the first ``data.batch_size`` training events
    (models without ``calibrate_references``, e.g. plugin regressors, need nothing); with
    ``loss.reference_scale: residual`` (and a target scaling fitted here, not loaded from an
    earlier checkpoint) the referenced targets are then standardised by their residual spread
    on the first ``data.scaling_events`` (one read serves both)."""
    calibrate = getattr(model, "calibrate_references", None)
    if calibrate is None:
        return
    residual = getattr(source, "reference_scale", "target") == "residual" \
        and source.scaling_fitted and hasattr(model, "reference_residuals")
    first = source.data.batch_size
    big = source.calibration_batch(max(first, source.data.scaling_events)) if residual else None
    batch = source.calibration_batch() if big is None else {
        "features": big["features"][:first],
        "truth": {k: v[:first] for k, v in big["truth"].items()}}
    energy = batch["truth"].get("energy")
    features = batch["features"].to(next(model.parameters()).device)
    energy = None if energy is None else torch.as_tensor(energy)
    calibrate(features, energy, source.scaling)
    if residual:
        scales = rescale_to_residuals(model, big, source.scaling)
        calibrate(features, energy, source.scaling)
        if env_info().is_main:  # every DDP rank fits the same scales; one report
            print("residual target scales: "
                  + ", ".join(f"{k} {v:.4g}" for k, v in scales.items()), flush=True)


#: ``augment.dead_fill`` -> the registered inpainter that repairs the training batches (the
#: ``default`` inpainter is the bundled neural one, as ``validate --dead-patterns`` uses).
DEAD_FILL_INPAINTERS = {"neighbours": "neighbour-average", "inpainter": "default"}


def dead_fill_inpainter(dead_fill: str):
    """The inpainter of ``augment.dead_fill`` (None for sentinel), from the registry."""
    if dead_fill == "sentinel":
        return None
    from xecreco.models.registry import available_inpainters, create_inpainter

    name = DEAD_FILL_INPAINTERS[dead_fill]
    if name not in available_inpainters():
        raise UserError(f"config key 'augment.dead_fill': {dead_fill} needs the inpainter "
                        f"'{name}', which this install does not have; use neighbours")
    return create_inpainter(name)


def regressor_source(cfg, target_scaling=None):
    # custom tasks may train other networks through this source: only presets have a summary
    ours = cfg.model_config().get("preset", DEFAULT_PRESET) in PRESETS
    resolved = regressor_model_config(cfg) if ours else {}
    summary = resolved.get("summary")
    need_vertex = cfg.loss.consistency > 0 or bool(summary and summary["vertex"])
    source_class = SimulationSource if cfg.data.source == "simulation" else RootSource
    source = source_class(cfg.data, cfg.augment, cfg.task.targets, cfg.normalization,
                        seed=cfg.run.seed, need_vertex=need_vertex, target_scaling=target_scaling,
                        dead_flag=bool(resolved.get("dead_flag")),
                        fill=dead_fill_inpainter(cfg.augment.dead_fill))
    source.reference_scale = cfg.loss.reference_scale  # read by prepare_regressor
    return source


class _BatchLoss(torch.nn.Module):
    """Adapts :class:`RegressionLoss` to the ``(outputs, batch)`` call of the loop."""

    def __init__(self, loss: RegressionLoss):
        super().__init__()
        self.loss = loss

    def forward(self, outputs, batch):
        return self.loss(outputs, batch["targets"], batch.get("vertex"),
                         features=batch["features"])


def physics_terms(cfg, source) -> PhysicsTerms | None:
    """The loss's :class:`PhysicsTerms` when ``loss.timing`` or ``loss.energy_conservation`` is
    on (None otherwise); the light gain, unless ``loss.light_gain`` gives it, is the median
    energy / collected light of the source's calibration events."""
    from xecreco.normalization import NormalizationSpec

    lo = cfg.loss
    if lo.timing <= 0 and lo.energy_conservation <= 0:
        return None
    needs = {"loss.timing": ("time", "u", "v", "w") if lo.timing > 0 else (),
             "loss.energy_conservation": ("energy",) if lo.energy_conservation > 0 else ()}
    for key, targets in needs.items():
        missing = [t for t in targets if t not in cfg.task.targets]
        if missing:
            raise UserError(f"config key '{key}' needs the targets {', '.join(targets)}; "
                            f"task.targets lacks {', '.join(missing)}")
    spec = NormalizationSpec.from_dict(source.normalization)
    gain = 0.0
    if lo.energy_conservation > 0:
        gain = lo.light_gain
        if gain is None:
            batch = source.calibration_batch()
            gain = fit_light_gain(batch["features"], batch["truth"]["energy"], spec.npho_scheme,
                                  spec.npho_scale)
    names = [t for t in ("energy", "time", "u", "v", "w") if t in cfg.task.targets]
    return PhysicsTerms(spec, {t: source.affine(t) for t in names}, timing=lo.timing,
                        timing_tolerance_ns=lo.timing_tolerance_ns,
                        energy=lo.energy_conservation, energy_tolerance=lo.energy_tolerance,
                        light_gain=gain, r_inner=R_INNER)


def regressor_loss(cfg, source):
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
                                     target_beta=lo.target_beta,
                                     direction=lo.direction, weights=lo.weights,
                                     weighting=lo.weighting, consistency=lo.consistency,
                                     affine=affine, r_inner=R_INNER,
                                     physics=physics_terms(cfg, source)))


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


def regressor_task() -> TaskSpec:
    """``task.name: regressor`` (entry point of the ``xecreco.tasks`` group)."""
    return TaskSpec("regressor", build_regressor, regressor_source, regressor_loss,
                    regressor_eval_batch, regressor_metrics, regressor_model_config,
                    prepare_regressor, validate_regressor_config)
