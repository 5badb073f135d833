"""Grouped dead channels in the masked models' training masks (issue 14 item 3): ``masking.
max_groups`` adds 0..max_groups whole 8 x 4 readout groups per event, the simulation's tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.errors import UserError
from xecreco.geometry.constants import N_MPPC
from xecreco.models.masked.network import build_masked_model, resolve_masked_config
from xecreco.sim.dead import group_tiles, sensor_group_index

LOCAL = {"preset": "local"}


def _model(**masking):
    config = resolve_masked_config(dict(LOCAL, masking={"mode": "dead", **masking}),
                                   task="inpainter")
    return build_masked_model(config)


def _whole_tiles(mask: np.ndarray) -> list[int]:
    index = sensor_group_index()
    return [t for t in range(len(group_tiles())) if mask[index == t].all()]


def test_group_masks_are_whole_tiles_uniform_in_count():
    torch.manual_seed(3)
    n = 600
    valid = torch.ones(n, 4760, dtype=torch.bool)
    plain = _model(max_fraction=0.0, cluster_rate=0.0)
    assert not plain.draw_mask(valid).any()  # max_groups 0 (the default): no groups
    model = _model(max_fraction=0.0, cluster_rate=0.0, max_groups=3)
    mask = model.draw_mask(valid).numpy()
    assert mask.shape == (n, 4760)
    assert not mask[:, N_MPPC:].any()
    index = sensor_group_index()
    counts = []
    for event in mask:
        tiles = _whole_tiles(event)
        # every hidden sensor belongs to a whole hidden tile: contiguous blocks only
        assert np.array_equal(np.isin(index, tiles), event)
        counts.append(len(tiles))
    freq = np.bincount(counts, minlength=4) / n
    assert np.all(np.abs(freq - 0.25) < 0.06)  # 0, 1, 2, 3 groups equally often
    assert mask.sum(axis=1).max() <= 3 * 32


def test_groups_add_to_the_scattered_pattern_and_respect_validity():
    torch.manual_seed(0)
    valid = torch.ones(200, 4760, dtype=torch.bool)
    valid[:, :44] = False  # first MPPC row invalid in the input: never hidden
    model = _model(max_groups=4)
    mask = model.draw_mask(valid).numpy()
    assert not mask[:, :44].any()
    without = _model()
    torch.manual_seed(0)
    base = without.draw_mask(valid).numpy()
    # about 2 extra groups of (mean) 23 MPPCs per event on top of the recipe's 3.4 %
    extra = mask.sum(axis=1).mean() - base.sum(axis=1).mean()
    assert 30 < extra < 70
    assert np.mean([len(_whole_tiles(e)) for e in mask]) == pytest.approx(2.0, abs=0.35)


def test_max_groups_is_checked_and_kept_in_the_config():
    config = resolve_masked_config(dict(LOCAL, masking={"mode": "dead", "max_groups": 2}),
                                   task="inpainter")
    assert config["masking"]["max_groups"] == 2
    assert resolve_masked_config(config, task="inpainter") == config
    assert resolve_masked_config(LOCAL, task="inpainter")["masking"]["max_groups"] == 0
    for bad in (-1, 133, 1.5, True):
        with pytest.raises(UserError, match="masking.max_groups"):
            resolve_masked_config(dict(LOCAL, masking={"mode": "dead", "max_groups": bad}),
                                  task="inpainter")
