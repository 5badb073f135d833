"""The block-prefiltered k-earliest selection (xecreco.earliest) selects the same values as a
plain np.partition of every row: ties, NaN at usable sensors, rows with few usable sensors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from xecreco.earliest import BLOCK_SENSORS, mean_earliest
from xecreco.io.batch import N_SENSORS

torch.set_num_threads(1)


def _by_partition(time_s, usable, k):
    """The k-earliest mean written plainly: a masked copy, np.partition, NaN counted as absent."""
    masked = np.where(usable & ~np.isnan(time_s), time_s, np.float32(np.inf))
    earliest = np.partition(masked.astype(np.float32), k - 1, axis=1)[:, :k].astype(np.float64)
    finite = np.isfinite(earliest)
    counts = finite.sum(axis=1)
    sums = np.where(finite, earliest, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0), counts > 0


@pytest.mark.parametrize("k", [1, 10, 40])
def test_block_prefilter_selects_the_k_smallest_values_with_ties(k):
    rng = np.random.default_rng(11)
    n = 300
    # few distinct values: many ties across blocks, including at the k-th value
    time = (rng.integers(0, 6, (n, N_SENSORS)) * 1e-9 + 2e-8).astype(np.float32)
    usable = rng.random((n, N_SENSORS)) < 0.3
    usable[0] = False
    usable[1] = False
    usable[1, [5, 700, 4000]] = True  # fewer usable sensors than k
    time[2, 3 * BLOCK_SENSORS + 1] = 1e-12  # a lone early time in one block
    usable[2, 3 * BLOCK_SENSORS + 1] = True
    got, found = mean_earliest(time, usable, k)
    want, want_found = _by_partition(time, usable, k)
    np.testing.assert_array_equal(found, want_found)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert not found[0] and found[1] and found[2]


def test_nan_at_a_usable_sensor_is_never_counted():
    rng = np.random.default_rng(12)
    time = rng.normal(3e-8, 4e-9, (20, N_SENSORS)).astype(np.float32)
    usable = rng.random((20, N_SENSORS)) < 0.1
    nan_at = np.flatnonzero(usable[3])[:4]
    time[3, nan_at] = np.nan  # usable but NaN: ranks last, not averaged
    got, found = mean_earliest(time, usable, 10)
    want, want_found = _by_partition(time, usable, 10)
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(found, want_found)
    np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


def test_numpy_only_path_and_tensor_path_agree_with_the_block_path(monkeypatch):
    rng = np.random.default_rng(13)
    time = rng.normal(3e-8, 4e-9, (50, N_SENSORS)).astype(np.float32)
    usable = rng.random((50, N_SENSORS)) < 0.05
    blocked = mean_earliest(time, usable, 10)
    tensor = mean_earliest(torch.from_numpy(time).double(), torch.from_numpy(usable), 10)
    np.testing.assert_allclose(tensor[0].numpy(), blocked[0], rtol=1e-12)
    monkeypatch.setitem(sys.modules, "torch", None)
    plain = mean_earliest(time, usable, 10)
    np.testing.assert_array_equal(plain[1], blocked[1])
    np.testing.assert_allclose(plain[0], blocked[0], rtol=1e-15, atol=0)
