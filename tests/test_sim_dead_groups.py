"""Grouped dead channels (issue 14 item 3): whole readout groups of neighbouring MPPCs, seeded,
on top of the scattered ones, written like every dead channel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from xecreco.geometry import design_geometry
from xecreco.geometry.constants import INNER_N_COLS, N_MPPC
from xecreco.sim import SimConfig, simulate_events
from xecreco.sim.dead import dead_group_ids, dead_mask

#: neighbouring MPPC centres are 1.51 cm (z) and 1.53 cm (azimuth) apart; diagonals 2.15 cm
_NEIGHBOUR_CM = 1.7


def _components(ids: np.ndarray) -> list[np.ndarray]:
    """Connected clusters of sensors, neighbours by distance of their design positions."""
    pos = design_geometry().position[ids]
    d = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=-1)
    rows, cols = np.nonzero((d < _NEIGHBOUR_CM) & (d > 0))
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(ids), len(ids)))
    n, labels = connected_components(graph, directed=False)
    return [ids[labels == k] for k in range(n)]


def test_groups_are_contiguous_blocks_of_the_right_size():
    config = SimConfig(dead_groups=6, dead_seed=3)
    groups = dead_group_ids(config)
    assert len(groups) == 6
    for ids in groups:
        assert np.all(ids < N_MPPC)
        rows, cols = np.divmod(ids, INNER_N_COLS)
        # one block: every (row, col) of its bounding box, 8 rows x 4 columns (5 rows in the
        # last tile row of the 93-row face)
        height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
        assert len(ids) == height * width == len(np.unique(ids))
        assert width == 4 and (height == 8 or (height == 5 and rows.max() == 92))
        assert rows.min() % 8 == 0 and cols.min() % 4 == 0  # aligned to the board grid
        assert len(_components(ids)) == 1  # contiguous in space, not only in the id table
    mask = dead_mask(config)
    assert mask.sum() == sum(len(ids) for ids in groups)
    assert not mask[N_MPPC:].any()


def test_groups_are_seeded_and_added_to_the_scattered_channels():
    scattered = dead_mask(SimConfig(dead_fraction=0.02))
    both = dead_mask(SimConfig(dead_fraction=0.02, dead_groups=3))
    again = dead_mask(SimConfig(dead_fraction=0.02, dead_groups=3))
    other = dead_mask(SimConfig(dead_fraction=0.02, dead_groups=3, dead_seed=12))
    np.testing.assert_array_equal(both, again)
    assert not np.array_equal(both, other)
    assert np.all(both[scattered])  # the scattered ones do not move
    group_ids = np.concatenate(dead_group_ids(SimConfig(dead_groups=3)))
    expected = scattered.copy()
    expected[group_ids] = True
    np.testing.assert_array_equal(both, expected)
    assert both.sum() == len(np.union1d(np.flatnonzero(scattered), group_ids))


def test_other_group_shapes():
    groups = dead_group_ids(SimConfig(dead_groups=4, dead_group_rows=1, dead_group_cols=22))
    for ids in groups:  # half a row along z
        assert len(ids) == 22 and len(np.unique(ids // INNER_N_COLS)) == 1
        assert len(_components(ids)) == 1
    with pytest.raises(Exception, match="exceeds the 186 readout groups"):
        dead_group_ids(SimConfig(dead_groups=187, dead_group_rows=1, dead_group_cols=22))


def test_grouped_dead_channels_in_events():
    config = SimConfig(dead_groups=2, chunk_events=10)
    events = simulate_events(10, config, seed=4)
    dead = events["dead"]
    ids = np.concatenate(dead_group_ids(config))
    assert np.all(dead[:, ids]) and dead[0].sum() == len(ids) == 64
    assert np.all(events["npho"][dead] == np.float32(1e10))
    assert np.all(events["time"][dead] == np.float32(1e10))
    assert np.all(np.abs(events["nphoClean"][dead]) < 1e9)
    np.testing.assert_array_equal(events["npho"][~dead], events["nphoClean"][~dead])
