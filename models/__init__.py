"""Reconstruction models behind one interface (installed as ``xecreco.models``)."""

from xecreco.models.base import EventBatch, Inpainter, Reconstructor, Status
from xecreco.models.registry import (
    available_inpainters,
    available_reconstructors,
    available_tasks,
    create_inpainter,
    create_reconstructor,
    register_inpainter,
    register_reconstructor,
)

__all__ = [
    "EventBatch",
    "Inpainter",
    "Reconstructor",
    "Status",
    "available_inpainters",
    "available_reconstructors",
    "available_tasks",
    "create_inpainter",
    "create_reconstructor",
    "register_inpainter",
    "register_reconstructor",
]
