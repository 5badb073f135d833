"""Training throughput of the CPU default regressor, data loading included.

Simulates a small sample with ``xecreco.sim`` (falls back to random events with the schema's
branches if the simulation is unavailable), then trains the ``cpu`` preset for a fixed number of
optimizer steps through the full pipeline (ROOT reader -> augmentation -> normalisation ->
shuffle buffer -> model -> AdamW/EMA) with 0 and 1 DataLoader workers, and reports training
events/s (validation and checkpoint writing excluded), peak RSS and the machine.
Also reports the data stream alone (``train_data_stream``) to separate loading from the model,
the same stream with events simulated on the fly instead of read (``data.source: simulation``,
``train_data_stream_simulation``) and a training run on that stream with one data worker
(``train_cpu_preset_simulation_workers1``), all in the same run.
Target (DESIGN.md section 10): >= 300 events/s on the 2-core CPU machine.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_info, peak_rss_mb, timed_training  # noqa: E402


#: the spectrum of the training sample, file and simulated stream alike (flat: the targets need
#: a spread to be standardised)
TRAINING_SPECTRUM = {"source": "flat", "energy_min_mev": 15.0, "energy_max_mev": 60.0}


def _sample(path: Path, n: int) -> str:
    try:
        from xecreco.sim import SimConfig, simulate_file

        simulate_file(path, n, SimConfig(**TRAINING_SPECTRUM), seed=1, progress=False)
        return "simulated"
    except ImportError:
        from xecreco.geometry.constants import N_SENSORS
        from xecreco.io.writer import RootWriter

        rng = np.random.default_rng(1)
        arrays = {
            "npho": rng.exponential(400.0, (n, N_SENSORS)).astype(np.float32),
            "time": (1e-7 + rng.normal(0, 2e-9, (n, N_SENSORS))).astype(np.float32),
            "run": np.zeros(n, np.int32), "event": np.arange(n, dtype=np.int32),
            "energyTruth": rng.uniform(0.015, 0.06, n).astype(np.float32),
            "timeTruth": rng.normal(0, 1, n).astype(np.float32),
            "uvwTruth": rng.normal(0, 10, (n, 3)).astype(np.float32),
            "emiAng": np.stack([rng.uniform(70, 110, n), rng.uniform(-60, 60, n)],
                               1).astype(np.float32),
        }
        with RootWriter(path, tree="tree") as writer:
            writer.write(arrays)
        return "random"


def _data_config(data: Path | None, n_events: int, batch_size: int, workers: int = 0) -> dict:
    """The ``data`` section: the file ``data``, or (None) ``n_events`` simulated per epoch."""
    common = {"val_fraction": 0.0, "batch_size": batch_size, "workers": workers,
              "step_events": 1024, "shuffle_buffer": 1024, "scaling_events": 1024}
    if data is None:
        return {**common, "source": "simulation", "simulation": dict(TRAINING_SPECTRUM),
                "epoch_events": n_events, "max_val_events": batch_size}
    return {**common, "train_files": [str(data)]}


def _data_only(data: Path | None, n_events: int, batch_size: int, kind: str) -> dict:
    """Events/s of the training data stream alone (read or simulate, augment, normalise,
    shuffle, batch)."""
    from xecreco.train.config import load_config
    from xecreco.train.data import RootSource
    from xecreco.train.simsource import SimulationSource

    cfg = load_config({"data": _data_config(data, n_events, batch_size),
                       "augment": {"dead_fraction": 0.01}})
    source_class = RootSource if data is not None else SimulationSource
    source = source_class(cfg.data, cfg.augment, cfg.task.targets, cfg.normalization)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    n = sum(len(batch["features"]) for batch in source.train_batches(0, 0, 1))
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    name = "train_data_stream" + ("" if data is not None else "_simulation")
    return {"name": name, "events_per_s": n / wall, "events_per_cpu_s": n / cpu,
            "events": n, "sample": kind if data is not None else "simulated on the fly",
            "peak_rss_mb": peak_rss_mb(), "machine": machine_info()}


def run(quick: bool = False) -> list[dict]:
    n_events = 1200 if quick else 4000
    steps = 6 if quick else 20
    batch_size = 128
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.root"
        kind = _sample(data, n_events)
        results.append(_data_only(data, n_events, batch_size, kind))
        results.append(_data_only(None, n_events, batch_size, kind))
        results[-1]["ratio_vs_file_stream"] = (results[-1]["events_per_s"]
                                               / results[-2]["events_per_s"])
        # On a shared 2-core machine one intra-op thread is often faster than two (contention).
        for workers, threads, source in ((0, None, data), (0, 1, data), (1, None, data),
                                         (1, None, None)):
            config = {
                "data": _data_config(source, n_events, batch_size, workers),
                "augment": {"dead_fraction": 0.01},
                "model": {"preset": "cpu"},
                "run": {"max_steps": steps, "progress": False, "log_every": 1, "threads": threads},
            }
            label = "" if source is not None else "_simulation"
            run_dir = Path(tmp) / f"run{workers}{threads}{label}"
            results.append({
                "name": f"train_cpu_preset{label}_workers{workers}_threads{threads or 'auto'}",
                **timed_training(config, run_dir),
                "steps": steps, "batch_size": batch_size,
                "sample": kind if source is not None else "simulated on the fly",
            })
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
