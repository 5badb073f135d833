"""xecreco.io.prefetch: background work ahead, in order, errors raised as themselves, bounded,
and nothing left running after an early stop."""

from __future__ import annotations

import threading

import pytest

from xecreco.io.prefetch import prefetch


def test_results_come_in_order_and_are_those_of_fn():
    assert list(prefetch(range(50), lambda x: x * x, depth=3)) == [x * x for x in range(50)]
    assert list(prefetch(iter([]))) == []


def test_an_error_in_the_background_is_the_original_exception_after_the_earlier_items():
    error = KeyError("branch 'npho'")

    def source():
        yield 1
        yield 2
        raise error

    got = []
    with pytest.raises(KeyError) as caught:
        for item in prefetch(source(), name="test-prefetch"):
            got.append(item)
    assert caught.value is error
    assert got == [1, 2]


def test_the_background_stays_at_most_depth_items_ahead_and_stops_on_break():
    produced = []
    closed = threading.Event()

    def source():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    items = prefetch(source(), depth=2, name="test-bounded")
    assert next(items) == 0
    items.close()  # what a break or an exception in the caller does
    assert closed.is_set()  # the source was closed in its thread before close() returned
    assert len(produced) <= 4  # the item handed out, the queue (2) and one in hand
    assert not [t for t in threading.enumerate() if t.name == "test-bounded"]


def test_bad_depth():
    with pytest.raises(ValueError):
        list(prefetch(range(3), depth=0))


def test_normalised_batches_ahead_give_the_features_of_each_batch_in_order():
    import numpy as np

    from xecreco.io.batch import N_SENSORS, EventBatch
    from xecreco.normalization import NormalizationSpec, normalised_batches

    rng = np.random.default_rng(3)
    batches = []
    for k in range(4):
        npho = rng.exponential(400.0, (5 + k, N_SENSORS)).astype(np.float32)
        time = rng.normal(1e-7, 2e-9, npho.shape).astype(np.float32)
        ids = np.arange(len(npho), dtype=np.int64)
        batches.append(EventBatch(npho=npho, time=time, valid_npho=npho > 20,
                                  valid_time=npho > 50, run=ids, event=ids, entry=ids))
    spec = NormalizationSpec()
    got = list(normalised_batches(iter(batches), spec))
    assert [b for b, _, _ in got] == batches
    for (_, features, reference), batch in zip(got, batches):
        want, want_reference = spec.features_and_reference(batch)
        np.testing.assert_array_equal(features, want)
        np.testing.assert_array_equal(reference, want_reference)
