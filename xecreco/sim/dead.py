"""Dead channels: a fixed mask of the simulated detector, from a list file, or drawn from
``dead_seed`` as scattered single channels plus whole readout groups.

Readout-group model (physics.md section 6: channels also fail in groups sharing a readout board
or cable): the inner MPPC face (93 azimuth rows x 44 z columns, id = 44 row + col) is tiled into
fixed blocks of ``dead_group_rows`` x ``dead_group_cols`` neighbouring MPPCs, aligned to row 0 /
column 0 (default 8 x 4 = 32 channels, the tile of one readout board; 11 x 12 = 132 tiles, the
12th tile row holds the last 5 rows only, 20 channels). ``dead_groups`` distinct tiles are dead.
The scattered channels (``dead_fraction``) are drawn exactly as without groups, from their own
random stream, so adding groups never moves them.

Dead sensors carry the MEG sentinel (1e10) in ``npho`` and ``time`` and ``dead = True``; the
undamaged values stay in ``nphoClean`` / ``timeClean`` for scoring inpainting.
"""

from __future__ import annotations

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS
from xecreco.geometry.constants import INNER_N_COLS, INNER_N_ROWS
from xecreco.io.deadlist import read_dead_list
from xecreco.sim.config import SimConfig

#: random streams of the dead-channel draws (with dead_seed)
_SCATTERED_STREAM = 0xDEAD
_GROUP_STREAM = 0x6A0


def group_tiles(config: SimConfig) -> list[np.ndarray]:
    """The readout-group tiles: one int64 array of MPPC ids per tile, row-major tile order."""
    rows, cols = config.dead_group_rows, config.dead_group_cols
    grid = np.arange(INNER_N_ROWS * INNER_N_COLS).reshape(INNER_N_ROWS, INNER_N_COLS)
    return [grid[r:r + rows, c:c + cols].ravel()
            for r in range(0, INNER_N_ROWS, rows) for c in range(0, INNER_N_COLS, cols)]


def dead_group_ids(config: SimConfig) -> list[np.ndarray]:
    """The ``dead_groups`` tiles drawn with ``dead_seed`` (each an array of MPPC ids)."""
    if config.dead_groups <= 0:
        return []
    tiles = group_tiles(config)
    if config.dead_groups > len(tiles):
        raise UserError(
            f"sim config: dead_groups {config.dead_groups} exceeds the {len(tiles)} readout groups "
            f"of {config.dead_group_rows} x {config.dead_group_cols} MPPCs on the inner face"
        )
    rng = np.random.default_rng(np.random.SeedSequence([config.dead_seed, _GROUP_STREAM]))
    chosen = rng.choice(len(tiles), config.dead_groups, replace=False)
    return [tiles[i] for i in sorted(chosen)]


def dead_mask(config: SimConfig) -> np.ndarray:
    """(4760,) bool mask of dead sensors: the list file if given, else ``round(dead_fraction *
    4760)`` scattered sensors drawn with ``dead_seed`` plus the ``dead_groups`` readout groups."""
    mask = np.zeros(N_SENSORS, dtype=bool)
    if config.dead_list:
        mask[read_dead_list(config.dead_list)] = True
        return mask
    if config.dead_fraction > 0:
        rng = np.random.default_rng(np.random.SeedSequence([config.dead_seed, _SCATTERED_STREAM]))
        n_dead = int(round(config.dead_fraction * N_SENSORS))
        mask[rng.choice(N_SENSORS, n_dead, replace=False)] = True
    for ids in dead_group_ids(config):
        mask[ids] = True
    return mask
