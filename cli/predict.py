"""``xecreco predict``: run reconstructions on ROOT files and write the prediction tree."""

from __future__ import annotations

import click

from xecreco.cli.options import branch_names, input_options
from xecreco.errors import UserError


def parse_renames(items) -> dict[str, str]:
    """``("R=NEW", ...)`` -> ``{"R": "NEW"}``; UserError on a malformed item."""
    renames = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise UserError(f"--name '{item}' must look like RECONSTRUCTOR=NEWNAME")
        renames[old] = new
    return renames


@click.command(name="predict")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Prediction file to write (replaced only when prediction succeeds).")
@click.option("-r", "--reconstructor", "reconstructors", multiple=True, required=True,
              metavar="NAME|CHECKPOINT",
              help="Reconstruction to run (registered name, e.g. classical, or a checkpoint); "
                   "repeat for several.")
@click.option("--name", "renames", multiple=True, metavar="R=NEWNAME",
              help="Write reconstruction R's branches as NEWNAME_* (repeatable).")
@input_options
@click.option("--out-tree", default="reco", show_default=True, help="Output tree name.")
@click.option("--step", "step_events", default=None, type=click.IntRange(min=1),
              help="Events per chunk (default 1000).")
@click.option("--nproc", default=1, show_default=True, type=click.IntRange(min=1),
              help="Worker processes, each predicting a contiguous entry range.")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
def command(inputs, output, reconstructors, renames, tree, branch_items, out_tree, step_events,
            nproc, no_progress):
    """Run reconstructions on INPUT ROOT files and write a prediction tree.

    The output has run, event, entry, R_energy, R_u, R_v, R_w, R_x, R_y, R_z, R_time, R_theta,
    R_phi, R_status (and more where available) for each reconstruction R, plus the truth
    branches of the input, in input order. Under torchrun every rank takes an entry range.
    """
    from xecreco.threads import prefer_passive_waiting

    prefer_passive_waiting()  # before torch loads: idle OpenMP threads sleep, not spin
    from xecreco.models.pipelines.predict import predict_files

    branches = branch_names(branch_items).to_dict()
    summary = predict_files(
        list(inputs), output, list(reconstructors), tree=tree, out_tree=out_tree,
        branches=branches or None,
        names=parse_renames(renames) or None, step_events=step_events, nproc=nproc,
        progress=not no_progress,
    )
    if summary["merged"]:
        click.echo(
            f"wrote {summary['events']} events to {summary['output']} "
            f"({', '.join(summary['names'])}; {summary['events_per_s']:.0f} events/s)",
            err=True,
        )
    unrepaired = summary.get("unrepaired")
    if unrepaired:
        click.echo(
            f"xecreco: note: {unrepaired['events_with_dead']} of {summary['events']} events have "
            f"dead sensors that no inpainter repaired; {', '.join(unrepaired['names'])} expect "
            "repaired input (run `xecreco inpaint` first: with 2 % dead and unrepaired, the "
            "bundled model's energy is about 1.3 % low)", err=True)
