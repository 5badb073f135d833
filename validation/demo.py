"""The demo chain (``xecreco demo``): the main job end to end on the built-in defaults.

:func:`run_demo` simulates signal photons with pile-up and a realistic dead-channel pattern,
repairs the dead channels with the default inpainter, reconstructs with the default (bundled)
regressor and the classical reconstruction, and writes a validation report (inpainted vs raw
input). Each step is a library call; progress lines go to ``log`` (default: stderr).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

#: Demo sample: MEG II signal photons with pile-up (rate of extra photons converting in the
#: xenon, Hz: about 0.2 per event in the +-200 ns window, see docs/simulation.md) and a 2 %
#: dead-channel pattern as in real runs (about 95 sensors).
DEMO_EVENTS = 4000
DEMO_PILEUP_RATE_HZ = 5.0e5
DEMO_DEAD_FRACTION = 0.02


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_demo(output_dir: Path, n_events: int = DEMO_EVENTS, seed: int = 1,
             pileup_rate_hz: float = DEMO_PILEUP_RATE_HZ, progress: bool = True,
             log: Callable[[str], None] | None = None) -> dict:
    """Run the demo chain into ``output_dir`` (created if needed).

    Args:
        n_events: simulated signal photons (52.83 MeV); seed: simulation seed.
        pileup_rate_hz: rate of extra photons converting in the xenon (Hz).
        progress: show progress bars. log: receives one line per step (default: stderr).

    Returns paths (``predictions``, ``report``: the HTML index), the ``inpainter`` and
    ``reconstructors`` used, the simulation statistics and the validation ``summary``.
    """
    log = log or _stderr

    def step(message: str) -> float:
        log(f"[demo] {message}")
        return time.perf_counter()

    def done(start: float) -> None:
        log(f"[demo]   {time.perf_counter() - start:.1f} s")

    from xecreco.models import available_reconstructors
    from xecreco.models.pipelines.inpaint import inpaint_file, resolve_inpainter
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.sim import SimConfig, simulate_file
    from xecreco.validation.api import validate

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    raw = output_dir / "demo_sim.root"
    repaired = output_dir / "demo_inpainted.root"
    predictions_raw = output_dir / "demo_predictions_raw.root"
    predictions = output_dir / "demo_predictions.root"
    report = output_dir / "report"

    config = SimConfig(dead_fraction=DEMO_DEAD_FRACTION, pileup_rate_hz=pileup_rate_hz)
    start = step(f"simulating {n_events} signal photons with pile-up and "
                  f"{DEMO_DEAD_FRACTION:.0%} dead channels -> {raw}")
    sim_stats = simulate_file(raw, n_events, config=config, seed=seed, progress=progress)
    done(start)

    inpainter = resolve_inpainter(None)  # the bundled inpainter, else the best baseline
    start = step(f"repairing dead channels with inpainter '{inpainter.name}' -> {repaired}")
    inpaint_file(raw, repaired, inpainter, progress=progress)
    done(start)

    recos = ["classical"]
    if "default" in available_reconstructors():
        recos.insert(0, "default")
    start = step(f"reconstructing with {', '.join(recos)} -> {predictions} (and the raw input "
                  f"-> {predictions_raw})")
    predict_files([repaired], predictions, recos, progress=progress)
    predict_files([raw], predictions_raw, recos, progress=progress)
    done(start)

    start = step(f"validating inpainted vs raw input -> {report}")
    summary = validate([predictions, predictions_raw], report, labels=["inpainted", "raw"],
                       progress=progress)
    done(start)
    return {
        "simulation": sim_stats,
        "inpainter": inpainter.name,
        "reconstructors": recos,
        "predictions": str(predictions),
        "report": str(report / "index.html"),
        "summary": summary,
    }
