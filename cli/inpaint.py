"""``xecreco inpaint``: repair dead channels in a ROOT file.

The default model is the bundled neural inpainter (registry name ``default``) when this install
has one, otherwise the ``local-fit`` baseline (the best baseline on the inner face). The library function is
:func:`xecreco.models.pipelines.inpaint.inpaint_file`.
"""

from __future__ import annotations

import click

from xecreco.cli.options import branch_names, input_options
from xecreco.errors import UserError


@click.command("inpaint")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output ROOT file (a repaired copy of the input plus an 'inpainted' branch).")
@click.option("-m", "--model", default=None, metavar="MODEL|BASELINE",
              help="Inpainter: neighbour-average, solid-angle, local-fit, default, or a "
                   "checkpoint path. Default: the bundled inpainter if installed, else "
                   "local-fit.")
@click.option("--dead", "dead_file", default=None, type=click.Path(dir_okay=False),
              help="File of sensor ids (0-4759, one per line or comma-separated) to mark dead "
                   "in every event before inpainting.")
@click.option("--dead-branch", default=None, metavar="NAME",
              help="Per-event bool branch (4760 per entry); True sensors are marked dead.")
@input_options
@click.option("--out-tree", default=None, help="Output tree name (default: the input tree name).")
@click.option("--step", "step_events", default=None, type=click.IntRange(min=1),
              help="Events per chunk (bounds memory).")
@click.option("--score", is_flag=True,
              help="Print per-face errors against nphoClean/timeClean (simulated inputs).")
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
def command(inputs, output, model, dead_file, dead_branch, tree, branch_items, out_tree,
            step_events, score, no_progress):
    """Repair dead (invalid) sensors of INPUTS and write a copy to OUTPUT.

    Invalid sensors (sentinels, NaN, inf, plus --dead / --dead-branch) get npho and time
    estimates; all other branches are copied unchanged.
    """
    from xecreco.models.pipelines.inpaint import inpaint_file

    if dead_file is not None and dead_branch is not None:
        raise UserError("--dead and --dead-branch are exclusive: give one of them")
    names = branch_names(branch_items)
    stats = inpaint_file(list(inputs), output, model, dead_file=dead_file,
                         dead_branch=dead_branch, tree=tree, out_tree=out_tree, branches=names,
                         step_events=step_events, progress=not no_progress)
    filled = sum(stats["inpainted"].values())
    click.echo(f"inpainted {filled} sensor values in {stats['events']} events with "
               f"'{stats['inpainter']}' -> {output} ({stats['seconds']:.1f} s); "
               f"{stats['still_invalid']} left invalid", err=True)
    if score:
        from xecreco.validation.inpainting import format_scores, score_file

        scores = score_file(output, tree=out_tree or tree, step_events=step_events)
        click.echo(format_scores(scores))
