"""``xecreco display FILE --entry N [--entry M ...] [-p PRED.root ...] -o OUT.png|pdf``: the
event display (:func:`xecreco.validation.display.display_event`)."""

from __future__ import annotations

import click

from xecreco.cli.options import branch_names, input_options


@click.command("display")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("-e", "--entry", "entries", multiple=True, required=True,
              type=click.IntRange(min=0),
              help="Input entry to draw (global over the file; repeatable: one page each).")
@click.option("-p", "--predictions", "predictions", multiple=True,
              type=click.Path(dir_okay=False),
              help="Prediction file of the same input (repeatable): every reconstruction in it "
                   "is marked with its name.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="OUT.pdf (one page per entry) or OUT.png (several entries: OUT_<entry>.png).")
@input_options
@click.option("--pred-tree", default="reco", show_default=True, help="Prediction tree name.")
@click.option("--asbuilt", type=click.Path(dir_okay=False), default=None,
              help="Draw the sensors at the positions of an as-built sensor_directions.txt.")
def command(file, entries, predictions, output, tree, branch_items, pred_tree, asbuilt):
    """Draw events of FILE on the unrolled detector: npho (log scale) and sensor times, dead and
    invalid sensors, the true first interaction, pile-up photons and each reconstruction."""
    from xecreco.geometry import load_asbuilt
    from xecreco.validation.display import display_event

    geometry = load_asbuilt(asbuilt) if asbuilt else None
    for path in display_event(file, list(entries), predictions=list(predictions), out=output,
                              tree=tree, pred_tree=pred_tree, geometry=geometry,
                              branches=branch_names(branch_items)):
        click.echo(f"wrote {path}")
