"""Benchmark of the physics validation report (issue 6 target: 100k events, two
reconstructions, all studies, < 60 s on the 2-core CPU machine).

A synthetic prediction file with known resolutions is written first (not timed), then
``xecreco.validation.validate`` runs all studies and writes the full report (PNG + PDF plots,
summary.json, histograms.root). Reported: events/s, wall and CPU seconds and peak RSS of the
whole call (loading, studies and report writing: what a user waits for).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine_info, peak_rss_mb, timed  # noqa: E402


def run(quick: bool = False) -> list[dict]:
    """Validate a synthetic 100k-event (20k with ``quick``) file with two reconstructions."""
    from xecreco.validation import validate
    from xecreco.validation.synthetic import (
        SyntheticReco,
        synthetic_predictions,
        write_prediction_file,
    )

    n = 20_000 if quick else 100_000
    recos = {"classical": SyntheticReco(energy_sigma_shallow=0.02, energy_sigma_deep=0.018,
                                        time_sigma=0.07, pileup_separation=1.0),
             "cnn": SyntheticReco(energy_sigma_shallow=0.012, energy_sigma_deep=0.010,
                                  time_sigma=0.05, pileup_separation=2.5)}
    with tempfile.TemporaryDirectory() as tmp:
        arrays = synthetic_predictions(n, recos, seed=1)
        path = write_prediction_file(Path(tmp) / "pred.root", arrays)
        cpu0 = time.process_time()
        with timed() as t:
            summary = validate([path], Path(tmp) / "report", progress=False)
        cpu = time.process_time() - cpu0
        energy = summary["studies"]["energy"]["series"]
        result = {
            "name": "validate_all_studies_2_recos",
            "events": n,
            "seconds": round(t["seconds"], 2),
            "events_per_s": round(n / t["seconds"], 1),
            # CPU seconds of this process: on a shared machine wall time also counts waiting
            "cpu_seconds": round(cpu, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "target_seconds_at_100k": 60.0,
            "plots": len(summary["outputs"]["plots"]),
            "energy_sigma_upper_percent_w_ge_2cm": {
                name: energy[name]["by_depth"]["w>=2cm"]["sigma_upper_percent"]["value"]
                for name in recos
            },
            "machine": machine_info(),
        }
    return [result]


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
