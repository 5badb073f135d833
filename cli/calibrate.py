"""``xecreco calibrate``: derive the classical-reconstruction calibration from a simulated sample."""

from __future__ import annotations

import shlex

import click

from xecreco.cli.options import branch_names, input_options


@click.command(name="calibrate")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Calibration JSON to write (replaced only on success).")
@input_options
@click.option("--max-events", default=None, type=click.IntRange(min=1),
              help="Use at most this many events (default: all).")
@click.option("--step", "step_events", default=1000, show_default=True,
              type=click.IntRange(min=1), help="Events per chunk.")
@click.option("--pileup", "pileup_files", multiple=True, type=click.Path(dir_okay=False),
              help="Simulated sample with pile-up truth for the pile-up probability (repeatable).")
@click.option("--no-progress", is_flag=True, help="Do not show progress.")
def command(inputs, output, tree, branch_items, max_events, step_events, pileup_files,
            no_progress):
    """Fit the classical calibration (depth corrections, energy scale vs depth, light speed,
    time walk and offset, pile-up score) on simulated INPUT files with truth (no pile-up), write
    JSON. The pile-up score is fitted on --pileup files when given. --tree and --branch apply
    to the INPUT and --pileup files alike.

    Use it with `xecreco predict -r classical` through XECRECO_CLASSICAL_CALIBRATION=calib.json,
    or from Python: ClassicalReconstructor(calibration="calib.json").
    """
    from xecreco.io.paths import check_output_file
    from xecreco.models.classical.calibration import save_calibration
    from xecreco.models.classical.fit import fit_calibration

    check_output_file(output, [*inputs, *pileup_files])
    branches = branch_names(branch_items).to_dict() or None

    words = ["xecreco", "calibrate", *inputs]
    if tree != "tree":
        words += ["--tree", tree]
    for item in branch_items:
        words += ["--branch", item]
    for path in pileup_files:
        words += ["--pileup", path]
    if max_events is not None:
        words += ["--max-events", str(max_events)]
    command_line = " ".join(shlex.quote(str(w)) for w in [*words, "-o", output])
    calibration = fit_calibration(
        list(inputs), tree=tree, max_events=max_events, step_events=step_events,
        progress=not no_progress, source=command_line, pileup_files=list(pileup_files),
        branches=branches,
    )
    save_calibration(calibration, output)
    click.echo(f"wrote {output}", err=True)
