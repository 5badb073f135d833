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


#: Checkpoint tasks that can be bundled (a reconstructor or an inpainter loads them).
BUNDLED_TASKS = ("regressor", "inpainter", "mae")


def bundle_checkpoint(checkpoint: str | Path, output: str | Path,
                      reference_window_ns: float | None = None) -> Path:
    """Write a trained checkpoint as a bundled model to ``output`` (``xecreco bundle``).

    Keeps what a reconstructor or inpainter needs (model config, normalisation, target scaling,
    evaluated weights, metrics, the training config) and drops the optimizer / RNG state; data
    file paths in the training config (data files, ``model.init_from``) and in the command line
    of an energy calibration are reduced to their file names (no machine paths ship).
    To replace a shipped model, ``output`` is :data:`BUNDLED_REGRESSOR` or
    :data:`BUNDLED_INPAINTER`. The file is written under a temporary name and renamed.
    ``reference_window_ns`` (regressors): the time reference's pile-up window the bundled model
    uses at inference (``normalization.reference_window_ns``, :mod:`xecreco.normalization`);
    None keeps the checkpoint's. It changes only events with sensors earlier than the window
    (the bundled ``default``: bit-identical outputs on 20,000 pile-up-free photons,
    docs/models.md).

    Raises:
        UserError: the checkpoint is missing, not a checkpoint or of another task; ``output``
            is the checkpoint itself, a folder or in a missing folder.
    """
    from xecreco.errors import UserError
    from xecreco.io.paths import check_output_file
    from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

    output = check_output_file(output, [checkpoint])
    payload = load_checkpoint(checkpoint)
    if payload.get("task") not in BUNDLED_TASKS:
        raise UserError(f"checkpoint '{checkpoint}' is a '{payload.get('task')}' checkpoint; only "
                        f"{', '.join(BUNDLED_TASKS)} checkpoints are bundled")
    payload = dict(payload)
    if reference_window_ns is not None:
        if payload.get("task") != "regressor":
            raise UserError(f"checkpoint '{checkpoint}' is a '{payload.get('task')}' checkpoint; "
                            "--reference-window-ns applies to regressors only")
        payload["normalization"] = {**payload["normalization"],
                                    "reference_window_ns": float(reference_window_ns)}
    payload["train_state"] = {}
    data = dict(payload.get("config", {}).get("data", {}))
    for key in ("train_files", "val_files"):
        if key in data:
            data[key] = [Path(str(f)).name for f in data[key]]
    if data:
        payload["config"] = {**payload["config"], "data": data}
    model = dict(payload.get("config", {}).get("model", {}))
    if model.get("init_from"):  # the checkpoint a fine-tune started from
        model["init_from"] = Path(str(model["init_from"])).name
        payload["config"] = {**payload["config"], "model": model}
    for key in ("energy_calibration", "time_combination"):  # fitted by ``xecreco calibrate``
        fitted = payload.get(key)
        source = (fitted or {}).get("info", {}).get("source")
        if source:  # the command line that fitted it: file names only
            payload[key] = {**fitted, "info": {**fitted["info"],
                                               "source": _file_names_only(source)}}
    save_checkpoint(output, payload)
    return output


def _file_names_only(command_line: str) -> str:
    """``command_line`` with every path argument reduced to its file name."""
    import shlex

    return shlex.join(Path(w).name if "/" in w and not w.startswith("-") else w
                      for w in shlex.split(command_line))
