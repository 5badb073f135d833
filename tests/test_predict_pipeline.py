"""The pipelined predict (reader thread ahead of the models) writes what the sequential path
writes, and an error in the reader thread surfaces as itself with no output left behind."""

from __future__ import annotations

import threading

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.io.reader import BatchReader
from xecreco.models.pipelines.predict import predict_files, predict_threads
from xecreco.models.registry import create_reconstructor


def _tree(path):
    with uproot.open(path) as handle:
        tree = handle["reco"]
        return list(tree.keys()), tree.arrays(library="ak")


@pytest.fixture(scope="module")
def default_reco():
    return create_reconstructor("default")


def test_pipelined_predict_writes_the_sequential_tree_bit_for_bit(sim_file_small, tmp_path,
                                                                  default_reco):
    out = {}
    for pipelined in (False, True):
        out[pipelined] = tmp_path / f"pred_{pipelined}.root"
        predict_files(sim_file_small, out[pipelined], [default_reco, "classical"],
                      step_events=37, progress=False, pipelined=pipelined)
    names_seq, seq = _tree(out[False])
    names_pipe, pipe = _tree(out[True])
    assert names_pipe == names_seq
    assert "default_energy" in names_seq and "classical_energy" in names_seq
    assert len(seq["entry"]) > 37  # several chunks
    np.testing.assert_array_equal(pipe["entry"].to_numpy(), np.arange(len(seq["entry"])))
    for name in names_seq:  # jagged pile-up truth included; NaN nowhere (fill values)
        assert ak.array_equal(pipe[name], seq[name]), name


class _ReadError(OSError):
    pass


def test_an_error_in_the_reader_thread_is_raised_as_itself_and_leaves_no_output(
        sim_file_small, tmp_path, monkeypatch, default_reco):
    error = _ReadError("disk went away")
    original = BatchReader._make_batch
    calls = []
    threads = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        threads.append(threading.current_thread().name)
        if len(calls) == 2:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BatchReader, "_make_batch", failing)
    output = tmp_path / "pred.root"
    with pytest.raises(_ReadError) as caught:
        predict_files(sim_file_small, output, default_reco, step_events=20, progress=False)
    assert caught.value is error
    assert threads[1] == "xecreco-predict-reader"  # it did happen in the background thread
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left either
    assert not [t for t in threading.enumerate() if t.name == "xecreco-predict-reader"]


def test_an_error_in_prepare_is_raised_as_itself(sim_file_small, tmp_path, monkeypatch,
                                                 default_reco):
    error = ValueError("bad features")

    def failing(batch):
        raise error

    monkeypatch.setattr(default_reco, "prepare", failing)
    output = tmp_path / "pred.root"
    with pytest.raises(ValueError) as caught:
        predict_files(sim_file_small, output, default_reco, progress=False)
    assert caught.value is error
    assert not output.exists()


def test_torch_threads_share_the_cores_and_are_restored(sim_file_small, tmp_path,
                                                        monkeypatch, default_reco):
    import torch

    import xecreco.models.pipelines.predict as predict

    monkeypatch.setattr(predict, "available_cores", lambda: 4)
    assert predict_threads() == 4 and predict_threads(3) == 1 and predict_threads(8) == 1
    seen = []
    original = default_reco.reconstruct

    def spy(batch, prepared=None):
        seen.append(torch.get_num_threads())
        return original(batch, prepared=prepared)

    monkeypatch.setattr(default_reco, "reconstruct", spy)
    before = torch.get_num_threads()
    predict_files(sim_file_small, tmp_path / "p.root", default_reco, progress=False, threads=1)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before
