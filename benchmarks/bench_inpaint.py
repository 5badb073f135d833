"""Dead-channel inpainting: throughput (ROOT -> ROOT) and accuracy of every inpainter.

Simulates 52.83 MeV signal photons with a 2% dead-channel pattern (with and without pile-up),
repairs them with each registered inpainter through :func:`inpaint_file` and scores the filled
sensors against ``nphoClean`` / ``timeClean`` (per face MAE, RMSE, bias in photons, 68% of the
relative npho error for sensors with >= 100 photons, time MAE in ns).

Run: ``python benchmarks/bench_inpaint.py [--quick]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _common import emit, machine_info, peak_rss_mb, timed

EVENTS = {True: 200, False: 2000}
DEAD_FRACTION = 0.02
SAMPLES = {"signal": 0.0, "pileup": 2.5e6}  # pile-up photon rate, Hz


def run(quick: bool = False) -> list[dict]:
    from xecreco.validation.inpainting import score_file
    from xecreco.models.pipelines.inpaint import inpaint_file
    from xecreco.models.registry import available_inpainters
    from xecreco.sim import SimConfig, simulate_file

    n_events = EVENTS[quick]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for sample, rate in SAMPLES.items():
            source = Path(tmp) / f"{sample}.root"
            config = SimConfig(dead_fraction=DEAD_FRACTION, pileup_rate_hz=rate)
            simulate_file(source, n_events, config=config, seed=7, progress=False)
            for name in available_inpainters():
                out = Path(tmp) / f"{sample}_{name}.root"
                with timed() as clock:
                    inpaint_file(source, out, name, progress=False)
                scores = score_file(out)
                record = {
                    "name": f"inpaint/{name}/{sample}",
                    "events": n_events,
                    "events_per_s": n_events / clock["seconds"],
                    "peak_rss_mb": peak_rss_mb(),
                    "dead_fraction": DEAD_FRACTION,
                    "pileup_rate_hz": rate,
                    "scores": scores,
                }
                results.append(record)
                out.unlink()
    results.append({"name": "inpaint/machine", **machine_info()})
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
