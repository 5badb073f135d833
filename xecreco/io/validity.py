"""The reader's validity policy: raw sensor values -> explicit validity masks, with counts.

The rule itself is :func:`xecreco.normalization.validity_masks` (numpy and torch, also used by
the ONNX graphs); this module applies it to the reader's chunks in cache-sized blocks, zeroes the
invalid values and counts why each value is invalid:

* ``valid_npho`` is False where ``npho`` is NaN, +-inf or beyond
  :data:`~xecreco.io.schema.INVALID_THRESHOLD` (9e9; MEG II writes 1e10 for dead sensors).
  ``npho`` is set to 0 there.
* ``valid_time`` is ``valid_npho`` and ``time`` finite and below 9e9 in absolute value (the
  simulation writes 1e10 for sensors with too little light) and ``npho >= time_npho_threshold``
  (default :data:`DEFAULT_TIME_NPHO_THRESHOLD`, 50 photons, a guard for files that do not apply
  the sentinel themselves). ``time`` is set to 0 where it is False.

Every invalid value is counted by reason in :class:`ReaderStats`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from xecreco.io.masks import CACHE_BLOCK_EVENTS, store_where_valid
from xecreco.normalization import valid_values, validity_masks

__all__ = ["DEFAULT_TIME_NPHO_THRESHOLD", "ReaderStats", "apply_validity"]

#: Minimum npho (photons) for a sensor's time to be valid.
DEFAULT_TIME_NPHO_THRESHOLD = 50.0


@dataclass
class ReaderStats:
    """Running counts of what the reader has read (sensor counts are sensor-values).

    ``invalid_npho`` = ``npho_nan + npho_inf + npho_sentinel``; ``invalid_time`` counts every
    sensor whose time is not valid, including those with invalid npho
    (= ``invalid_npho + time_nan + time_inf + time_sentinel + time_low_light``).
    """

    events: int = 0
    sensors: int = 0
    invalid_npho: int = 0
    npho_nan: int = 0
    npho_inf: int = 0
    npho_sentinel: int = 0
    invalid_time: int = 0
    time_nan: int = 0
    time_inf: int = 0
    time_sentinel: int = 0
    time_low_light: int = 0
    events_without_valid_sensor: int = 0

    @property
    def fraction_invalid_npho(self) -> float:
        """Fraction of sensor values with invalid npho (0 when nothing was read)."""
        return self.invalid_npho / self.sensors if self.sensors else 0.0

    @property
    def fraction_invalid_time(self) -> float:
        """Fraction of sensor values with invalid time (0 when nothing was read)."""
        return self.invalid_time / self.sensors if self.sensors else 0.0

    def add(self, other: "ReaderStats") -> None:
        """Add another set of counts to this one."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict:
        """Counts plus the two invalid fractions (JSON-serialisable)."""
        record = asdict(self)
        record["fraction_invalid_npho"] = self.fraction_invalid_npho
        record["fraction_invalid_time"] = self.fraction_invalid_time
        return record


def apply_validity(npho: np.ndarray, time: np.ndarray, time_npho_threshold: float,
                   stats: ReaderStats) -> tuple[np.ndarray, np.ndarray]:
    """Masks from raw (N, 4760) float32 npho and time, in place; returns (valid_npho, valid_time).

    Invalid npho becomes 0, invalid time becomes 0. Counts go into ``stats``. Works in blocks of
    events that fit the CPU cache (the passes are memory-bound).
    """
    valid_npho = np.empty(npho.shape, dtype=bool)
    valid_time = np.empty(npho.shape, dtype=bool)
    for start in range(0, npho.shape[0], CACHE_BLOCK_EVENTS):
        rows = slice(start, start + CACHE_BLOCK_EVENTS)
        _validity_block(npho[rows], time[rows], np.float32(time_npho_threshold), stats,
                        valid_npho[rows], valid_time[rows])
    stats.events += npho.shape[0]
    stats.sensors += npho.size
    return valid_npho, valid_time


def _validity_block(npho, time, threshold, stats, valid_npho, valid_time) -> None:
    masks = validity_masks(npho, time, threshold)
    valid_npho[...], valid_time[...] = masks
    n_values = npho.size
    n_valid_npho = int(np.count_nonzero(valid_npho))
    n_valid_time = int(np.count_nonzero(valid_time))
    if n_valid_npho != n_values:
        bad = npho[~valid_npho]
        n_nan = int(np.count_nonzero(np.isnan(bad)))
        n_inf = int(np.count_nonzero(np.isinf(bad)))
        stats.npho_nan += n_nan
        stats.npho_inf += n_inf
        stats.npho_sentinel += bad.size - n_nan - n_inf
        stats.invalid_npho += bad.size
        store_where_valid(npho, valid_npho)
        stats.events_without_valid_sensor += int(np.count_nonzero(~valid_npho.any(axis=1)))
    if n_valid_time != n_valid_npho:  # why the others have no time: bad value or too little light
        bad_time = valid_npho & ~valid_values(time)
        n_bad = int(np.count_nonzero(bad_time))
        n_nan = int(np.count_nonzero(np.isnan(time) & bad_time))
        n_inf = int(np.count_nonzero(np.isinf(time) & bad_time))
        stats.time_nan += n_nan
        stats.time_inf += n_inf
        stats.time_sentinel += n_bad - n_nan - n_inf
        stats.time_low_light += n_valid_npho - n_bad - n_valid_time
    stats.invalid_time += n_values - n_valid_time
    if n_valid_time != n_values:
        store_where_valid(time, valid_time)
