"""Simulated events as the reader's :class:`~xecreco.io.batch.EventBatch`, without a file.

What :func:`xecreco.io.reader.iterate_batches` would give for a file that
:func:`xecreco.sim.simulate_file` wrote with the same config, seed and first event: the same
sensor values, validity masks (:func:`xecreco.io.validity.apply_validity`, the reader's rule),
identifiers, truth and vertex (a test compares both). The trainer's simulation source
(:mod:`xecreco.train.simsource`) draws its fresh training events from here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from xecreco.io.batch import EventBatch
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD, ReaderStats, apply_validity
from xecreco.sim.config import SimConfig
from xecreco.sim.runner import _chunks, _detector, simulate_chunk

__all__ = ["branches_to_batch", "simulated_batches"]


def branches_to_batch(branches: dict, truth: Sequence[str] = (), extras: Sequence[str] = (),
                      vertex: bool = False,
                      time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD) -> EventBatch:
    """One :class:`EventBatch` from the branch dict of :func:`xecreco.sim.runner.simulate_chunk`
    (its arrays are used in place: npho and time get the reader's zeros at invalid sensors).

    ``truth`` / ``extras``: branch names to carry (``KeyError`` names a missing one);
    ``vertex``: fill ``batch.vertex`` from ``xyzVTX`` (cm, float32). ``entry`` is the event
    number: the entry such a file would give when it starts at event 0.
    """
    npho = np.asarray(branches["npho"], dtype=np.float32)
    time = np.asarray(branches["time"], dtype=np.float32)
    valid_npho, valid_time = apply_validity(npho, time, time_npho_threshold, ReaderStats())
    event = np.asarray(branches["event"], dtype=np.int64)
    return EventBatch(
        npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time,
        run=np.asarray(branches["run"], dtype=np.int64), event=event, entry=event.copy(),
        vertex=np.asarray(branches["xyzVTX"], dtype=np.float32) if vertex else None,
        truth={name: branches[name] for name in truth},
        extras={name: branches[name] for name in extras},
    )


def simulated_batches(n: int, config: SimConfig, seed: int, start_event: int = 0,
                      truth: Sequence[str] = (), extras: Sequence[str] = (),
                      vertex: bool = False, detector=None) -> Iterator[EventBatch]:
    """``n`` events of ``config`` and event ``seed`` numbered from ``start_event``, one batch per
    simulation chunk (``config.chunk_events``): the events ``simulate_file(path, n, config,
    seed, start_event=start_event)`` writes. ``detector``: a prepared light model, calibration
    and dead mask (``xecreco.sim.runner._detector(config)``), built here when None."""
    det = detector if detector is not None else _detector(config)
    for size, first in _chunks(n, config, start_event):
        branches, _ = simulate_chunk(size, config, seed, first, detector=det)
        yield branches_to_batch(branches, truth, extras, vertex)
