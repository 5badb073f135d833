"""Dead channels: a fixed mask of the simulated detector, from a list file or a fraction + seed.

Dead sensors carry the MEG sentinel (1e10) in ``npho`` and ``time`` and ``dead = True``; the
undamaged values stay in ``nphoClean`` / ``timeClean`` for scoring inpainting.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS
from xecreco.sim.config import SimConfig


def read_dead_list(path) -> np.ndarray:
    """Sensor ids from a text file (whitespace or comma separated, '#' starts a comment)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"dead-channel list {path}: cannot read ({exc.strerror})") from None
    ids = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for token in re.split(r"[\s,]+", line.split("#", 1)[0].strip()):
            if not token:
                continue
            try:
                value = int(token)
            except ValueError:
                raise UserError(
                    f"dead-channel list {path} line {lineno}: {token!r} is not a sensor id "
                    "(expected integers 0-4759)"
                ) from None
            if not 0 <= value < N_SENSORS:
                raise UserError(
                    f"dead-channel list {path} line {lineno}: sensor id {value} outside "
                    f"0-{N_SENSORS - 1}"
                )
            ids.append(value)
    return np.unique(np.asarray(ids, dtype=np.int64))


def dead_mask(config: SimConfig) -> np.ndarray:
    """(4760,) bool mask of dead sensors: the list file if given, else ``round(dead_fraction *
    4760)`` sensors drawn with ``dead_seed``."""
    mask = np.zeros(N_SENSORS, dtype=bool)
    if config.dead_list:
        mask[read_dead_list(config.dead_list)] = True
    elif config.dead_fraction > 0:
        rng = np.random.default_rng(np.random.SeedSequence([config.dead_seed, 0xDEAD]))
        n_dead = int(round(config.dead_fraction * N_SENSORS))
        mask[rng.choice(N_SENSORS, n_dead, replace=False)] = True
    return mask
