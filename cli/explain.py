"""``xecreco explain``: what a reconstruction looks at, as an HTML page.

    xecreco explain SIM.root -r RECO -o DIR [--events N] [--gradient-events M] [--format F]

Runs :func:`xecreco.validation.explain.explain`: per-face occlusion for any reconstruction, and
for a neural regressor also gradient x input per face, mean saliency maps and the fusion
attention per depth class.
"""

from __future__ import annotations

import click

from xecreco.cli.options import branch_names, input_options


@click.command("explain")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-r", "--reconstructor", "reconstructor", required=True,
              help="Registered reconstructor name (default, classical, ...) or a regressor "
                   "checkpoint path.")
@click.option("-o", "--output", "output", required=True, type=click.Path(file_okay=False),
              help="Page folder (index.html, explain.json, plots/explain_*.<format>).")
@click.option("--events", default=500, show_default=True, type=click.IntRange(min=1),
              help="Events for the occlusion study (the first of the input; at least 50).")
@click.option("--gradient-events", default=150, show_default=True, type=click.IntRange(min=1),
              help="Events for the gradients and the attention (the first of those).")
@input_options
@click.option("--format", "formats", multiple=True, type=click.Choice(["png", "pdf", "svg"]),
              help="Plot format (repeatable; default: png). The page shows the first.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def command(inputs, reconstructor, output, events, gradient_events, tree, branch_items, formats,
            progress):
    """What a reconstruction looks at: per-face occlusion, gradient x input, saliency maps and
    fusion attention (the last three for neural regressors).

    INPUTS are simulated input files with truth (energyTruth, uvwTruth, timeTruth).
    """
    from xecreco.validation.explain import explain

    summary = explain(list(inputs), reconstructor, output, events=events,
                      gradient_events=gradient_events, tree=tree,
                      branches=branch_names(branch_items), formats=tuple(formats) or ("png",),
                      progress=progress)
    click.echo(summary["outputs"]["index_html"])
