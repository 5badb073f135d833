"""Training data simulated on the fly (data.source: simulation): the same events a simulated
file gives, fresh events every epoch, and a real training run on them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from xecreco.errors import UserError
from xecreco.io.reader import iterate_batches
from xecreco.sim import SimConfig, simulate_file
from xecreco.sim.batches import simulated_batches
from xecreco.train.config import load_config

torch.set_num_threads(1)

SMALL_SIM = {"source": "flat", "energy_min_mev": 20.0, "energy_max_mev": 60.0,
             "dead_fraction": 0.01}


def test_simulated_batches_are_the_events_of_a_simulated_file(tmp_path):
    config = SimConfig.from_dict(SMALL_SIM)
    path = tmp_path / "sim.root"
    simulate_file(path, 300, config, seed=17, progress=False, start_event=40)
    truth = ["energyTruth", "uvwTruth", "timeTruth", "pileupEnergy"]
    read = list(iterate_batches([path], truth=truth, vertex=True, step_events=1000))
    assert len(read) == 1
    file_batch = read[0]
    from xecreco.io.batch import EventBatch

    made = EventBatch.concatenate(list(simulated_batches(300, config, 17, 40, truth=truth,
                                                         vertex=True)))
    assert len(made) == 300 and made.event[0] == 40 and made.event[-1] == 339
    np.testing.assert_array_equal(made.valid_npho, file_batch.valid_npho)
    np.testing.assert_array_equal(made.valid_time, file_batch.valid_time)
    assert not made.valid_npho.all()  # the dead channels are there, masked as the reader does
    np.testing.assert_array_equal(made.npho, file_batch.npho)
    np.testing.assert_array_equal(made.time, file_batch.time)
    np.testing.assert_array_equal(made.run, file_batch.run)
    np.testing.assert_allclose(made.vertex, file_batch.vertex)
    for name in ("energyTruth", "uvwTruth", "timeTruth"):
        np.testing.assert_allclose(made.truth[name], file_batch.truth[name], rtol=1e-6)


def _cfg(tmp_path, **data):
    values = {"data": {"source": "simulation", "simulation": SMALL_SIM, "simulation_seed": 5,
                       "epoch_events": 96, "batch_size": 16, "step_events": 32,
                       "shuffle_buffer": 32, "scaling_events": 64, "max_val_events": 32,
                       "workers": 0, **data},
              "model": {"preset": "tiny"}, "optim": {"warmup_steps": 1},
              "run": {"epochs": 2, "progress": False, "threads": 1}}
    return load_config(values)


def test_every_epoch_and_worker_simulates_new_events(tmp_path):
    from xecreco.train.simsource import SimulationSource

    cfg = _cfg(tmp_path)
    source = SimulationSource(cfg.data, cfg.augment, ["energy", "u"], cfg.normalization)
    assert source.steps_per_epoch(1) == 6
    seen = []
    for epoch in (0, 1):
        for rank in (0, 1):
            stream = source.train_batches(epoch, rank, 2)
            for chunk in stream.chunks(np.random.default_rng(0), 0, 1):
                seen.extend(int(e) for batch in chunk for e in batch.event)
    assert len(seen) == len(set(seen)) == 4 * 48  # disjoint blocks of 96 / 2 events
    val = [b for b in source.val_batches(0, 1)]
    assert sum(len(b["targets"]["energy"]) for b in val) == 32
    again = [b for b in source.val_batches(0, 1)]
    torch.testing.assert_close(val[0]["features"], again[0]["features"])  # fixed val sample
    # two ranks split the same validation events (rank 1 starts inside a batch: at event 16
    # of 32 with max_val_events 30, batch_size 16)
    cfg30 = _cfg(tmp_path, max_val_events=30)
    source30 = SimulationSource(cfg30.data, cfg30.augment, ["energy", "u"], cfg30.normalization)
    whole = torch.cat([b["targets"]["energy"] for b in source30.val_batches(0, 1)])
    split = torch.cat([b["targets"]["energy"] for rank in (0, 1)
                       for b in source30.val_batches(rank, 2)])
    assert len(whole) == 30
    torch.testing.assert_close(split, whole)


def test_training_on_simulated_events_with_a_data_worker(tmp_path):
    from train_helpers import tiny_model
    from xecreco.train.api import train
    from xecreco.train.checkpoint import load_checkpoint
    from xecreco.train.tasks import get_task

    task = dataclasses.replace(get_task("regressor"), build_model=tiny_model, model_config=None)
    cfg = _cfg(tmp_path, workers=1)
    result = train(dataclasses.asdict(cfg), run_dir=tmp_path / "run", task=task)
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert result["step"] == 2 * 6
    mean_gev = ckpt["target_scaling"]["mean"]["energy"]
    assert 0.030 < mean_gev < 0.050  # fitted on the flat 20-60 MeV spectrum of data.simulation
    assert result["train_events"] == 2 * 96 and result["finished"]
    # validated on the simulated validation sample (seed simulation_seed + 1)
    assert np.isfinite(result["last_metrics"]["energy_sigma68_rel"])


def test_simulation_source_errors(tmp_path):
    with pytest.raises(UserError, match="data.source"):
        load_config({"data": {"source": "cloud"}})
    with pytest.raises(UserError, match="data.train_files.*simulation"):
        load_config({"data": {"source": "simulation", "train_files": ["a.root"]}})
    with pytest.raises(UserError, match="data.simulation"):
        load_config({"data": {"simulation": {"source": "flat"}}})
    cfg = _cfg(tmp_path, simulation={"energy_min_mev": "low"})
    from xecreco.train.simsource import SimulationSource

    with pytest.raises(UserError, match="data.simulation"):
        SimulationSource(cfg.data, cfg.augment, ["energy"], cfg.normalization)
