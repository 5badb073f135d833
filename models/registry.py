"""Names -> reconstructor and inpainter factories (timm-style ``create``).

Built-in names are listed in a static table (name -> module that registers it), so listing names
(``xecreco info``, ``--help``) never imports torch; the module is imported on first use. Third-party
packages add reconstructors through the entry-point group ``xecreco.reconstructors`` (each entry
point is a factory or a class called with keyword arguments); plugins run only when installed as
packages. A path to a checkpoint file (``*.pt``) is accepted wherever a reconstructor name is.

Training tasks are named by the entry-point group ``xecreco.tasks``, which the training engine
reads itself (:mod:`xecreco.train.tasks`; xecreco's own tasks, :mod:`xecreco.models.tasks`, are
declared there in pyproject.toml); :func:`available_tasks` lists them here too.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from xecreco.errors import UserError
from xecreco.models import bundled

ENTRY_POINT_GROUP = "xecreco.reconstructors"

_RECONSTRUCTORS: dict[str, Callable] = {}
_INPAINTERS: dict[str, Callable] = {}

#: Built-in reconstructor name -> module whose import registers it.
_BUILTIN_RECONSTRUCTORS = {"classical": "xecreco.models.classical"}
#: Built-in inpainter name -> module whose import registers it.
_BUILTIN_INPAINTERS = {
    "neighbour-average": "xecreco.models.inpaint.baselines",
    "solid-angle": "xecreco.models.inpaint.baselines",
    "local-fit": "xecreco.models.inpaint.baselines",
}
_entry_points_loaded = False


def register_reconstructor(name: str, factory: Callable) -> None:
    """Register ``factory(**kwargs) -> Reconstructor`` under ``name``."""
    _RECONSTRUCTORS[name] = factory


def register_inpainter(name: str, factory: Callable) -> None:
    """Register ``factory(**kwargs) -> Inpainter`` under ``name``."""
    _INPAINTERS[name] = factory


def _bundled_reconstructors() -> dict[str, Callable]:
    return {"default": bundled.bundled_regressor} if bundled.BUNDLED_REGRESSOR.is_file() else {}


def _bundled_inpainters() -> dict[str, Callable]:
    return {"default": bundled.bundled_inpainter} if bundled.BUNDLED_INPAINTER.is_file() else {}


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _RECONSTRUCTORS.setdefault(ep.name, _lazy_entry_point(ep))


def _lazy_entry_point(ep) -> Callable:
    def factory(**kwargs):
        target = ep.load()
        return target(**kwargs)

    return factory


def available_reconstructors() -> list[str]:
    """Registered reconstructor names (built-ins, bundled models and installed plugins)."""
    _load_entry_points()
    return sorted(set(_BUILTIN_RECONSTRUCTORS) | set(_bundled_reconstructors()) | set(_RECONSTRUCTORS))


def available_tasks() -> list[str]:
    """Training task names (``task.name`` values), without importing any task."""
    from xecreco.train.tasks import available_tasks as names

    return names()


def available_inpainters() -> list[str]:
    """Registered inpainter names (baselines, the bundled inpainter)."""
    return sorted(set(_BUILTIN_INPAINTERS) | set(_bundled_inpainters()) | set(_INPAINTERS))


def _lookup(name: str, registered: dict, builtins: dict, bundled_models: dict) -> Callable | None:
    if name in registered:
        return registered[name]
    if name in builtins:
        importlib.import_module(builtins[name])
        return registered.get(name)
    return bundled_models.get(name)


def _is_checkpoint_path(spec: str) -> bool:
    return str(spec).endswith((".pt", ".pth")) or Path(spec).is_file()


def create_reconstructor(spec: str, **kwargs):
    """A reconstructor from a registered name or a checkpoint path."""
    _load_entry_points()
    factory = _lookup(spec, _RECONSTRUCTORS, _BUILTIN_RECONSTRUCTORS, _bundled_reconstructors())
    if factory is not None:
        return factory(**kwargs)
    if _is_checkpoint_path(spec):
        from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint

        return reconstructor_from_checkpoint(spec, **kwargs)
    raise UserError(
        f"unknown reconstructor '{spec}': use one of {', '.join(available_reconstructors())} "
        "or a path to a checkpoint file"
    )


def create_inpainter(spec: str, **kwargs):
    """An inpainter from a registered name or a checkpoint path."""
    factory = _lookup(spec, _INPAINTERS, _BUILTIN_INPAINTERS, _bundled_inpainters())
    if factory is not None:
        return factory(**kwargs)
    if _is_checkpoint_path(spec):
        from xecreco.models.inpaint.neural import inpainter_from_checkpoint

        return inpainter_from_checkpoint(spec, **kwargs)
    raise UserError(
        f"unknown inpainter '{spec}': use one of {', '.join(available_inpainters())} "
        "or a path to an inpainter checkpoint"
    )
