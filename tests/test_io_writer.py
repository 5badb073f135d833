"""RootWriter: exact round trips, chunking, atomic output, provenance."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.errors import UserError
from xecreco.io.provenance import describe_files, file_checksum, make_provenance
from xecreco.io.schema import PROVENANCE_KEY
from xecreco.io.writer import RootWriter, parse_compression, read_provenance


def _chunk(rng, n):
    return {
        "x": rng.normal(size=n).astype(np.float32),
        "idx": rng.integers(0, 1 << 40, n).astype(np.int64),
        "flag": rng.random(n) < 0.5,
        "vec": rng.normal(size=(n, 3)),
        "sensors": rng.normal(size=(n, 4760)).astype(np.float32),
    }


@pytest.mark.parametrize("n_events", [0, 1, 3 * 40 + 1])
def test_round_trip_exact(tmp_path, n_events):
    """0, 1 and k x chunk + 1 events come back bit-exact with their types and shapes."""
    rng = np.random.default_rng(1)
    data = _chunk(rng, n_events)
    path = tmp_path / "out.root"
    schema = {k: (v.dtype, v.shape[1:]) for k, v in data.items()}
    # chunks of 40 events: the smallest branch (bool, 1 byte per event) reaches 40 bytes per write
    with RootWriter(path, tree="reco", schema=schema, min_chunk_bytes=40) as writer:
        for start in range(0, n_events, 40):
            writer.write({k: v[start:start + 40] for k, v in data.items()})
        assert writer.entries == n_events
    with uproot.open(path) as handle:
        tree = handle["reco"]
        assert tree.num_entries == n_events
        assert set(tree.keys()) == set(data)
        back = tree.arrays(library="np")
        for key, value in data.items():
            assert back[key].dtype == value.dtype, key
            assert back[key].shape == value.shape, key
            np.testing.assert_array_equal(back[key], value)
        if n_events == 121:
            assert tree["x"].num_baskets == 4  # 40 + 40 + 40 + 1


def test_zero_events_without_schema_gives_empty_tree(tmp_path):
    path = tmp_path / "empty.root"
    with RootWriter(path, tree="reco") as writer:
        writer.write({"a": np.zeros(0, np.float32), "b": np.zeros((0, 3))})
    with uproot.open(path) as handle:
        assert handle["reco"].num_entries == 0
        assert set(handle["reco"].keys()) == {"a", "b"}


def test_min_chunk_bytes_groups_small_writes(tmp_path):
    """Writes of 100 rows are buffered into baskets of >= 4000 bytes (1000 float32 values)."""
    path = tmp_path / "b.root"
    with RootWriter(path, min_chunk_bytes=4000) as writer:
        for i in range(25):
            writer.write({"x": np.full(100, i, np.float32)})
    with uproot.open(path) as handle:
        branch = handle["reco"]["x"]
        assert branch.num_baskets == 3  # 1000 + 1000 + 500
        values = branch.array(library="np")
    np.testing.assert_array_equal(values, np.repeat(np.arange(25, dtype=np.float32), 100))


def test_max_buffer_bytes_bounds_memory(tmp_path):
    """A sensor array forces a write before the small branch reaches min_chunk_bytes."""
    path = tmp_path / "c.root"
    with RootWriter(path, min_chunk_bytes=10**9, max_buffer_bytes=5 * 4760 * 4) as writer:
        for _ in range(10):
            writer.write({"s": np.ones((1, 4760), np.float32), "r": np.zeros(1, np.int32)})
    with uproot.open(path) as handle:
        assert handle["reco"]["s"].num_baskets == 2
        assert handle["reco"].num_entries == 10


def test_jagged_awkward_round_trip(tmp_path):
    energies = ak.Array([[0.01, 0.02], [], [0.03], []])
    path = tmp_path / "j.root"
    with RootWriter(path, tree="tree") as writer:
        writer.write({"nPileup": np.array([2, 0, 1], np.int32), "pileupEnergy": energies[:3]})
        writer.write({"nPileup": np.array([0], np.int32), "pileupEnergy": energies[3:]})
    with uproot.open(path) as handle:
        back = handle["tree"]["pileupEnergy"].array(library="ak")
    assert back.tolist() == energies.tolist()


@pytest.mark.parametrize("spec, code",
                         [("lz4", 401), ("zlib", 101), ("zlib:6", 106), ("none", 100)])
def test_compression(tmp_path, spec, code):
    """fCompress = 100 * algorithm + level (uproot marks no compression as level 0)."""
    path = tmp_path / "z.root"
    with RootWriter(path, compression=spec) as writer:
        writer.write({"x": np.arange(10, dtype=np.float32)})
    with uproot.open(path) as handle:
        assert handle.file.fCompress == code


def test_unknown_compression_is_user_error():
    with pytest.raises(UserError, match="unknown compression 'zstd'"):
        parse_compression("zstd")
    with pytest.raises(UserError, match="level"):
        parse_compression("zlib:high")


def test_exception_leaves_nothing_under_final_name(tmp_path):
    path = tmp_path / "atomic.root"
    with pytest.raises(RuntimeError):
        with RootWriter(path) as writer:
            writer.write({"x": np.arange(100000, dtype=np.float32)})
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_existing_file_untouched_until_success(tmp_path):
    path = tmp_path / "keep.root"
    path.write_bytes(b"old")
    with pytest.raises(KeyError):
        with RootWriter(path) as writer:
            writer.write({"x": np.arange(5, dtype=np.float32)})
            assert path.read_bytes() == b"old"
            raise KeyError("interrupted")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.root"]
    with RootWriter(path) as writer:
        writer.write({"x": np.arange(5, dtype=np.float32)})
    with uproot.open(path) as handle:
        assert handle["reco"].num_entries == 5


def test_inconsistent_writes_raise(tmp_path):
    with RootWriter(tmp_path / "i.root") as writer:
        writer.write({"x": np.zeros(3), "y": np.zeros(3)})
        with pytest.raises(ValueError, match="branch set changed"):
            writer.write({"x": np.zeros(3)})
        with pytest.raises(ValueError, match="different lengths"):
            writer.write({"x": np.zeros(3), "y": np.zeros(4)})


def test_missing_output_directory_is_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        RootWriter(tmp_path / "no" / "such" / "out.root")


def test_provenance_round_trip(tmp_path):
    inputs = tmp_path / "in.bin"
    inputs.write_bytes(b"12345")
    prov = make_provenance(model={"name": "classical"}, inputs=describe_files([inputs]),
                           config={"a": np.float32(1.5), "b": (1, 2)})
    assert prov["xecreco_version"]
    assert prov["created_utc"].endswith("+00:00")
    assert isinstance(prov["command_line"], list)
    assert prov["inputs"][0]["size_bytes"] == 5
    assert prov["config"] == {"a": 1.5, "b": [1, 2]}
    path = tmp_path / "p.root"
    with RootWriter(path, provenance=prov) as writer:
        writer.write({"x": np.zeros(2)})
    assert read_provenance(path) == json.loads(json.dumps(prov))
    with uproot.open(path) as handle:
        assert handle.classnames()[f"{PROVENANCE_KEY};1"] == "TObjString"


def test_read_provenance_absent_is_empty(tmp_path):
    path = tmp_path / "np.root"
    with RootWriter(path) as writer:
        writer.write({"x": np.zeros(2)})
    assert read_provenance(path) == {}


def test_file_checksum_changes_with_content(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    first = file_checksum(path)
    assert first.startswith("xxh64:") and len(first) == 6 + 16
    path.write_bytes(b"abd")
    assert file_checksum(path) != first
