"""Grouped dead channels in training (issue 14 item 3): whole 8 x 4 readout groups of inner MPPCs,
new tiles for every event, from the simulation's one group definition (xecreco.sim.dead)."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.geometry.constants import INNER_N_COLS, N_MPPC
from xecreco.io.batch import EventBatch
from xecreco.sim.dead import draw_group_masks, group_tiles, sensor_group_index
from xecreco.train.augment import augment_batch
from xecreco.train.config import AugmentConfig, config_from_dict


def _batch(n: int) -> EventBatch:
    valid_time = np.ones((n, 4760), bool)
    valid_time[:, ::7] = False  # dim sensors: no time, but a valid npho
    return EventBatch(npho=np.full((n, 4760), 100.0, np.float32),
                      time=np.full((n, 4760), 1e-7, np.float32),
                      valid_npho=np.ones((n, 4760), bool), valid_time=valid_time,
                      run=np.zeros(n, np.int64), event=np.arange(n), entry=np.arange(n))


def _is_one_tile(ids: np.ndarray) -> bool:
    """True when ``ids`` fill exactly one aligned 8 x 4 block of the MPPC grid (5 x 4 in the
    last tile row of the 93-row face)."""
    rows, cols = np.divmod(ids, INNER_N_COLS)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    full = len(ids) == height * width == len(np.unique(ids))
    return bool(full and width == 4 and rows.min() % 8 == 0 and cols.min() % 4 == 0
                and (height == 8 or (height == 5 and rows.max() == 92)))


def test_group_index_matches_the_tiles():
    index = sensor_group_index()
    tiles = group_tiles()
    assert index.shape == (4760,) and len(tiles) == 132
    assert np.all(index[N_MPPC:] == -1) and np.all(index[:N_MPPC] >= 0)
    for k, ids in enumerate(tiles):
        assert np.all(index[ids] == k) and _is_one_tile(ids)


def test_drawn_groups_are_whole_distinct_tiles_new_for_every_event():
    n, k = 200, 3
    masks = draw_group_masks(n, k, np.random.default_rng(5))
    assert masks.shape == (n, 4760) and masks.dtype == bool
    index = sensor_group_index()
    for event in masks:
        assert not event[N_MPPC:].any()
        tiles = np.unique(index[event])
        assert len(tiles) == k
        for t in tiles:  # whole tiles only, each a contiguous block
            ids = np.flatnonzero(index == t)
            assert event[ids].all() and _is_one_tile(ids)
    sizes = masks.sum(axis=1)
    assert set(sizes) <= {96, 84, 72, 60}  # three 32-channel tiles, some 20-channel ones
    assert len({tuple(np.flatnonzero(m)) for m in masks}) > 190  # new tiles per event
    # every tile about equally often: 200 * 3 / 132 = 4.5 per tile
    counts = np.bincount(index[np.nonzero(masks)[1]], minlength=132) / np.bincount(index[:N_MPPC])
    assert counts.max() < 15 and (counts > 0).mean() > 0.9
    again = draw_group_masks(n, k, np.random.default_rng(5))
    np.testing.assert_array_equal(masks, again)


def test_per_event_counts_and_limits():
    counts = np.array([0, 1, 5, 132])
    masks = draw_group_masks(4, counts, np.random.default_rng(0))
    index = sensor_group_index()
    assert [len(np.unique(index[m])) for m in masks] == [0, 1, 5, 132]
    assert masks[3, :N_MPPC].all()
    with pytest.raises(UserError, match="in \\[0, 132\\]"):
        draw_group_masks(2, 133, np.random.default_rng(0))


def test_augmentation_kills_groups_plus_scattered_sensors():
    n = 300
    batch = _batch(n)
    cfg = AugmentConfig(dead_fraction=0.02, dead_groups=3)
    out, factor = augment_batch(batch, cfg, np.random.default_rng(1))
    assert factor is None
    dead = ~out.valid_npho
    assert dead.shape == (n, 4760)
    assert np.array_equal(~out.valid_time, dead | ~batch.valid_time)
    assert np.all(out.npho[dead] == 0) and np.all(out.time[dead] == 0)
    assert batch.valid_npho.all() and np.all(batch.npho == 100.0)  # input untouched
    # expected dead fraction: groups g = 3 tiles (mean tile size 3080/132) plus 2 % of the rest
    group_fraction = 3 * (N_MPPC / 132) / 4760
    expected = group_fraction + 0.02 * (1 - group_fraction)
    assert dead.mean() == pytest.approx(expected, rel=0.03)
    # each event holds three whole dead tiles
    index = sensor_group_index()
    for event in dead[:40]:
        on_inner = index[event]
        whole = [t for t in np.unique(on_inner) if event[index == t].all()]
        assert len(whole) == 3
    # groups alone: nothing outside the inner face dies, dead sensors are whole tiles
    only, _ = augment_batch(batch, AugmentConfig(dead_groups=2), np.random.default_rng(2))
    only_dead = ~only.valid_npho
    assert not only_dead[:, N_MPPC:].any()
    assert np.all(only_dead.sum(axis=1) <= 64) and np.all(only_dead.sum(axis=1) >= 40)


def test_config_key():
    base = {"task": {"name": "regressor"}, "data": {"train_files": ["x.root"]}}
    assert config_from_dict({**base, "augment": {"dead_groups": 3}}).augment.dead_groups == 3
    for bad in (-1, 133):
        with pytest.raises(UserError, match="augment.dead_groups"):
            config_from_dict({**base, "augment": {"dead_groups": bad}})
