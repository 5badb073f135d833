"""The message format between ``simulate_file`` and its worker processes: no pickle.

A message is a JSON header (8-byte little-endian length, then UTF-8 JSON) followed by the raw
bytes of the arrays it describes (name, dtype, shape; object dtypes are refused). Jagged awkward arrays
(the pile-up truth branches) travel as their flat values plus per-event counts. Nothing a
message holds can execute code when read, so a corrupted or foreign stream is an error, never a
program.
"""

from __future__ import annotations

import json
import struct

import awkward as ak
import numpy as np


class WireError(ValueError):
    """A stream that does not hold a well-formed message (truncated or foreign bytes)."""


def _plain(value):
    """numpy scalars in headers as plain numbers (json.dumps default hook)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not allowed in a worker message header")


def write_message(stream, header: dict, arrays: dict | None = None) -> None:
    """Write ``header`` (JSON-serialisable) and ``arrays`` (name -> numpy or jagged awkward
    array) to the binary ``stream``."""
    arrays = arrays or {}
    plain, jagged = {}, []
    for name, value in arrays.items():
        if isinstance(value, ak.Array):
            jagged.append(name)
            plain[f"{name}.values"] = ak.to_numpy(ak.flatten(value))
            plain[f"{name}.counts"] = ak.to_numpy(ak.num(value))
        else:
            plain[name] = np.asarray(value)
    layout = []
    for name, value in plain.items():
        if value.dtype.hasobject:
            raise TypeError(f"array '{name}' has an object dtype; it cannot be sent to a worker")
        layout.append([name, value.dtype.str, list(value.shape)])
    body = dict(header, _arrays=layout, _jagged=jagged)
    text = json.dumps(body, default=_plain).encode()
    stream.write(struct.pack("<Q", len(text)))
    stream.write(text)
    for value in plain.values():
        stream.write(np.ascontiguousarray(value).tobytes())


def read_message(stream) -> tuple[dict, dict]:
    """``(header, arrays)`` of the next message; EOFError at a clean end of the stream,
    WireError for anything malformed."""
    size = stream.read(8)
    if not size:
        raise EOFError
    if len(size) != 8:
        raise WireError("truncated message length")
    (length,) = struct.unpack("<Q", size)
    text = stream.read(length)
    if len(text) != length:
        raise WireError("truncated message header")
    try:
        header = json.loads(text)
        layout, jagged = header.pop("_arrays"), header.pop("_jagged")
        plain = {}
        for name, dtype_str, shape in layout:
            dtype = np.dtype(dtype_str)
            if dtype.hasobject:
                raise ValueError(f"array '{name}' has an object dtype")
            nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
            data = stream.read(nbytes)
            if len(data) != nbytes:
                raise ValueError(f"array '{name}' is truncated")
            plain[name] = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"malformed message ({exc})") from None
    arrays = {name: value for name, value in plain.items()
              if not name.endswith((".values", ".counts"))}
    for name in jagged:
        arrays[name] = ak.unflatten(plain[f"{name}.values"], plain[f"{name}.counts"])
    return header, arrays
