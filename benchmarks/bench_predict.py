"""Prediction throughput: ``predict_files`` ROOT -> ROOT with the classical reconstruction and
the bundled ``default`` regressor (when installed).

Simulates a signal sample (52.83 MeV, default simulation) into a temporary file, runs one small
warm-up prediction (geometry tables, imports), then times the full ROOT -> ROOT prediction
(reading, reconstruction, writing). Reports wall-clock and CPU events/s (the machine is often
shared, so CPU events/s is the steadier number) and the peak RSS; the bundled regressor also
without its sensor-time refit (``default_no_refit``) and the CPU-rate ratio of the two, and,
when the bundled file holds a pile-up expert (docs/reconstruction.md), without it
(``default_no_gate``, the main network alone) on the signal sample and on a sample with 2e6 Hz
pile-up (``_pileup`` names), with the CPU-rate ratios: what the gate costs. Targets: classical
>= 300 events/s, CPU-default regressor >= 1,000 events/s.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_info, peak_rss_mb  # noqa: E402

from xecreco.io.reader import iterate_batches  # noqa: E402
from xecreco.models import available_reconstructors, create_reconstructor  # noqa: E402
from xecreco.models.classical import ClassicalReconstructor  # noqa: E402
from xecreco.models.pipelines.predict import predict_files  # noqa: E402
from xecreco.sim import simulate_file  # noqa: E402
from xecreco.sim.config import SimConfig  # noqa: E402


def _measure(reco, source: Path, output: Path) -> dict:
    for batch in iterate_batches([source], entry_stop=50):  # warm-up: tables, imports
        reco.reconstruct(batch)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    summary = predict_files([source], output, [reco], progress=False)
    wall = time.perf_counter() - start_wall
    cpu = time.process_time() - start_cpu
    return {
        "name": f"predict_{reco.name}",
        "events": summary["events"],
        "events_per_s": summary["events"] / wall,
        "events_per_cpu_s": summary["events"] / cpu,
        "seconds": wall,
    }


def run(quick: bool = False) -> list[dict]:
    n_events = 400 if quick else 4000
    recos = [ClassicalReconstructor()]
    if "default" in available_reconstructors():  # the bundled CPU-preset regressor
        recos.append(create_reconstructor("default"))
        from xecreco.models.bundled import BUNDLED_REGRESSOR
        from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint

        # the same network without its sensor-time refit: the refit's cost, side by side
        recos.append(reconstructor_from_checkpoint(BUNDLED_REGRESSOR, name="default_no_refit",
                                                   time_combination=False))
        gated = [recos[1]] if len(recos[1].outputs) != len(
            reconstructor_from_checkpoint(BUNDLED_REGRESSOR, pileup_expert=False).outputs) else []
        if gated:  # the main network alone: the gate's cost, side by side
            gated.append(reconstructor_from_checkpoint(BUNDLED_REGRESSOR, name="default_no_gate",
                                                       pileup_expert=False))
            recos.append(gated[1])
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as folder:
        folder = Path(folder)
        source = folder / "signal.root"
        simulate_file(source, n_events, seed=11, progress=False)
        for reco in recos:
            results.append(_measure(reco, source, folder / f"pred_{reco.name}.root"))
        if gated:
            pileup = folder / "pileup.root"
            simulate_file(pileup, n_events, SimConfig(pileup_rate_hz=2e6), seed=12, progress=False)
            for reco in gated:
                result = _measure(reco, pileup, folder / f"pred_pu_{reco.name}.root")
                results.append({**result, "name": result["name"] + "_pileup",
                                "pileup_rate_hz": 2e6})
    targets = {"classical": 300, "default": 1000}
    for result in results:
        result["target_events_per_s"] = targets.get(result["name"].removeprefix("predict_"))
        result["peak_rss_mb"] = peak_rss_mb()
    rates = {r["name"]: r["events_per_cpu_s"] for r in results}
    if "predict_default_no_refit" in rates:
        events = next(r["events"] for r in results if r["name"] == "predict_default")
        results.append({"name": "predict_ratio_refit", "events": events,
                        "ratio_cpu_default_over_no_refit":
                            rates["predict_default"] / rates["predict_default_no_refit"]})
    if "predict_default_no_gate" in rates:
        results.append({"name": "predict_ratio_gate", "events": n_events,
                        "ratio_cpu_default_over_no_gate":
                            rates["predict_default"] / rates["predict_default_no_gate"],
                        "ratio_cpu_default_over_no_gate_pileup":
                            rates["predict_default_pileup"]
                            / rates["predict_default_no_gate_pileup"]})
    results[0]["machine"] = machine_info()
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
