"""Training throughput of the neural inpainter presets on one CPU thread, data loading included.

Simulates a small signal sample (no dead channels; the network hides realistic dead patterns
itself), then trains ``task: inpainter`` through the full pipeline (ROOT reader -> normalisation
-> masking -> model -> AdamW/EMA) with ``run.threads: 1`` and no DataLoader workers, for the
``local`` preset (the bundled inpainter, configs/bundled-inpainter.yaml) and, for comparison, the
encoder-based ``cpu`` preset (fewer steps: it is slow). Reports training events/s (validation
and checkpoint writing excluded) and events/s after the first (warm-up) step.
Target: >= 100 events/s for ``local`` (docs/inpainting.md).

Run: ``python benchmarks/bench_inpaint_train.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, timed_training

#: preset -> (batch size, optimizer steps) for (quick, full) runs.
PLAN = {"local": {True: (64, 6), False: (64, 40)}, "cpu": {True: (8, 2), False: (16, 4)}}


def run(quick: bool = False) -> list[dict]:
    from xecreco.sim import simulate_file

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.root"
        simulate_file(data, 600 if quick else 3000, seed=3, progress=False)
        for preset, plan in PLAN.items():
            batch_size, steps = plan[quick]
            config = {
                "data": {"train_files": [str(data)], "val_fraction": 0.0, "workers": 0,
                         "batch_size": batch_size, "step_events": 1024, "shuffle_buffer": 1024,
                         "scaling_events": 1},
                "normalization": {"npho_scale": 100.0},
                "task": {"name": "inpainter"},
                "model": {"preset": preset},
                "run": {"max_steps": steps, "progress": False, "log_every": 1, "threads": 1},
            }
            run_dir = Path(tmp) / f"run_{preset}"
            results.append({
                "name": f"train_inpainter_{preset}_threads1",
                **timed_training(config, run_dir),
                "steps": steps, "batch_size": batch_size,
            })
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
