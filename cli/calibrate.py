"""``xecreco calibrate``: derive the classical-reconstruction calibration from a simulated sample,
or (``-r CHECKPOINT``) the energy-response calibration of a regressor checkpoint from a scan."""

from __future__ import annotations

import shlex

import click

from xecreco.cli.options import branch_names, input_options


@click.command(name="calibrate")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Calibration JSON to write, or with -r the calibrated checkpoint (replaced "
                   "only on success; never one of the inputs).")
@click.option("-r", "--reconstructor", "checkpoint", default=None, metavar="CHECKPOINT",
              help="Fit the energy-response calibration of this regressor checkpoint ('default': "
                   "the bundled one) on INPUT, a simulated scan of discrete energies, and write "
                   "the checkpoint with it to -o.")
@click.option("--min-line-events", default=None, type=click.IntRange(min=10),
              help="With -r: fewest usable events per scan line [default: 200].")
@click.option("--min-depth", "min_depth_cm", default=None, type=click.FloatRange(min=0.0),
              help="With -r: fit on events with true depth w >= this (cm; 2 = the MEG deep "
                   "class) [default: 0, all events].")
@click.option("--no-time-refit", is_flag=True,
              help="With -r: fit the energy calibration only, no sensor-time refit (the "
                   "checkpoint's time stays the network's own).")
@input_options
@click.option("--max-events", default=None, type=click.IntRange(min=1),
              help="Use at most this many events (default: all; not with -r).")
@click.option("--step", "step_events", default=1000, show_default=True,
              type=click.IntRange(min=1), help="Events per chunk.")
@click.option("--pileup", "pileup_files", multiple=True, type=click.Path(dir_okay=False),
              help="Simulated sample with pile-up truth for the pile-up probability (repeatable; "
                   "not with -r).")
@click.option("--no-progress", is_flag=True, help="Do not show progress.")
def command(inputs, output, checkpoint, min_line_events, min_depth_cm, no_time_refit, tree,
            branch_items, max_events, step_events, pileup_files, no_progress):
    """Fit the classical calibration (depth corrections, energy scale vs depth, light speed,
    time walk and offset, pile-up score) on simulated INPUT files with truth (no pile-up), write
    JSON. The pile-up score is fitted on --pileup files when given. --tree and --branch apply
    to the INPUT and --pileup files alike.

    Use it with `xecreco predict -r classical` through XECRECO_CLASSICAL_CALIBRATION=calib.json,
    or from Python: ClassicalReconstructor(calibration="calib.json").

    With -r CHECKPOINT: fit the checkpoint's energy-response calibration, a monotone
    piecewise-linear correction of its reconstructed energy that puts median(E/E_true) at 1 on
    every line of INPUT (e.g. `xecreco simulate --source 10,17.6,25,40,52.83,70,83,100`), and
    write a copy of the checkpoint carrying it to -o; predict and export apply it. For a model
    with time and u, v, w heads it also fits the sensor-time refit (the network's time combined
    with the sensor times at the network's position; docs/models.md) unless --no-time-refit.
    """
    from xecreco.errors import UserError
    from xecreco.io.paths import check_output_file

    branches = branch_names(branch_items).to_dict() or None
    words = ["xecreco", "calibrate", *inputs]
    if checkpoint is not None:
        words += ["-r", checkpoint]
    if min_line_events is not None:
        words += ["--min-line-events", str(min_line_events)]
    if min_depth_cm is not None:
        words += ["--min-depth", f"{min_depth_cm:g}"]
    if no_time_refit:
        words += ["--no-time-refit"]
    if tree != "tree":
        words += ["--tree", tree]
    for item in branch_items:
        words += ["--branch", item]
    for path in pileup_files:
        words += ["--pileup", path]
    if max_events is not None:
        words += ["--max-events", str(max_events)]
    command_line = " ".join(shlex.quote(str(w)) for w in [*words, "-o", output])

    if checkpoint is not None:
        from xecreco.models.regressor.calibration import MIN_LINE_EVENTS, calibrate_checkpoint

        if pileup_files or max_events is not None:
            raise UserError("calibrate -r fits a regressor's energy scale on a scan: --pileup "
                            "and --max-events belong to the classical calibration; drop them")
        if checkpoint == "default":
            from xecreco.models.bundled import BUNDLED_REGRESSOR

            checkpoint = str(BUNDLED_REGRESSOR)
        calibration, combination = calibrate_checkpoint(
            checkpoint, list(inputs), output, tree=tree, branches=branches,
            step_events=step_events, min_events=min_line_events or MIN_LINE_EVENTS,
            min_depth_cm=min_depth_cm or 0.0,
            progress=not no_progress, source=command_line, time_combination=not no_time_refit)
        before = ", ".join(f"{line:g} MeV {100 * (r - 1):+.2f} %" for line, r in zip(
            calibration.info["lines_MeV"], calibration.info["response_before"]))
        click.echo(f"median E/E_true - 1 before: {before}", err=True)
        if combination is not None:
            weights = ", ".join(f"{1000 * e:.4g} MeV {a:.2f}" for e, a in zip(
                combination.energy_gev, combination.network_weight))
            click.echo(f"time: network weight {weights}", err=True)
        elif not no_time_refit:
            click.echo("time: no sensor-time refit (the model has no time and u, v, w heads, "
                       "or the scan no timeTruth)", err=True)
        click.echo(f"wrote {output}", err=True)
        return

    from xecreco.models.classical.calibration import save_calibration
    from xecreco.models.classical.fit import fit_calibration

    if min_line_events is not None or min_depth_cm is not None or no_time_refit:
        raise UserError("--min-line-events, --min-depth and --no-time-refit belong to calibrate "
                        "-r CHECKPOINT; drop them or add -r")
    check_output_file(output, [*inputs, *pileup_files])
    calibration = fit_calibration(
        list(inputs), tree=tree, max_events=max_events, step_events=step_events,
        progress=not no_progress, source=command_line, pileup_files=list(pileup_files),
        branches=branches,
    )
    save_calibration(calibration, output)
    click.echo(f"wrote {output}", err=True)
