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
                      reference_window_ns: float | None = None,
                      pileup_expert: str | Path | None = None,
                      pileup_gate: tuple[float, float] | None = None) -> Path:
    """Write a trained checkpoint as a bundled model to ``output`` (``xecreco bundle``).

    Keeps what a reconstructor or inpainter needs (model config, normalisation, target scaling,
    evaluated weights, metrics, the training config) and drops the optimizer / RNG state; data
    file paths in the training config (data files, ``model.init_from``) and in the command line
    of an energy calibration are reduced to their file names (no machine paths ship).
    To replace a shipped model, ``output`` is :data:`BUNDLED_REGRESSOR` or
    :data:`BUNDLED_INPAINTER`. The file is written under a temporary name and renamed.
    ``reference_window_ns`` (regressors and inpainters): the time reference's pile-up window
    the bundled model uses at inference (``normalization.reference_window_ns``,
    :mod:`xecreco.normalization`); None keeps the checkpoint's. It changes only events with
    sensors earlier than the window (the bundled ``default``: bit-identical outputs on 20,000
    pile-up-free photons, docs/models.md; the bundled inpainter: docs/inpainting.md).
    ``pileup_expert`` (regressors with a ``pileup`` head): a regressor checkpoint trained on
    pile-up samples, stored inside the bundled file (reduced the same way) with ``pileup_gate``
    = (run threshold, use threshold), so the file loads as a
    :class:`~xecreco.models.regressor.gated.PileupGatedReconstructor`; None keeps the
    checkpoint's expert, if it has one (``pileup_gate`` alone sets new thresholds for it).

    Raises:
        UserError: the checkpoint is missing, not a checkpoint or of another task; ``output``
            is the checkpoint itself, a folder or in a missing folder; the expert does not fit
            (:func:`~xecreco.models.regressor.gated.check_gate_pair`) or the thresholds are not
            probabilities.
    """
    from xecreco.errors import UserError
    from xecreco.io.paths import check_output_file
    from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

    output = check_output_file(output, [checkpoint] + ([pileup_expert] if pileup_expert else []))
    payload = load_checkpoint(checkpoint)
    if payload.get("task") not in BUNDLED_TASKS:
        raise UserError(f"checkpoint '{checkpoint}' is a '{payload.get('task')}' checkpoint; only "
                        f"{', '.join(BUNDLED_TASKS)} checkpoints are bundled")
    payload = dict(payload)
    if reference_window_ns is not None:
        if payload.get("task") not in ("regressor", "inpainter"):
            raise UserError(f"checkpoint '{checkpoint}' is a '{payload.get('task')}' checkpoint; "
                            "--reference-window-ns applies to regressors and inpainters only")
        payload["normalization"] = {**payload["normalization"],
                                    "reference_window_ns": float(reference_window_ns)}
    if pileup_expert is not None:
        payload.update(_gate_entries(checkpoint, payload, pileup_expert, pileup_gate))
    elif pileup_gate is not None:  # new thresholds for the expert the checkpoint holds
        from xecreco.models.regressor import gated

        if gated.EXPERT_KEY not in payload:
            raise UserError(f"checkpoint '{checkpoint}' holds no pile-up expert; pass one with "
                            "--pileup-expert to set --pileup-gate")
        payload[gated.GATE_KEY] = gated.PileupGate(*pileup_gate).to_dict()
    save_checkpoint(output, _reduced(payload))
    return output


def _gate_entries(checkpoint, payload: dict, expert_path, thresholds) -> dict:
    """The ``pileup_expert`` and ``pileup_gate`` entries of a bundled file, checked by loading
    the pair as the reconstructor will."""
    from xecreco.errors import UserError
    from xecreco.models.regressor import gated
    from xecreco.models.regressor.reconstructor import member_from_payload
    from xecreco.train.checkpoint import load_checkpoint

    if payload.get("task") != "regressor":
        raise UserError(f"checkpoint '{checkpoint}' is a '{payload.get('task')}' checkpoint; "
                        "--pileup-expert applies to regressors only")
    if thresholds is None:
        raise UserError("--pileup-expert needs the gate's thresholds (--pileup-gate RUN USE)")
    expert = dict(load_checkpoint(expert_path))
    expert.pop(gated.EXPERT_KEY, None)
    expert.pop(gated.GATE_KEY, None)
    gate = gated.PileupGate(*thresholds)
    primary_member = member_from_payload(payload, checkpoint)
    expert_member = member_from_payload(expert, expert_path)
    gated.check_gate_pair(primary_member.model.head_names, expert_member.model.head_names,
                          checkpoint)
    return {gated.EXPERT_KEY: _reduced(expert), gated.GATE_KEY: gate.to_dict()}


def _reduced(payload: dict) -> dict:
    """A checkpoint payload as it ships: no optimizer or RNG state, file names instead of
    paths (see :func:`bundle_checkpoint`)."""
    payload = dict(payload)
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
    return payload


def _file_names_only(command_line: str) -> str:
    """``command_line`` with every path argument reduced to its file name."""
    import shlex

    return shlex.join(Path(w).name if "/" in w and not w.startswith("-") else w
                      for w in shlex.split(command_line))
