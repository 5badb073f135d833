"""Provenance records stored in every file xecreco writes.

A provenance record is a JSON-serialisable dict: xecreco version, UTC creation time, command line,
library versions, plus whatever the caller adds (model name and checksum, config, input files with
sizes). :class:`xecreco.io.writer.RootWriter` stores it in the file as a TObjString named
``xecreco_provenance``; :func:`xecreco.io.writer.read_provenance` reads it back.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import xxhash

from xecreco import __version__

__all__ = ["make_provenance", "describe_files", "file_checksum", "to_jsonable"]


def to_jsonable(value):
    """``value`` with numpy scalars/arrays, paths, tuples and sets turned into JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def file_checksum(path: str | os.PathLike, chunk_bytes: int = 1 << 22) -> str:
    """Checksum of a file's bytes as ``"xxh64:<16 hex digits>"``."""
    digest = xxhash.xxh64()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return f"xxh64:{digest.hexdigest()}"


def describe_files(paths) -> list[dict]:
    """``[{"path": absolute path, "size_bytes": int}]`` for input files (size None if missing)."""
    described = []
    for path in paths:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        described.append({"path": str(path.resolve()), "size_bytes": size})
    return described


def make_provenance(**extra) -> dict:
    """A provenance record: versions, UTC time, command line, and ``extra`` (JSON-safe).

    Typical extras: ``model={"name": ..., "checksum": ...}``, ``config={...}``,
    ``inputs=describe_files(paths)``.
    """
    import awkward
    import uproot

    record = {
        "xecreco_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command_line": list(sys.argv),
        "python": platform.python_version(),
        "host": platform.node(),
        "libraries": {"numpy": np.__version__, "uproot": uproot.__version__,
                      "awkward": awkward.__version__},
    }
    record.update(to_jsonable(extra))
    json.dumps(record)  # fail here, not in the writer, if something is not serialisable
    return record
