"""``xecreco export CKPT -o model.onnx``: a regressor checkpoint to ONNX, checked in onnxruntime."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="ONNX file to write (written under a temporary name, renamed once checked).")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset version.")
@click.option("--check-events", default=64, show_default=True, type=click.IntRange(min=2),
              help="Simulated-like events on which onnxruntime must match torch (1e-4 relative).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the check events.")
def command(checkpoint, output, opset, check_events, seed):
    """Export CHECKPOINT to ONNX: raw npho (photons) and time (s) in, physical outputs out.

    Inputs "npho" and "sensor_time" (N, 4760) float32, invalid values as in the files (NaN, inf,
    |x| >= 9e9), and "vertex" (N, 3) float32 cm for models that use the vertex (NaN = unknown). Outputs energy (GeV), u v w x y z (cm), time (ns), theta phi (deg), <q>_err
    where the model predicts uncertainties, and status (int32). Validity masking, normalisation, destandardisation and the time reference are inside the
    graph; the model config, normalisation, target scaling and output units are stored as
    metadata. The graph is run in onnxruntime against torch before the file is kept.
    """
    from xecreco.models.export import export_onnx

    result = export_onnx(checkpoint, output, opset=opset, check_events=check_events, seed=seed)
    click.echo(
        f"wrote {result['output']}: outputs {', '.join(result['outputs'])}; onnxruntime matches "
        f"torch on {result['events']} events (max relative difference "
        f"{result['max_rel_diff']:.2g})"
    )
