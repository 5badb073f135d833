"""Training tasks: what model, data, loss and validation metrics a config's ``task.name`` means.

The training loop only talks to a :class:`TaskSpec`; this module holds the protocol and the
name -> task registry, and names no task. Tasks come from two places:

- the entry-point group ``xecreco.tasks``: each entry point is a :class:`TaskSpec` or a
  callable returning one, loaded on first use of its name. xecreco's own tasks (``regressor``,
  ``mae``, ``inpainter``, in :mod:`xecreco.models.tasks`) are declared there in pyproject.toml,
  exactly as a plugin package declares its own;
- :func:`register_task` at run time (Python API, tests); a registered task wins over an entry
  point of the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from xecreco.errors import UserError

if TYPE_CHECKING:  # torch is not needed to list or resolve tasks
    import torch

#: Entry-point group through which packages (xecreco's models included) provide tasks.
ENTRY_POINT_GROUP = "xecreco.tasks"


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
    validate_config(cfg) -> None: the task's own config rules (targets, metric names, loss
        keys ...), run when the config is loaded (:func:`check_task_config`); raises UserError
        naming the key; optional.
    """

    name: str
    build_model: Callable
    build_source: Callable
    build_loss: Callable
    eval_batch: Callable
    metrics: Callable
    model_config: Callable = None
    prepare_model: Callable = None
    validate_config: Callable = None

    def resolved_model_config(self, cfg) -> dict:
        return self.model_config(cfg) if self.model_config is not None else cfg.model_config()


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> None:
    """Make ``spec`` available as ``task.name: <spec.name>``."""
    _TASKS[spec.name] = spec


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_tasks() -> list[str]:
    """Names of every known task (registered or provided through entry points); loads none."""
    return sorted(set(_TASKS) | set(_entry_points()))


def get_task(name: str) -> TaskSpec:
    """The task ``name`` (registered, else loaded from its entry point); UserError otherwise."""
    if name in _TASKS:
        return _TASKS[name]
    ep = _entry_points().get(name)
    if ep is None:
        known = ", ".join(available_tasks()) or "none: is xecreco installed (pip install -e .)?"
        raise UserError(f"config key 'task.name': unknown task '{name}' (known: {known})")
    try:
        target = ep.load()
    except ImportError as exc:
        raise UserError(f"task '{name}' (entry point {ep.value} of group {ENTRY_POINT_GROUP}) "
                        f"cannot be imported: {exc}") from None
    spec = target if isinstance(target, TaskSpec) else target()
    if not isinstance(spec, TaskSpec) or spec.name != name:
        raise UserError(f"entry point '{name}' of group {ENTRY_POINT_GROUP} ({ep.value}) gives "
                        f"{spec!r}, not a TaskSpec named '{name}'")
    _TASKS[name] = spec
    return spec


def check_task_config(cfg, task: TaskSpec | None = None) -> None:
    """Run the config rules of ``task`` (default: the task ``cfg.task.name`` names, when it is
    known; an unknown name is reported when training resolves it)."""
    if task is None:
        if cfg.task.name not in available_tasks():
            return
        task = get_task(cfg.task.name)
    if task.validate_config is not None:
        task.validate_config(cfg)


def model_outputs(model: torch.nn.Module, batch: dict):
    """``model(features)``, or ``model(features, vertex)`` for models that use the vertex."""
    if getattr(model, "uses_vertex", False):
        return model(batch["features"], batch["vertex"])
    return model(batch["features"])
