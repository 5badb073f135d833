"""BatchReader / iterate_batches: exact values, chunking, entry ranges, masks and counts."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS
from xecreco.io.reader import BatchReader, iterate_batches
from xecreco.io.rootfile import count_entries, list_branches
from xecreco.io.validity import ReaderStats, apply_validity
from xecreco.io.schema import SENTINEL, BranchNames
from xecreco.io.writer import RootWriter


def _concat(batches, attr):
    return np.concatenate([getattr(b, attr) for b in batches]) if batches else np.zeros(0)


@pytest.mark.parametrize("n_events", [0, 1, 3 * 4 + 1])
def test_read_back_exact(input_file_factory, n_events):
    """0, 1 and k x chunk + 1 events come back exactly, in chunks of step_events."""
    path, written = input_file_factory(n_events)
    batches = list(iterate_batches(path, truth=["energyTruth", "uvwTruth"], step_events=4))
    expected_sizes = [4] * (n_events // 4) + ([n_events % 4] if n_events % 4 else [])
    assert [len(b) for b in batches] == expected_sizes
    assert sum(len(b) for b in batches) == n_events
    if n_events == 0:
        return
    npho = _concat(batches, "npho")
    assert npho.dtype == np.float32 and npho.shape == (n_events, N_SENSORS)
    np.testing.assert_array_equal(npho, written["npho"])
    valid_time = _concat(batches, "valid_time")
    np.testing.assert_array_equal(valid_time, written["npho"] >= 50.0)
    time = _concat(batches, "time")
    np.testing.assert_array_equal(time[valid_time], written["time"][valid_time])
    assert np.all(time[~valid_time] == 0.0)
    np.testing.assert_array_equal(_concat(batches, "entry"), np.arange(n_events))
    np.testing.assert_array_equal(_concat(batches, "event"), written["event"])
    assert _concat(batches, "run").dtype == np.int64
    energy = np.concatenate([b.truth["energyTruth"] for b in batches])
    np.testing.assert_array_equal(energy, written["energyTruth"])
    assert batches[0].truth["uvwTruth"].shape == (len(batches[0]), 3)


def test_jagged_sensor_branches_read_like_fixed(input_file_factory):
    fixed_path, written = input_file_factory(9, name="fixed.root", seed=3)
    jagged_path, _ = input_file_factory(9, name="jagged.root", seed=3, jagged=True)
    fixed = list(iterate_batches(fixed_path, step_events=5))
    jagged = list(iterate_batches(jagged_path, step_events=5))
    for a, b in zip(fixed, jagged, strict=True):
        np.testing.assert_array_equal(a.npho, b.npho)
        np.testing.assert_array_equal(a.time, b.time)
        np.testing.assert_array_equal(a.valid_time, b.valid_time)


def test_files_list_global_entries_and_ranges(input_file_factory):
    """Entry numbering is global across files; entry ranges can span a file boundary."""
    first, w1 = input_file_factory(5, name="a.root", seed=1)
    second, w2 = input_file_factory(7, name="b.root", seed=2)
    files = [first, second]
    assert count_entries(files) == 12
    reader = BatchReader(files, entry_start=3, entry_stop=9, step_events=2)
    assert len(reader) == 6
    batches = list(reader)
    np.testing.assert_array_equal(_concat(batches, "entry"), np.arange(3, 9))
    expected = np.concatenate([w1["npho"], w2["npho"]])[3:9]
    np.testing.assert_array_equal(_concat(batches, "npho"), expected)
    # disjoint ranges for two workers cover every entry exactly once
    halves = [BatchReader(files, entry_start=s, entry_stop=e) for s, e in ((0, 6), (6, 100))]
    entries = np.concatenate([b.entry for r in halves for b in r])
    np.testing.assert_array_equal(entries, np.arange(12))
    # a range past the end is empty, not an error
    assert list(BatchReader(files, entry_start=50)) == []


def test_prefetch_gives_identical_batches(input_file_factory):
    path, _ = input_file_factory(11, seed=4)
    with_thread = list(BatchReader(path, step_events=3, prefetch=True))
    without = list(BatchReader(path, step_events=3, prefetch=False))
    assert len(with_thread) == len(without) == 4
    for a, b in zip(with_thread, without):
        np.testing.assert_array_equal(a.npho, b.npho)
        np.testing.assert_array_equal(a.entry, b.entry)


def test_early_stop_with_prefetch_counts_only_yielded(input_file_factory):
    path, _ = input_file_factory(10, seed=5)
    reader = BatchReader(path, step_events=2)
    for index, _batch in enumerate(reader):
        if index == 1:
            break
    assert reader.stats.events == 4


def test_truth_all_and_jagged_pileup(input_file_factory):
    path, written = input_file_factory(6, pileup=True)
    batch = next(iter(iterate_batches(path, truth="all")))
    assert set(batch.truth) == {"energyTruth", "uvwTruth", "nPileup", "pileupEnergy"}
    assert isinstance(batch.truth["pileupEnergy"], ak.Array)
    assert batch.truth["pileupEnergy"].tolist() == written["pileupEnergy"].tolist()
    np.testing.assert_array_equal(batch.truth["nPileup"], written["nPileup"])
    sub = batch.select(slice(1, 3))
    assert sub.truth["pileupEnergy"].tolist() == written["pileupEnergy"][1:3].tolist()


def test_extras_and_renamed_branches(input_file_factory):
    path, written = input_file_factory(
        4, rename={"npho": "nphoton", "time": "tpmt", "energyTruth": "Egamma"}
    )
    batch = next(iter(iterate_batches(
        path, branches={"npho": "nphoton", "time": "tpmt", "energyTruth": "Egamma"},
        truth=["energyTruth"], extras=["uvwTruth"],
    )))
    np.testing.assert_array_equal(batch.npho, written["npho"])
    np.testing.assert_array_equal(batch.truth["energyTruth"], written["energyTruth"])
    np.testing.assert_array_equal(batch.extras["uvwTruth"], written["uvwTruth"])
    assert "nphoton" in list_branches(path)
    names = BranchNames(npho="nphoton", time="tpmt", energyTruth="Egamma")
    again = next(iter(BatchReader(path, branches=names, truth=["energyTruth"])))
    np.testing.assert_array_equal(again.npho, written["npho"])


def test_branch_names_of_a_dict_or_an_instance():
    names = BranchNames(npho="nphoton")
    assert BranchNames.of(names) is names
    assert BranchNames.of({"npho": "nphoton"}) == names
    assert BranchNames.of(None) == BranchNames()
    with pytest.raises(UserError, match="nphoo"):
        BranchNames.of({"nphoo": "x"})


def test_vertex_and_missing_ids(tmp_path):
    rng = np.random.default_rng(0)
    vtx = rng.normal(size=(3, 3))
    path = tmp_path / "v.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"npho": np.ones((3, N_SENSORS), np.float32) * 100,
                      "time": np.zeros((3, N_SENSORS), np.float32), "xyzVTX": vtx})
    batch = next(iter(BatchReader(path, entry_start=1)))
    np.testing.assert_allclose(batch.vertex, vtx[1:].astype(np.float32))
    np.testing.assert_array_equal(batch.run, [0, 0])
    np.testing.assert_array_equal(batch.event, [1, 2])  # event = entry without an event branch
    assert next(iter(BatchReader(path, vertex=False))).vertex is None


def test_step_events_sized_by_memory(input_file_factory):
    path, _ = input_file_factory(3)
    per_event = N_SENSORS * 10 + 64
    assert BatchReader(path, chunk_bytes=100 * per_event).step_events == 100
    assert BatchReader(path).step_events == 64 * 1024 * 1024 // per_event


def test_invalid_values_become_masks_and_are_counted(tmp_path):
    npho = np.full((2, N_SENSORS), 200.0, np.float32)
    time = np.full((2, N_SENSORS), 1e-7, np.float32)
    npho[0, :3] = [np.nan, np.inf, -np.inf]
    npho[1, 3], npho[1, 4] = SENTINEL, 9.5e9
    time[0, 0] = SENTINEL  # npho also invalid: counted once, as invalid npho
    time[0, 10], time[0, 11], time[1, 12], time[1, 13] = np.nan, np.inf, SENTINEL, -np.inf
    npho[1, 20], npho[1, 21] = 49.0, -3.0  # too little light for a time
    path = tmp_path / "bad_values.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"npho": npho, "time": time, "run": np.zeros(2, np.int32),
                      "event": np.arange(2, dtype=np.int32)})
    reader = BatchReader(path)
    batch = next(iter(reader))
    invalid_npho = [(0, 0), (0, 1), (0, 2), (1, 3), (1, 4)]
    for idx in invalid_npho:
        assert not batch.valid_npho[idx] and batch.npho[idx] == 0.0
    assert batch.valid_npho.sum() == 2 * N_SENSORS - 5
    for idx in [(0, 10), (0, 11), (1, 12), (1, 13), (1, 20), (1, 21)]:
        assert batch.valid_npho[idx] and not batch.valid_time[idx] and batch.time[idx] == 0.0
    assert batch.valid_time.sum() == 2 * N_SENSORS - 11
    assert np.all(np.isfinite(batch.npho)) and np.all(np.isfinite(batch.time))
    stats = reader.stats
    assert (stats.events, stats.sensors) == (2, 2 * N_SENSORS)
    assert (stats.invalid_npho, stats.npho_nan, stats.npho_inf, stats.npho_sentinel) == (5, 1, 2, 2)
    time_counts = (stats.time_nan, stats.time_inf, stats.time_sentinel, stats.time_low_light)
    assert time_counts == (1, 2, 1, 2)
    assert stats.invalid_time == 11
    assert stats.fraction_invalid_npho == pytest.approx(5 / (2 * N_SENSORS))


def test_time_threshold_is_configurable():
    npho = np.array([[10.0, 60.0, 500.0]], np.float32)
    time = np.full((1, 3), 1e-7, np.float32)
    stats = ReaderStats()
    _, valid_time = apply_validity(npho.copy(), time.copy(), 50.0, stats)
    assert valid_time.tolist() == [[False, True, True]]
    _, valid_time = apply_validity(npho.copy(), time.copy(), 100.0, ReaderStats())
    assert valid_time.tolist() == [[False, False, True]]
    assert stats.time_low_light == 1


def test_all_invalid_event_is_counted(tmp_path):
    npho = np.full((2, N_SENSORS), SENTINEL, np.float32)
    npho[1] = 100.0
    path = tmp_path / "dead.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"npho": npho, "time": np.zeros((2, N_SENSORS), np.float32)})
    reader = BatchReader(path)
    batch = next(iter(reader))
    assert not batch.valid_npho[0].any() and batch.valid_npho[1].all()
    assert reader.stats.events_without_valid_sensor == 1


def test_simulated_file_masks_truth_and_features(sim_file_pileup_dead):
    """On the shared simulated sample: dead sensors are exactly the invalid ones, pile-up truth is
    jagged with nPileup entries, and the features are finite with 0 at invalid sensors."""
    from xecreco.normalization import NormalizationSpec

    reader = BatchReader(sim_file_pileup_dead, truth="all", step_events=64)
    spec = NormalizationSpec()
    for batch in reader:
        np.testing.assert_array_equal(batch.truth["dead"], ~batch.valid_npho)
        counts = ak.to_numpy(ak.num(batch.truth["pileupEnergy"], axis=1))
        np.testing.assert_array_equal(counts, batch.truth["nPileup"])
        assert batch.vertex.shape == (len(batch), 3)
        features = spec.features(batch)
        assert np.all(np.isfinite(features))
        assert np.all(features[..., 0][~batch.valid_npho] == 0.0)
        assert np.all(features[..., 1][~batch.valid_time] == 0.0)
        # the reference is the mean of the 10 earliest lit sensors: at most 9 lit ones precede it
        early = (features[..., 1] < 0) & batch.valid_time & (batch.npho >= 300.0)
        assert np.all(early.sum(axis=1) <= 9)
    stats = reader.stats
    assert stats.events == 200
    assert stats.npho_sentinel == stats.invalid_npho > 0
    assert 0.015 < stats.fraction_invalid_npho < 0.025


def test_package_exports_are_lazy():
    """``xecreco.io`` re-exports the reader and writer without importing uproot up front."""
    import subprocess
    import sys

    code = ("import sys, xecreco.io as io; assert 'uproot' not in sys.modules; "
            "from xecreco.io import iterate_batches, RootWriter, BranchNames; "
            "assert 'uproot' in sys.modules; print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.stdout.strip() == "ok", result.stderr
