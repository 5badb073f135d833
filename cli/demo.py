"""``xecreco demo``: the main job end to end on the built-in defaults.

Simulates signal photons with pile-up and a realistic dead-channel pattern, repairs the dead
channels with the default inpainter, reconstructs with the default (bundled) regressor and the
classical reconstruction, and writes a validation report. The library function is
:func:`xecreco.validation.demo.run_demo`.
"""

from __future__ import annotations

from pathlib import Path

import click

from xecreco.validation.demo import DEMO_EVENTS  # light: the chain's imports are deferred


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
    from xecreco.validation.demo import run_demo

    result = run_demo(output_dir, n_events=n_events, seed=seed, progress=not no_progress,
                      log=lambda line: click.echo(line, err=True))
    click.echo(f"Report: {result['report']}")
    click.echo(f"Predictions: {result['predictions']}")
