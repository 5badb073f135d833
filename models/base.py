"""The common reconstruction interface.

Every reconstruction (classical, neural regressor, ensembles, third-party plugins) is a
:class:`Reconstructor`; every dead-channel repair (neural inpainter, baselines) is an
:class:`Inpainter`. The prediction pipeline, the validation suite and the CLI only talk to these.
Output names, units, :class:`~xecreco.io.schema.Status` codes and the fill value are the
prediction-tree schema of :mod:`xecreco.io.schema`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from xecreco.io.batch import EventBatch
from xecreco.io.schema import FILL_VALUE, OUTPUT_UNITS, Status

# The output names and units, status codes and fill value are the prediction-tree schema
# (xecreco.io.schema); they are part of this interface, so they are importable from here too.
__all__ = ["EventBatch", "Reconstructor", "Inpainter", "Status", "OUTPUT_UNITS", "FILL_VALUE"]

@runtime_checkable
class Reconstructor(Protocol):
    """Turns an :class:`EventBatch` into physical quantities.

    ``reconstruct`` returns a dict with one float32 array of length N per name in ``outputs``
    (file units: GeV, cm, ns, deg), optional ``<name>_err`` arrays, and an int32 ``status``
    array (:class:`Status`). Outputs never contain NaN.

    Optional: a method ``prepare(batch)`` returning the reconstructor's per-batch inputs (numpy
    work only, safe to run in another thread); the prediction pipeline then runs it ahead in its
    reader thread and calls ``reconstruct(batch, prepared=...)`` with the result.
    """

    name: str
    outputs: tuple[str, ...]

    def reconstruct(self, batch: EventBatch) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Inpainter(Protocol):
    """Repairs invalid (dead) sensors.

    ``inpaint`` returns a new batch whose npho and time at sensors where
    ``batch.valid_npho`` was False are filled with estimates and marked valid; an
    ``extras["inpainted"]`` (N, 4760) bool array records which values were filled.
    """

    name: str

    def inpaint(self, batch: EventBatch) -> EventBatch: ...
