"""The common reconstruction interface.

Every reconstruction (classical, neural regressor, ensembles, third-party plugins) is a
:class:`Reconstructor`; every dead-channel repair (neural inpainter, baselines) is an
:class:`Inpainter`. The prediction pipeline, the validation suite and the CLI only talk to these.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol, runtime_checkable

import numpy as np

from xecreco.io.batch import EventBatch

__all__ = ["EventBatch", "Reconstructor", "Inpainter", "Status", "OUTPUT_UNITS"]

#: Physical outputs a reconstructor may produce, with their units (file units).
OUTPUT_UNITS = {
    "energy": "GeV",
    "u": "cm",
    "v": "cm",
    "w": "cm",
    "x": "cm",
    "y": "cm",
    "z": "cm",
    "time": "ns",
    "theta": "deg",
    "phi": "deg",
    "npileup": "photons",
    "pileup_prob": "probability",
}


class Status(IntEnum):
    """``R_status`` codes written for every event and reconstruction.

    OK: reconstructed normally.
    NO_VALID_SENSORS: no valid sensor in the event; outputs are the documented fill values.
    TOO_LITTLE_LIGHT: too little light on the inner face for a position fit; fallback values.
    FIT_FAILED: the position fit did not converge; the seed/weighted-mean position is used.
    NO_VALID_TIME: no sensor with a valid time; time output is the fill value.
    """

    OK = 0
    NO_VALID_SENSORS = 1
    TOO_LITTLE_LIGHT = 2
    FIT_FAILED = 3
    NO_VALID_TIME = 4


#: Value written to float outputs that cannot be computed (status != OK). Never NaN.
FILL_VALUE = -1.0e10


@runtime_checkable
class Reconstructor(Protocol):
    """Turns an :class:`EventBatch` into physical quantities.

    ``reconstruct`` returns a dict with one float32 array of length N per name in ``outputs``
    (file units: GeV, cm, ns, deg), optional ``<name>_err`` arrays, and an int32 ``status``
    array (:class:`Status`). Outputs never contain NaN.
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
