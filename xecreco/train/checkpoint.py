"""Checkpoint files: atomic save, safe load.

A checkpoint is a dict of plain Python types and tensors (never custom classes)::

    {"format": "xecreco-checkpoint", "format_version": 1, "task": "regressor" | "mae" | "inpainter",
     "model_config": dict, "normalization": dict, "target_scaling": dict,
     "state_dict": {name: tensor}, "ema_state_dict": {name: tensor} or None,
     "train_state": dict (optimizer, step, epoch, RNG states, data position),
     "metrics": dict, "xecreco_version": str}

Loading uses ``torch.load(weights_only=True)``: nothing in a file can execute code. A corrupt or
truncated file, a pickle of anything else, or a dict without the format marker is a one-line
:class:`~xecreco.errors.UserError`.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from xecreco._version import __version__
from xecreco.errors import UserError
from xecreco.io.paths import atomic_output
from xecreco.io.rootfile import first_line

FORMAT = "xecreco-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "task", "model_config", "state_dict")


def save_checkpoint(path, payload: dict) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then rename).

    ``format``, ``format_version`` and ``xecreco_version`` are filled in when missing.
    Returns the final path.
    """
    path = Path(path)
    payload = dict(payload)
    payload.setdefault("format", FORMAT)
    payload.setdefault("format_version", FORMAT_VERSION)
    payload.setdefault("xecreco_version", __version__)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)
    return path


#: First bytes of the files torch.load reads: a zip archive (torch >= 1.6) or a bare pickle.
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def _foreign_kind(path: Path) -> str | None:
    """What ``path`` is when its first bytes show it cannot be a torch file, else None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None  # torch.load reports it
    if head.startswith(_TORCH_MAGIC):
        return None
    if not head:
        return "an empty file"
    if head.startswith(b"root"):
        return "a ROOT file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary data"
    return "a text file"


def load_checkpoint(path, map_location="cpu") -> dict:
    """The payload of a checkpoint written by :func:`save_checkpoint`.

    Raises UserError (one line, naming the file) when the file is missing, truncated or corrupt,
    holds anything but plain types and tensors, or is not an xecreco checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    foreign = _foreign_kind(path)
    if foreign:
        raise UserError(f"{path} is not a checkpoint ({foreign}); give a .pt file written by "
                        "xecreco train (best.pt or last.pt of a run folder)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "global" in line.lower()), "")
        if not detail:  # not a class reference: the bytes are simply not a valid checkpoint
            raise UserError(
                f"checkpoint {path} is corrupt or truncated (not a readable torch file); re-copy "
                "it or use another checkpoint (e.g. last.pt)"
            ) from None
        raise UserError(
            f"checkpoint {path} holds objects other than plain data and tensors and was not loaded "
            f"(untrusted pickle: {detail[:160]}); only load checkpoints written by xecreco"
        ) from None
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises IndexError, struct.error,
        # UnicodeDecodeError, ... on bytes that are not a checkpoint (a ROOT file): all mean this
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({first_line(exc)[:160]}); re-copy it "
            "or use another checkpoint (e.g. last.pt)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(
            f"checkpoint {path} is not an xecreco checkpoint (no format marker '{FORMAT}')"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path} has format_version {version!r}; this xecreco reads up to "
            f"{FORMAT_VERSION}: upgrade xecreco"
        )
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise UserError(f"checkpoint {path} lacks the key(s) {', '.join(missing)}")
    return payload
