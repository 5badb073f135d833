"""``xecreco bundle CHECKPOINT -o OUT``: a trained checkpoint as a bundled model file.

The library function is :func:`xecreco.models.bundled.bundle_checkpoint`.
"""

from __future__ import annotations

import click


@click.command("bundle")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write (written under a temporary name, then renamed; never the "
                   "checkpoint itself).")
def command(checkpoint, output):
    """Write CHECKPOINT (regressor, inpainter or mae) as a bundled model to OUTPUT.

    Keeps the model config, normalisation, target scaling, evaluated weights, metrics and the
    training config; drops the optimizer and RNG state, and reduces data file paths to file
    names. To replace a shipped model, OUTPUT is models/bundled/default_regressor.pt or
    models/bundled/default_inpainter.pt.
    """
    from xecreco.models.bundled import bundle_checkpoint

    written = bundle_checkpoint(checkpoint, output)
    click.echo(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB; optimizer state "
               "dropped, data paths reduced to file names)")
