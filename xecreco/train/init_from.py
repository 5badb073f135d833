"""Starting a training run from another checkpoint's weights (``model.init_from: PATH``).

Fine-tuning, e.g. the bundled regressor on pile-up samples with a new ``pileup`` head:

- **weights**: every tensor of the new network whose name and shape match one of the
  checkpoint's is copied from it (the EMA weights when the checkpoint has them, else its
  ``state_dict``: a ``best.pt`` or a bundled model holds the evaluated weights there); the others
  (new heads, resized layers) keep their fresh initialisation. The optimizer, the schedule, the
  step count and the EMA start anew (the EMA from the loaded weights).
- **widened input layers**: when the new network reads more input channels per sensor than the
  checkpoint's (``encoder.in_channels`` of the two model configs, e.g. 2 -> 3 with
  ``model.dead_flag``), a weight that differs from the checkpoint's only in its input dimension
  (dim 1: a Linear's ``in_features``, a convolution's input channels) and is larger there by
  exactly that ratio, ``k * C_old -> k * C_new`` with the channel varying fastest (the ``k``
  cells of a stem patch), gets the checkpoint's values at the first ``C_old`` channels of every
  cell and zeros at the new ones (:func:`widen_input_channels`): the widened network gives the
  checkpoint's outputs on inputs whose new channels are 0, and the new channels start without
  effect. Nothing else is widened (a wider hidden layer stays fresh).
- **target scaling**: the checkpoint's mean and scale of every standardised target it has are
  kept, so the loaded heads see targets in the units they were trained in; targets it lacks are
  fitted on the training sample as usual.
- **normalisation**: the checkpoint's input normalisation, with the keys the config's
  ``normalization`` section sets taking precedence.

- **frozen fine-tuning** (``model.trainable``: parameter-name prefixes such as
  ``heads.pileup``): only the parameters under those prefixes train, every other tensor keeps
  the checkpoint's value (:func:`freeze_except`). When no tensor loaded from the checkpoint
  trains (only new heads do), the checkpoint's outputs cannot change, so its energy calibration
  and time combination (``xecreco calibrate``) are kept in the new checkpoints
  (:func:`kept_calibrations`): a head added to the bundled model leaves its other outputs
  bit-identical.

A file that is not a checkpoint is the one-line error of
:func:`xecreco.train.checkpoint.load_checkpoint`; a network whose matching tensors hold less than
half of its values (another architecture) is a one-line error naming the file. ``--resume``
ignores ``init_from`` (the run's ``last.pt`` holds everything).
"""

from __future__ import annotations

from pathlib import Path

from xecreco.errors import UserError
from xecreco.train.checkpoint import load_checkpoint

#: Fraction of the network's tensor values that must come from the checkpoint.
MIN_COVERED = 0.5


def load_init_checkpoint(path) -> dict:
    """The payload of the ``model.init_from`` checkpoint (UserError naming the key and file)."""
    if not Path(path).expanduser().is_file():
        raise UserError(f"config key 'model.init_from': checkpoint {path} does not exist; give "
                        "a .pt file written by xecreco train or a bundled model")
    return load_checkpoint(Path(path).expanduser())


def init_normalization(ckpt: dict, normalization: dict) -> dict:
    """The checkpoint's normalisation dict overridden by the config's keys."""
    return {**dict(ckpt.get("normalization") or {}), **dict(normalization or {})}


def init_target_scaling(ckpt: dict, targets, standardised) -> dict | None:
    """The checkpoint's target scaling restricted to the ``targets`` that are ``standardised``
    (``{"mean": ..., "scale": ...}``, possibly covering only some targets), or None when it
    has none of them."""
    scaling = ckpt.get("target_scaling") or {}
    mean, scale = scaling.get("mean") or {}, scaling.get("scale") or {}
    keep = [t for t in targets if t in standardised and t in mean and t in scale]
    if not keep:
        return None
    out = {k: v for k, v in scaling.items() if k not in ("mean", "scale")}
    out["mean"] = {t: mean[t] for t in keep}
    out["scale"] = {t: scale[t] for t in keep}
    return out


def input_channels(config) -> int | None:
    """The input channels per sensor of a model config (``encoder.in_channels``), or None when
    the config does not say (a network without an encoder, a checkpoint without a config)."""
    encoder = config.get("encoder") if isinstance(config, dict) else None
    value = encoder.get("in_channels") if isinstance(encoder, dict) else None
    return int(value) if value is not None else None


def widen_input_channels(theirs, own_shape, channels: tuple[int, int]):
    """The checkpoint tensor ``theirs`` widened to ``own_shape`` along its input dimension, or
    None when that is not unambiguous.

    Widened only when both have the same rank (>= 2), all dims but dim 1 are equal, and dim 1
    is ``k * C_old`` in ``theirs`` and ``k * C_new`` in ``own_shape`` for ``channels = (C_old,
    C_new)``, ``C_new > C_old``, laid out as (cell, channel) with the channel fastest (a Patchify
    stem's ``(row in patch, column in patch, channel)``; ``k = 1`` for a per-sensor embedding).
    The result holds ``theirs`` at channels ``< C_old`` of every cell and zeros elsewhere.
    """
    import torch

    old_c, new_c = channels
    shape = tuple(theirs.shape)
    own_shape = tuple(own_shape)
    if (len(shape) != len(own_shape) or len(shape) < 2 or new_c <= old_c or old_c <= 0
            or shape[:1] + shape[2:] != own_shape[:1] + own_shape[2:]
            or shape[1] % old_c or shape[1] // old_c * new_c != own_shape[1]):
        return None
    cells = shape[1] // old_c
    out = torch.zeros((shape[0], cells, new_c) + shape[2:], dtype=theirs.dtype)
    out[:, :, :old_c] = theirs.reshape((shape[0], cells, old_c) + shape[2:])
    return out.reshape(own_shape)


def load_matching_weights(model, ckpt: dict, path) -> dict:
    """Copy the checkpoint's tensors whose name and shape match into ``model`` (in place), and
    widen its input layers when ``model`` reads more input channels (:func:`widen_input_channels`;
    the channel counts from ``ckpt["model_config"]`` and ``model.config``).

    Returns ``{"loaded": [names], "widened": [names], "fresh": [names of the model's tensors left
    as they were], "skipped": [checkpoint tensors with no match]}``; UserError when the copied
    values (a widened tensor counts with the checkpoint's values) hold less than
    :data:`MIN_COVERED` of the network's values (another network: a few biases of the same size
    are no fine-tuning).
    """
    import torch

    weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
    own = model.state_dict()
    old_c = input_channels(ckpt.get("model_config"))
    new_c = input_channels(getattr(model, "config", None))
    channels = (old_c, new_c) if old_c is not None and new_c is not None else None
    matched, widened = {}, []
    covered = 0
    for name, tensor in own.items():
        theirs = weights.get(name)
        if not torch.is_tensor(theirs):
            continue
        if tuple(theirs.shape) == tuple(tensor.shape):
            matched[name] = theirs.to(dtype=tensor.dtype)
        elif channels is not None and tensor.is_floating_point():
            wide = widen_input_channels(theirs, tensor.shape, channels)
            if wide is None:
                continue
            matched[name] = wide.to(dtype=tensor.dtype)
            widened.append(name)
        else:
            continue
        covered += theirs.numel()
    total = sum(t.numel() for t in own.values())
    if covered < MIN_COVERED * total:
        raise UserError(
            f"config key 'model.init_from': {path} ('{ckpt.get('task')}' checkpoint) does not "
            f"match the configured network (tensors of the same name and shape hold "
            f"{100.0 * covered / max(total, 1):.0f} % of its values); set model.preset and "
            "model.overrides to the checkpoint's model, or drop init_from")
    model.load_state_dict(matched, strict=False)
    return {"loaded": sorted(set(matched) - set(widened)), "widened": sorted(widened),
            "fresh": sorted(set(own) - set(matched)),
            "skipped": sorted(set(weights) - set(matched))}


def describe(report: dict, path) -> str:
    """One line for the training log: how many tensors came from the checkpoint, which were
    widened (their names), which are new."""
    fresh = report["fresh"]
    groups = sorted({".".join(name.split(".")[:2]) for name in fresh})
    text = f"xecreco train: model.init_from {path}: {len(report['loaded'])} tensors loaded, "
    widened = report.get("widened") or []
    if widened:
        names = [name.removesuffix(".weight") for name in widened]
        text += (f"{len(widened)} widened to more input channels, new channels zero "
                 f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''}), ")
    text += f"{len(fresh)} fresh"
    if groups:
        text += f" ({', '.join(groups[:8])}{', ...' if len(groups) > 8 else ''})"
    if report["skipped"]:
        text += f", {len(report['skipped'])} of the checkpoint unused"
    return text


def freeze_except(model, prefixes) -> list[str]:
    """Switch ``requires_grad`` off for every parameter of ``model`` whose name is not one of
    ``prefixes`` or below one (``heads.pileup`` covers ``heads.pileup.net.1.weight``).

    Returns the names of the parameters left trainable; UserError naming ``model.trainable``
    when a prefix matches no parameter."""
    names = [name for name, _ in model.named_parameters()]

    def covered(name: str, prefix: str) -> bool:
        return name == prefix or name.startswith(prefix + ".")

    for prefix in prefixes:
        if not any(covered(name, prefix) for name in names):
            groups = sorted({".".join(name.split(".")[:2]) for name in names})
            raise UserError(f"config key 'model.trainable': '{prefix}' names no parameter of "
                            f"the network; use prefixes such as {', '.join(groups[-4:])}")
    trainable = []
    for name, param in model.named_parameters():
        keep = any(covered(name, prefix) for prefix in prefixes)
        param.requires_grad_(keep)
        if keep:
            trainable.append(name)
    return trainable


#: Checkpoint entries fitted on a network's outputs by ``xecreco calibrate``.
CALIBRATION_KEYS = ("energy_calibration", "time_combination")


def kept_calibrations(ckpt: dict, report: dict, trainable: list[str] | None) -> dict:
    """The checkpoint's calibrations (:data:`CALIBRATION_KEYS`) that stay valid for the new
    network: all of them when ``trainable`` (the names :func:`freeze_except` left trainable)
    holds no tensor loaded or widened from the checkpoint, so every output the checkpoint had is
    unchanged; none otherwise (``trainable`` None: everything trains)."""
    if trainable is None:
        return {}
    loaded = set(report["loaded"]) | set(report.get("widened") or [])
    if loaded & set(trainable):
        return {}
    return {key: ckpt[key] for key in CALIBRATION_KEYS if ckpt.get(key)}


def with_normalization(cfg, ckpt: dict):
    """A copy of ``cfg`` whose ``normalization`` is the checkpoint's, overridden by the config's
    keys (what the run's config.yaml then records)."""
    import dataclasses

    return dataclasses.replace(cfg, normalization=init_normalization(ckpt, cfg.normalization))


def build_source(task, cfg, ckpt: dict):
    """``task.build_source`` with the checkpoint's target scaling for the targets it has; the
    others are fitted on the training sample (one extra fit only when the checkpoint covers some
    but not all standardised targets)."""
    from xecreco.train.data import STANDARDISED

    scaling = init_target_scaling(ckpt, cfg.task.targets, STANDARDISED)
    wanted = {t for t in cfg.task.targets if t in STANDARDISED}
    if scaling is None or set(scaling["mean"]) == wanted:
        return task.build_source(cfg, target_scaling=scaling)
    fitted = dict(task.build_source(cfg, target_scaling=None).target_scaling)
    fitted["mean"] = {**fitted["mean"], **scaling["mean"]}
    fitted["scale"] = {**fitted["scale"], **scaling["scale"]}
    return task.build_source(cfg, target_scaling=fitted)
