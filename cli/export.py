"""``xecreco export CKPT -o model.onnx``: a regressor or inpainter checkpoint to ONNX, checked in
onnxruntime."""

from __future__ import annotations

import click


@click.command("export")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="ONNX file to write (written under a temporary name, renamed once checked).")
@click.option("--opset", default=17, show_default=True, type=int, help="ONNX opset version.")
@click.option("--check-events", default=64, show_default=True, type=click.IntRange(min=2),
              help="Simulated-like events on which onnxruntime must agree with what xecreco "
                   "predict (or inpaint) gives, within the float32 tolerance (64 eps32 "
                   "max|out| + 1e-5 |out|).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the check events.")
def command(checkpoint, output, opset, check_events, seed):
    """Export CHECKPOINT (a regressor or an inpainter) to ONNX, raw sensor values in.

    Regressor: inputs "npho" and "sensor_time" (N, 4760) float32, invalid values as in the files
    (NaN, inf, |x| >= 9e9), and "vertex" (N, 3) float32 cm for models that use the vertex (NaN =
    unknown). Outputs energy (GeV), u v w x y z (cm), time (ns), theta phi (deg), <q>_err where the
    model predicts uncertainties, and status (int32).

    Inpainter (task inpainter or mae): inputs "npho", "sensor_time" and "dead" (N, 4760) float32
    (> 0.5 = sensor to repair; invalid sensors are repaired too). Outputs "npho_repaired"
    (photons), "sensor_time_repaired" (s, 1e10 where no valid time) and "inpainted" (bool), as
    "xecreco inpaint" writes them.

    Validity masking and normalisation are inside the graph; the model config, normalisation and
    output units are stored as metadata. Before the file is kept, the graph is run in onnxruntime
    and every output is compared with what `xecreco predict -r CHECKPOINT` (or `xecreco inpaint
    --model CHECKPOINT`) gives on the same events, within the float32 tolerance.
    """
    from xecreco.models.export import export_checkpoint

    result = export_checkpoint(checkpoint, output, opset=opset, check_events=check_events,
                               seed=seed)
    click.echo(
        f"wrote {result['output']}: outputs {', '.join(result['outputs'])}; onnxruntime agrees "
        f"with {result['compared_with']} on {result['events']} events "
        f"within the float32 tolerance (largest difference {result['tolerance_ratio']:.2g} x "
        "the tolerance)"
    )
