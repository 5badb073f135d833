"""Dead channels: a fixed mask of the simulated detector, from a list file, or drawn from
``dead_seed`` as scattered single channels plus whole readout groups.

Readout-group model (physics.md section 6: channels also fail in groups sharing a readout board
or cable): the inner MPPC face (93 azimuth rows x 44 z columns, id = 44 row + col) is tiled into
fixed blocks of ``rows`` x ``cols`` neighbouring MPPCs, aligned to row 0 / column 0 (default
:data:`GROUP_ROWS` x :data:`GROUP_COLS` = 8 x 4 = 32 channels, the tile of one readout board;
11 x 12 = 132 tiles, the 12th tile row holds the last 5 rows only, 20 channels). This module is
the one definition of the groups: the simulation (``dead_groups`` distinct tiles of a file's
fixed mask), the regressor's training augmentation (``augment.dead_groups``, new tiles per event,
:func:`draw_group_masks`) and the masked models' training masks use it.
The scattered channels (``dead_fraction``) are drawn exactly as without groups, from their own
random stream, so adding groups never moves them.

Dead sensors carry the MEG sentinel (1e10) in ``npho`` and ``time`` and ``dead = True``; the
undamaged values stay in ``nphoClean`` / ``timeClean`` for scoring inpainting.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import N_SENSORS
from xecreco.geometry.constants import INNER_N_COLS, INNER_N_ROWS
from xecreco.io.deadlist import read_dead_list

if TYPE_CHECKING:  # SimConfig imports the tile defaults from here
    from xecreco.sim.config import SimConfig

#: default readout-group tile: MPPC rows (azimuth) x columns (z) of one readout board
GROUP_ROWS = 8
GROUP_COLS = 4

#: random streams of the dead-channel draws (with dead_seed)
_SCATTERED_STREAM = 0xDEAD
_GROUP_STREAM = 0x6A0


def group_tiles(rows: int = GROUP_ROWS, cols: int = GROUP_COLS) -> list[np.ndarray]:
    """The readout-group tiles of ``rows`` x ``cols`` MPPCs: one int64 array of MPPC ids per
    tile, row-major tile order."""
    if rows < 1 or cols < 1:
        raise UserError(f"dead-channel groups need rows >= 1 and cols >= 1, got {rows} x {cols}")
    grid = np.arange(INNER_N_ROWS * INNER_N_COLS).reshape(INNER_N_ROWS, INNER_N_COLS)
    return [grid[r:r + rows, c:c + cols].ravel()
            for r in range(0, INNER_N_ROWS, rows) for c in range(0, INNER_N_COLS, cols)]


@lru_cache(maxsize=8)
def sensor_group_index(rows: int = GROUP_ROWS, cols: int = GROUP_COLS) -> np.ndarray:
    """(4760,) int64: the tile (index into :func:`group_tiles`) of every sensor, -1 for the
    PMTs (read-only; the lookup table of the per-event draws)."""
    index = np.full(N_SENSORS, -1, dtype=np.int64)
    for k, ids in enumerate(group_tiles(rows, cols)):
        index[ids] = k
    index.setflags(write=False)
    return index


def check_group_count(n_groups: int, rows: int, cols: int, what: str) -> None:
    """UserError naming ``what`` (a config key) unless 0 <= ``n_groups`` <= number of tiles."""
    n_tiles = len(group_tiles(rows, cols))
    if not 0 <= n_groups <= n_tiles:
        raise UserError(f"{what}: {n_groups} readout groups is not in [0, {n_tiles}], the "
                        f"number of {rows} x {cols} MPPC groups on the inner face")


def draw_group_masks(n_events: int, n_groups, rng: np.random.Generator,
                     rows: int = GROUP_ROWS, cols: int = GROUP_COLS) -> np.ndarray:
    """(n_events, 4760) bool: per event, ``n_groups`` distinct readout-group tiles drawn
    uniformly (new tiles for every event). ``n_groups`` is an int or an (n_events,) int array
    (per-event counts, each in [0, number of tiles])."""
    index = sensor_group_index(rows, cols)
    n_tiles = int(index.max()) + 1
    counts = np.broadcast_to(np.asarray(n_groups, dtype=np.int64), (n_events,))
    if counts.size and (counts.min() < 0 or counts.max() > n_tiles):
        raise UserError(f"dead-channel groups: counts must be in [0, {n_tiles}], got "
                        f"{counts.min()}..{counts.max()}")
    # a random permutation of the tiles per event (uniform keys sorted); an event keeps the
    # first ``count`` tiles of its permutation. Column n_tiles (the PMTs' -1) is never dead.
    order = np.argsort(rng.random((n_events, n_tiles)), axis=1)
    hit = np.zeros((n_events, n_tiles + 1), dtype=bool)
    np.put_along_axis(hit, order, np.arange(n_tiles) < counts[:, None], axis=1)
    return hit[:, index]


def split_dead_mask(mask: np.ndarray, rows: int = GROUP_ROWS,
                    cols: int = GROUP_COLS) -> tuple[np.ndarray, np.ndarray]:
    """(grouped, scattered) parts of a dead mask ((4760,) or (N, 4760) bool, True = dead):
    ``grouped`` holds the sensors of the readout-group tiles that are dead as a whole, and
    ``scattered`` every other dead sensor (single channels, PMTs, partly dead tiles)."""
    mask = np.asarray(mask, dtype=bool)
    index = sensor_group_index(rows, cols)
    n_tiles = int(index.max()) + 1
    on_tiles = index >= 0
    flat = mask.reshape(-1, mask.shape[-1])
    sizes = np.bincount(index[on_tiles], minlength=n_tiles)
    rows_i, cols_i = np.nonzero(flat[:, on_tiles])
    dead_per_tile = np.zeros((flat.shape[0], n_tiles), dtype=np.int64)
    np.add.at(dead_per_tile, (rows_i, index[on_tiles][cols_i]), 1)
    whole = np.zeros((flat.shape[0], n_tiles + 1), dtype=bool)
    whole[:, :n_tiles] = dead_per_tile == sizes
    grouped = whole[:, index] & flat
    return grouped.reshape(mask.shape), (flat & ~grouped).reshape(mask.shape)


def dead_group_ids(config: SimConfig) -> list[np.ndarray]:
    """The ``dead_groups`` tiles drawn with ``dead_seed`` (each an array of MPPC ids)."""
    if config.dead_groups <= 0:
        return []
    tiles = group_tiles(config.dead_group_rows, config.dead_group_cols)
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
