"""``xecreco demo``: the main job end to end on the built-in default.

Simulates signal photons with pile-up and a realistic dead-channel pattern, repairs the dead
channels with the default inpainter, reconstructs with the default (bundled) regressor and the
classical reconstruction, and writes a validation report. Each step is a library call, so the same
chain runs from Python: see :func:`run_demo`.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

#: Demo sample: MEG II signal photons with pile-up (rate of extra photons converting in the
#: xenon, Hz: about 0.2 per event in the +-200 ns window, see docs/simulation.md) and a 2 %
#: dead-channel pattern as in real runs (about 95 sensors).
DEMO_EVENTS = 4000
DEMO_PILEUP_RATE_HZ = 5.0e5
DEMO_DEAD_FRACTION = 0.02


def _step(message: str) -> float:
    click.echo(f"[demo] {message}", err=True)
    return time.perf_counter()


def run_demo(output_dir: Path, n_events: int = DEMO_EVENTS, seed: int = 1,
             pileup_rate_hz: float = DEMO_PILEUP_RATE_HZ, progress: bool = True) -> dict:
    """Run the demo chain into ``output_dir``; returns paths and the validation summary."""
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
    start = _step(f"simulating {n_events} signal photons with pile-up and "
                  f"{DEMO_DEAD_FRACTION:.0%} dead channels -> {raw}")
    sim_stats = simulate_file(raw, n_events, config=config, seed=seed, progress=progress)
    click.echo(f"[demo]   {time.perf_counter() - start:.1f} s", err=True)

    inpainter = resolve_inpainter(None)  # the bundled inpainter, else the best baseline
    start = _step(f"repairing dead channels with inpainter '{inpainter.name}' -> {repaired}")
    inpaint_file(raw, repaired, inpainter, progress=progress)
    click.echo(f"[demo]   {time.perf_counter() - start:.1f} s", err=True)

    recos = ["classical"]
    if "default" in available_reconstructors():
        recos.insert(0, "default")
    start = _step(f"reconstructing with {', '.join(recos)} -> {predictions} (and the raw input "
                  f"-> {predictions_raw})")
    predict_files([repaired], predictions, recos, progress=progress)
    predict_files([raw], predictions_raw, recos, progress=progress)
    click.echo(f"[demo]   {time.perf_counter() - start:.1f} s", err=True)

    start = _step(f"validating inpainted vs raw input -> {report}")
    summary = validate([predictions, predictions_raw], report, labels=["inpainted", "raw"],
                       progress=progress)
    click.echo(f"[demo]   {time.perf_counter() - start:.1f} s", err=True)
    return {
        "simulation": sim_stats,
        "inpainter": inpainter.name,
        "reconstructors": recos,
        "predictions": str(predictions),
        "report": str(report / "index.html"),
        "summary": summary,
    }


@click.command("demo")
@click.option("-o", "--output", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("demo_output"), show_default=True, help="Folder for files and report.")
@click.option("-n", "--events", "n_events", type=click.IntRange(min=10), default=DEMO_EVENTS,
              show_default=True, help="Number of simulated signal photons.")
@click.option("--seed", type=int, default=1, show_default=True, help="Simulation seed.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def command(output_dir: Path, n_events: int, seed: int, no_progress: bool) -> None:
    """Simulate, inpaint, reconstruct (bundled regressor + classical) and validate.

    Writes the simulated sample, its inpainted copy, prediction files for both and a validation
    report (inpainted vs raw input) under OUTPUT, and prints where the report is.
    """
    result = run_demo(output_dir, n_events=n_events, seed=seed, progress=not no_progress)
    click.echo(f"Report: {result['report']}")
    click.echo(f"Predictions: {result['predictions']}")
