"""Dead channels: a fixed mask of the simulated detector, from a list file or a fraction + seed.

Dead sensors carry the MEG sentinel (1e10) in ``npho`` and ``time`` and ``dead = True``; the
undamaged values stay in ``nphoClean`` / ``timeClean`` for scoring inpainting.
"""

from __future__ import annotations


import numpy as np

from xecreco.io.deadlist import read_dead_list
from xecreco.geometry import N_SENSORS
from xecreco.sim.config import SimConfig


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
