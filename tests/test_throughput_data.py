"""The fast data path (issue 13) gives exactly what the straightforward one gave: the time
reference by topk, features with a precomputed reference, masked-store dead-channel augmentation
and the preallocated shuffle buffer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xecreco.io.batch import N_SENSORS, EventBatch
from xecreco.normalization import NormalizationSpec, _mean_earliest
from xecreco.train.config import AugmentConfig, DataConfig

from train_helpers import write_training_file

torch.set_num_threads(1)


def _mean_earliest_by_partition(time_s, usable, k):
    """The k-earliest mean written plainly: a masked copy and np.partition."""
    masked = np.where(usable, time_s, np.float32(np.inf)).astype(np.float32)
    earliest = np.partition(masked, k - 1, axis=1)[:, :k].astype(np.float64)
    finite = np.isfinite(earliest)
    counts = finite.sum(axis=1)
    sums = np.where(finite, earliest, 0.0).sum(axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0), counts > 0


def test_topk_reference_selects_what_a_partition_selects():
    rng = np.random.default_rng(5)
    time = rng.normal(3e-8, 4e-9, (40, N_SENSORS)).astype(np.float32)
    usable = rng.random((40, N_SENSORS)) < 0.05
    usable[0] = False  # nothing usable
    usable[1] = False
    usable[1, :3] = True  # fewer usable sensors than k
    time[2, ~usable[2]] = np.nan  # NaN at unusable sensors is ignored
    for k in (1, 10, 40):
        got, found = _mean_earliest(time, usable, k)
        want, want_found = _mean_earliest_by_partition(time, usable, k)
        np.testing.assert_array_equal(found, want_found)
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)
    assert not found[0] and found[1]


def test_reference_without_torch_loaded_is_the_same(monkeypatch):
    """Numpy-only callers (torch not imported) take np.partition and get the same means."""
    import sys

    rng = np.random.default_rng(6)
    time = rng.normal(3e-8, 4e-9, (30, N_SENSORS)).astype(np.float32)
    usable = rng.random((30, N_SENSORS)) < 0.03
    with_torch = _mean_earliest(time, usable, 10)
    monkeypatch.setitem(sys.modules, "torch", None)
    without = _mean_earliest(time, usable, 10)
    np.testing.assert_array_equal(without[1], with_torch[1])
    np.testing.assert_allclose(without[0], with_torch[0], rtol=1e-15, atol=0)


def _batch(n=70, seed=1):
    rng = np.random.default_rng(seed)
    npho = rng.exponential(300.0, (n, N_SENSORS)).astype(np.float32)
    time = rng.normal(3e-8, 3e-9, (n, N_SENSORS)).astype(np.float32)
    valid_npho = rng.random((n, N_SENSORS)) > 0.02
    valid_time = valid_npho & (npho > 50)
    npho[~valid_npho] = 0.0
    time[~valid_time] = 0.0
    ids = np.arange(n, dtype=np.int64)
    return EventBatch(npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time,
                      run=ids * 0, event=ids, entry=ids)


def test_features_with_a_given_reference_and_into_a_buffer_are_the_same():
    spec = NormalizationSpec()
    batch = _batch()
    plain = spec.features(batch)
    features, reference = spec.features_and_reference(batch)
    np.testing.assert_array_equal(reference, spec.time_reference_ns(batch))
    np.testing.assert_array_equal(features, plain)
    buffer = np.full((100, N_SENSORS, 2), 7.0, dtype=np.float32)
    spec.features(batch, out=buffer[10:80], reference_ns=reference)
    np.testing.assert_array_equal(buffer[10:80], plain)
    assert np.all(buffer[:10] == 7.0) and np.all(buffer[80:] == 7.0)
    # time channel: (t - reference) / 5 ns at valid times, 0 elsewhere
    t_ns = batch.time.astype(np.float64) * 1e9
    expected = np.where(batch.valid_time, (t_ns - reference[:, None]) / 5.0, 0.0)
    np.testing.assert_allclose(plain[..., 1], expected, atol=2e-5)


def test_dead_channel_augmentation_matches_fancy_indexing():
    from xecreco.train.augment import augment_batch

    batch = _batch(n=33, seed=2)
    cfg = AugmentConfig(dead_fraction=0.1)
    augmented, factor = augment_batch(batch, cfg, np.random.default_rng(11))
    assert factor is None
    dead = np.random.default_rng(11).random(batch.npho.shape) < 0.1
    npho, time = batch.npho.copy(), batch.time.copy()
    npho[dead] = 0.0
    time[dead] = 0.0
    np.testing.assert_array_equal(augmented.npho, npho)
    np.testing.assert_array_equal(augmented.time, time)
    np.testing.assert_array_equal(augmented.valid_npho, batch.valid_npho & ~dead)
    np.testing.assert_array_equal(augmented.valid_time, batch.valid_time & ~dead)
    assert augmented.npho is not batch.npho and np.any(batch.npho[dead] != 0)  # input untouched


def _reference_stream(stream):
    """ShuffledStream's batches with the buffer kept by concatenation (the original code)."""
    from xecreco.io.reader import iterate_batches
    from xecreco.train.augment import augment_batch
    from xecreco.train.data import _take, split_range

    def concat(pools):
        return {k: (concat([p[k] for p in pools]) if isinstance(pools[0][k], dict)
                    else np.concatenate([p[k] for p in pools])) for k in pools[0]}

    start, stop = split_range(*stream.entry_range, 1, 0)
    rng = np.random.default_rng([stream.seed, stream.epoch, stream.rank, 0])
    step = stream.step_events
    chunks = [(s, min(s + step, stop)) for s in range(start, stop, step)]
    pool = None
    for index in rng.permutation(len(chunks)):
        c_start, c_stop = chunks[index]
        for batch in iterate_batches(stream.files, tree=stream.tree, truth=stream.truth,
                                     step_events=step, entry_start=c_start, entry_stop=c_stop):
            batch, factor = augment_batch(batch, stream.augment, rng)
            part = stream.encoder.encode(batch, energy_factor=factor)
            pool = part if pool is None else concat([pool, part])
        size = len(pool["features"])
        if size >= stream.shuffle_buffer:
            perm = rng.permutation(size)
            n_out = (size - stream.shuffle_buffer // 2) // stream.batch_size * stream.batch_size
            for b in range(0, n_out, stream.batch_size):
                yield _take(pool, perm[b:b + stream.batch_size])
            pool = _take(pool, perm[n_out:])
    perm = rng.permutation(len(pool["features"]))
    for b in range(0, len(perm) - stream.batch_size + 1, stream.batch_size):
        yield _take(pool, perm[b:b + stream.batch_size])


@pytest.mark.parametrize("step_events, shuffle_buffer, batch_size", [(32, 48, 8), (50, 20, 16)])
def test_preallocated_shuffle_buffer_yields_the_original_batches(tmp_path, step_events,
                                                                 shuffle_buffer, batch_size):
    from xecreco.train.data import RootSource

    path = tmp_path / "train.root"
    write_training_file(path, 230)
    cfg = DataConfig(train_files=[str(path)], val_fraction=0.0, step_events=step_events,
                     shuffle_buffer=shuffle_buffer, batch_size=batch_size, scaling_events=200)
    source = RootSource(cfg, AugmentConfig(dead_fraction=0.05), ["energy", "time", "u"], {},
                        seed=4)
    stream = source.train_batches(epoch=1, rank=0, world=1)
    got = list(stream)
    want = list(_reference_stream(stream))
    assert len(got) == len(want) > 5
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g["features"].numpy(), w["features"])
        for name in w["targets"]:
            np.testing.assert_array_equal(g["targets"][name].numpy(), w["targets"][name])
