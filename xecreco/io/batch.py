"""The in-memory event batch shared by readers, reconstructors, inpainters and trainers.

It lives in the core (not in :mod:`xecreco.models`) because the reader produces it and the core
never imports the models; :mod:`xecreco.models.base` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from xecreco.geometry.constants import N_SENSORS

__all__ = ["EventBatch", "N_SENSORS"]


@dataclass
class EventBatch:
    """A batch of N events in file units.

    Attributes:
        npho: (N, 4760) float32, incident photons per sensor (raw, may be slightly negative).
            Values at invalid sensors are unspecified (the reader sets them to 0); always use
            ``valid_npho``.
        time: (N, 4760) float32, sensor time in seconds; unspecified where ``valid_time`` is False.
        valid_npho: (N, 4760) bool, True where npho is usable.
        valid_time: (N, 4760) bool, True where time is usable (implies valid_npho).
        run, event, entry: (N,) int64 identifiers; ``entry`` is the global index in the input
            (across files, in reading order).
        vertex: optional (N, 3) float32, photon vertex (cm), from ``xyzVTX`` when present.
        truth: dict of truth arrays (file units) keyed by branch name, e.g. ``energyTruth`` (N,),
            ``uvwTruth`` (N, 3). Jagged branches are awkward arrays.
        extras: any other requested branches (e.g. ``dead``, ``nphoClean``), keyed by name.
    """

    npho: np.ndarray
    time: np.ndarray
    valid_npho: np.ndarray
    valid_time: np.ndarray
    run: np.ndarray
    event: np.ndarray
    entry: np.ndarray
    vertex: np.ndarray | None = None
    truth: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.npho.shape[0])

    def replace(self, **changes) -> "EventBatch":
        """A shallow copy with some fields replaced."""
        return replace(self, **changes)

    @staticmethod
    def concatenate(parts: list["EventBatch"]) -> "EventBatch":
        """One batch holding the events of ``parts`` in order (same truth and extras keys)."""
        if len(parts) == 1:
            return parts[0]

        def join(values):
            if isinstance(values[0], np.ndarray):
                return np.concatenate(values)
            import awkward as ak  # jagged truth (pile-up photons)

            return ak.concatenate(values)

        first = parts[0]
        return EventBatch(
            **{name: np.concatenate([getattr(p, name) for p in parts])
               for name in ("npho", "time", "valid_npho", "valid_time", "run", "event", "entry")},
            vertex=None if first.vertex is None else np.concatenate([p.vertex for p in parts]),
            truth={k: join([p.truth[k] for p in parts]) for k in first.truth},
            extras={k: join([p.extras[k] for p in parts]) for k in first.extras},
        )

    def select(self, index) -> "EventBatch":
        """Sub-batch by a slice, boolean mask or integer index array."""

        def take(a):
            if a is None:
                return None
            return a[index]

        return EventBatch(
            npho=self.npho[index],
            time=self.time[index],
            valid_npho=self.valid_npho[index],
            valid_time=self.valid_time[index],
            run=self.run[index],
            event=self.event[index],
            entry=self.entry[index],
            vertex=take(self.vertex),
            truth={k: v[index] for k, v in self.truth.items()},
            extras={k: v[index] for k, v in self.extras.items()},
        )
