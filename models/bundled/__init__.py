"""Pretrained models and calibration shipped in the package (this folder, ``xecreco/models/bundled``).

Only paths live here (no torch import), so the registry can tell whether a bundled model is
installed without loading it. How each file was trained: docs/models.md ("Bundled models").
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent

#: CPU-preset regressor, registered as reconstructor ``default``.
BUNDLED_REGRESSOR = DATA_DIR / "default_regressor.pt"
#: Neural dead-channel inpainter, registered as inpainter ``default``.
BUNDLED_INPAINTER = DATA_DIR / "default_inpainter.pt"
#: Calibration constants of the classical reconstruction (``xecreco calibrate`` writes such files).
BUNDLED_CALIBRATION = DATA_DIR / "classical_calibration.json"


def bundled_regressor(**kwargs):
    """The bundled regressor as a reconstructor named ``default``."""
    from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint

    kwargs.setdefault("name", "default")
    return reconstructor_from_checkpoint(str(BUNDLED_REGRESSOR), **kwargs)


def bundled_inpainter(**kwargs):
    """The bundled neural inpainter, named ``default``."""
    from xecreco.models.inpaint.neural import inpainter_from_checkpoint

    kwargs.setdefault("name", "default")
    return inpainter_from_checkpoint(BUNDLED_INPAINTER, **kwargs)


def bundle_checkpoint(checkpoint: str | Path, destination: Path | None = None) -> Path:
    """Copy a trained checkpoint into the package as a bundled model.

    Keeps what a reconstructor needs (model config, normalisation, target scaling, evaluated
    weights, metrics, the training config) and drops the optimizer / RNG state; data file paths
    in the training config are reduced to their file names (no machine paths ship). The task
    picks the destination (regressor -> BUNDLED_REGRESSOR, inpainter -> BUNDLED_INPAINTER).
    """
    from xecreco.errors import UserError
    from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(checkpoint)
    targets = {"regressor": BUNDLED_REGRESSOR, "inpainter": BUNDLED_INPAINTER}
    if destination is None:
        if payload["task"] not in targets:
            raise UserError(f"checkpoint '{checkpoint}' is a '{payload['task']}' checkpoint; only "
                            "regressor and inpainter checkpoints are bundled")
        destination = targets[payload["task"]]
    payload = dict(payload)
    payload["train_state"] = {}
    data = dict(payload.get("config", {}).get("data", {}))
    for key in ("train_files", "val_files"):
        if key in data:
            data[key] = [Path(str(f)).name for f in data[key]]
    if data:
        payload["config"] = {**payload["config"], "data": data}
    save_checkpoint(destination, payload)
    return destination

