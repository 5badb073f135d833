"""Names -> reconstructor and inpainter factories (timm-style ``create``).

Built-in names are registered by the modules that define them. Third-party packages add
reconstructors through the entry-point group ``xecreco.reconstructors`` (each entry point is a
zero-argument-callable factory or a class); plugins run only when installed as packages.
A path to a checkpoint file (``*.pt``) is also accepted wherever a name is.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from xecreco.errors import UserError

ENTRY_POINT_GROUP = "xecreco.reconstructors"

_RECONSTRUCTORS: dict[str, Callable] = {}
_INPAINTERS: dict[str, Callable] = {}

# Modules whose import registers built-in names. Imported lazily so that ``xecreco info``
# and friends do not pay for torch unless a model is used.
_BUILTIN_MODULES = (
    "xecreco.models.classical",
    "xecreco.models.regressor",
    "xecreco.models.baselines",
    "xecreco.models.inpainter",
)
_builtins_loaded = False


def register_reconstructor(name: str, factory: Callable) -> None:
    """Register ``factory(**kwargs) -> Reconstructor`` under ``name``."""
    _RECONSTRUCTORS[name] = factory


def register_inpainter(name: str, factory: Callable) -> None:
    """Register ``factory(**kwargs) -> Inpainter`` under ``name``."""
    _INPAINTERS[name] = factory


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # a model family not built in this install
            if exc.name != module:
                raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _RECONSTRUCTORS:
            _RECONSTRUCTORS[ep.name] = _lazy_entry_point(ep)


def _lazy_entry_point(ep) -> Callable:
    def factory(**kwargs):
        target = ep.load()
        return target(**kwargs)

    return factory


def available_reconstructors() -> list[str]:
    """Registered reconstructor names (built-ins and installed plugins)."""
    _load_builtins()
    return sorted(_RECONSTRUCTORS)


def available_inpainters() -> list[str]:
    """Registered inpainter names."""
    _load_builtins()
    return sorted(_INPAINTERS)


def _is_checkpoint_path(spec: str) -> bool:
    return spec.endswith((".pt", ".pth")) or Path(spec).is_file()


def create_reconstructor(spec: str, **kwargs):
    """A reconstructor from a registered name or a checkpoint path."""
    _load_builtins()
    if spec in _RECONSTRUCTORS:
        return _RECONSTRUCTORS[spec](**kwargs)
    if _is_checkpoint_path(spec):
        from xecreco.models.checkpoint_reco import reconstructor_from_checkpoint

        return reconstructor_from_checkpoint(spec, **kwargs)
    raise UserError(
        f"unknown reconstructor '{spec}': use one of {', '.join(available_reconstructors())} "
        "or a path to a checkpoint file"
    )


def create_inpainter(spec: str, **kwargs):
    """An inpainter from a registered name or a checkpoint path."""
    _load_builtins()
    if spec in _INPAINTERS:
        return _INPAINTERS[spec](**kwargs)
    if _is_checkpoint_path(spec):
        from xecreco.models.inpainter import inpainter_from_checkpoint

        return inpainter_from_checkpoint(spec, **kwargs)
    raise UserError(
        f"unknown inpainter '{spec}': use one of {', '.join(available_inpainters())} "
        "or a path to an inpainter checkpoint"
    )
