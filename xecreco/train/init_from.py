"""Starting a training run from another checkpoint's weights (``model.init_from: PATH``).

Fine-tuning, e.g. the bundled regressor on pile-up samples with a new ``pileup`` head:

- **weights**: every tensor of the new network whose name and shape match one of the
  checkpoint's is copied from it (the EMA weights when the checkpoint has them, else its
  ``state_dict``: a ``best.pt`` or a bundled model holds the evaluated weights there); the others
  (new heads, resized layers) keep their fresh initialisation. The optimizer, the schedule, the
  step count and the EMA start anew (the EMA from the loaded weights).
- **target scaling**: the checkpoint's mean and scale of every standardised target it has are
  kept, so the loaded heads see targets in the units they were trained in; targets it lacks are
  fitted on the training sample as usual.
- **normalisation**: the checkpoint's input normalisation, with the keys the config's
  ``normalization`` section sets taking precedence.

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


def load_matching_weights(model, ckpt: dict, path) -> dict:
    """Copy the checkpoint's tensors whose name and shape match into ``model`` (in place).

    Returns ``{"loaded": [names], "fresh": [names of the model's tensors left as they were],
    "skipped": [checkpoint tensors with no match]}``; UserError when the matching tensors hold
    less than :data:`MIN_COVERED` of the network's values (another network: a few biases of
    the same size are no fine-tuning).
    """
    import torch

    weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
    own = model.state_dict()
    matched = {}
    for name, tensor in own.items():
        theirs = weights.get(name)
        if torch.is_tensor(theirs) and tuple(theirs.shape) == tuple(tensor.shape):
            matched[name] = theirs.to(dtype=tensor.dtype)
    covered = sum(t.numel() for t in matched.values())
    total = sum(t.numel() for t in own.values())
    if covered < MIN_COVERED * total:
        raise UserError(
            f"config key 'model.init_from': {path} ('{ckpt.get('task')}' checkpoint) does not "
            f"match the configured network (tensors of the same name and shape hold "
            f"{100.0 * covered / max(total, 1):.0f} % of its values); set model.preset and "
            "model.overrides to the checkpoint's model, or drop init_from")
    model.load_state_dict(matched, strict=False)
    return {"loaded": sorted(matched), "fresh": sorted(set(own) - set(matched)),
            "skipped": sorted(set(weights) - set(matched))}


def describe(report: dict, path) -> str:
    """One line for the training log: how many tensors came from the checkpoint, which are new."""
    fresh = report["fresh"]
    groups = sorted({".".join(name.split(".")[:2]) for name in fresh})
    text = (f"xecreco train: model.init_from {path}: {len(report['loaded'])} tensors loaded, "
            f"{len(fresh)} fresh")
    if groups:
        text += f" ({', '.join(groups[:8])}{', ...' if len(groups) > 8 else ''})"
    if report["skipped"]:
        text += f", {len(report['skipped'])} of the checkpoint unused"
    return text


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
