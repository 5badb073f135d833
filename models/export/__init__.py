"""ONNX export of checkpoints: the shared pieces (:mod:`.onnx`), the regressor graph
(:mod:`.regressor`) and the inpainter graph (:mod:`.inpainter`).

:func:`export_checkpoint` picks the exporter from the checkpoint's task (the library function
behind ``xecreco export``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["export_checkpoint", "EXPORTED_TASKS"]

#: Checkpoint task -> (module, function, what the graph is checked against).
EXPORTED_TASKS = {
    "regressor": ("xecreco.models.export.regressor", "export_onnx", "predict"),
    "inpainter": ("xecreco.models.export.inpainter", "export_inpainter_onnx", "inpaint"),
    "mae": ("xecreco.models.export.inpainter", "export_inpainter_onnx", "inpaint"),
}


def export_checkpoint(checkpoint: str | Path, output: str | Path, *, opset: int = 17,
                      check_events: int = 64, seed: int = 0) -> dict:
    """Export a regressor or inpainter (or mae) checkpoint to ONNX at ``output``.

    The graph is checked in onnxruntime against ``xecreco predict`` (regressor) or ``xecreco
    inpaint`` (inpainter) on ``check_events`` simulated-like events before the file is written.
    Returns the exporter's summary plus ``task`` and ``compared_with``; UserError for other
    checkpoints or an output that would overwrite the checkpoint.
    """
    import importlib

    from xecreco.errors import UserError
    from xecreco.io.paths import check_output_file
    from xecreco.train.checkpoint import load_checkpoint

    check_output_file(output, [checkpoint])
    task = load_checkpoint(checkpoint).get("task")
    if task not in EXPORTED_TASKS:
        raise UserError(f"checkpoint {checkpoint} is a '{task}' checkpoint; xecreco export takes "
                        "a 'regressor' or an 'inpainter' (or 'mae') checkpoint")
    module, function, compared_with = EXPORTED_TASKS[task]
    export = getattr(importlib.import_module(module), function)
    result = export(checkpoint, output, opset=opset, check_events=check_events, seed=seed)
    return {**result, "task": task, "compared_with": compared_with}
