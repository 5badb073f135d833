"""Bad input files give one clear UserError line (or the correct empty result)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS
from xecreco.io.reader import BatchReader, iterate_batches
from xecreco.io.rootfile import count_entries
from xecreco.io.writer import RootWriter, read_provenance


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    with pytest.raises(UserError) as excinfo:
        BatchReader(tmp_path / "nope.root")
    assert "file not found" in _one_line(excinfo) and "nope.root" in str(excinfo.value)


def test_non_root_file(tmp_path):
    path = tmp_path / "notes.root"
    path.write_text("this is a text file\n" * 20)
    with pytest.raises(UserError) as excinfo:
        count_entries(path)
    assert "is not a ROOT file" in _one_line(excinfo)


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        BatchReader(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_file(input_file_factory, tmp_path, keep):
    path, _ = input_file_factory(20)
    data = path.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(UserError) as excinfo:
        list(iterate_batches(cut))
    assert "truncated" in _one_line(excinfo)


def test_corrupt_basket_is_user_error_at_read_time(input_file_factory, tmp_path):
    """Garbage in the middle of the file (same size) fails when the baskets are read."""
    path, _ = input_file_factory(20, compression="zlib")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = b"\x00" * 4096
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(bytes(data))
    with pytest.raises(UserError) as excinfo:
        list(iterate_batches(bad))
    assert "corrupt" in _one_line(excinfo)


def test_missing_branch_lists_existing(input_file_factory):
    path, _ = input_file_factory(3, rename={"time": "t_sensor"})
    with pytest.raises(UserError) as excinfo:
        BatchReader(path)
    message = _one_line(excinfo)
    assert "no required branch 'time'" in message
    assert "t_sensor" in message and "npho" in message


def test_missing_truth_branch_lists_existing(input_file_factory):
    path, _ = input_file_factory(3, truth=False)
    with pytest.raises(UserError, match="no truth branch 'energyTruth'.*npho"):
        BatchReader(path, truth=["energyTruth"])


def test_missing_tree_lists_trees(input_file_factory):
    path, _ = input_file_factory(3, tree="events")
    with pytest.raises(UserError) as excinfo:
        BatchReader(path)
    assert "no tree 'tree'" in _one_line(excinfo) and "events" in str(excinfo.value)


def test_wrong_fixed_array_length(tmp_path):
    path = tmp_path / "short.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"npho": np.ones((2, 4000), np.float32),
                      "time": np.ones((2, 4000), np.float32)})
    with pytest.raises(UserError) as excinfo:
        BatchReader(path)
    assert "holds 4000 values per entry, expected 4760" in _one_line(excinfo)


def test_wrong_vector_length_names_the_entry(tmp_path):
    counts = np.array([N_SENSORS, N_SENSORS, N_SENSORS - 1])
    values = np.ones(int(counts.sum()), np.float32)
    path = tmp_path / "ragged.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"npho": ak.unflatten(values, counts), "time": ak.unflatten(values, counts)})
    with pytest.raises(UserError) as excinfo:
        list(iterate_batches(path))
    assert "has 4759 values at entry 2, expected 4760" in _one_line(excinfo)


def test_empty_tree_gives_no_batches(input_file_factory):
    path, _ = input_file_factory(0)
    reader = BatchReader(path, truth="all")
    assert len(reader) == 0
    assert list(reader) == []
    assert reader.stats.events == 0


def test_bad_truth_argument():
    with pytest.raises(UserError, match="truth must be"):
        BatchReader("whatever.root", truth="energy")


def test_unknown_branch_key(input_file_factory):
    path, _ = input_file_factory(1)
    with pytest.raises(UserError, match="did you mean 'npho'"):
        BatchReader(path, branches={"nphoo": "x"})


def test_read_provenance_of_text_file(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("hello")
    with pytest.raises(UserError, match="not a ROOT file"):
        read_provenance(path)
