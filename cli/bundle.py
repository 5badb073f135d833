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
@click.option("--reference-window-ns", type=click.FloatRange(min=0.0, min_open=True),
              default=None,
              help="Regressors and inpainters: give the time reference this pile-up window "
                   "at inference "
                   "(normalization.reference_window_ns; sensors earlier than the median time "
                   "of the normalization.reference_anchor_k brightest, 30 by default, minus "
                   "this cannot set it, so an earlier pile-up photon no longer shifts every "
                   "time feature). Default: the checkpoint's own.")
@click.option("--pileup-expert", type=click.Path(dir_okay=False), default=None,
              help="Regressors with a pileup head: a regressor checkpoint trained on pile-up "
                   "samples, stored in the bundled file; it reconstructs the events the gate "
                   "flags (docs/reconstruction.md). Needs --pileup-gate.")
@click.option("--pileup-gate", type=click.FloatRange(min=0.0, max=1.0, min_open=True,
                                                     max_open=True),
              nargs=2, default=None, metavar="RUN USE",
              help="The gate's thresholds: the expert runs where the main network's "
                   "pileup_prob >= RUN and its outputs replace the main network's where its own "
                   "pileup_prob >= USE. Alone: new thresholds for the checkpoint's expert.")
def command(checkpoint, output, reference_window_ns, pileup_expert, pileup_gate):
    """Write CHECKPOINT (regressor, inpainter or mae) as a bundled model to OUTPUT.

    Keeps the model config, normalisation, target scaling, evaluated weights, metrics and the
    training config; drops the optimizer and RNG state, and reduces data file paths to file
    names. To replace a shipped model, OUTPUT is models/bundled/default_regressor.pt or
    models/bundled/default_inpainter.pt.
    """
    from xecreco.models.bundled import bundle_checkpoint

    written = bundle_checkpoint(checkpoint, output, reference_window_ns=reference_window_ns,
                                pileup_expert=pileup_expert, pileup_gate=pileup_gate or None)
    click.echo(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB; optimizer state "
               "dropped, data paths reduced to file names)")
