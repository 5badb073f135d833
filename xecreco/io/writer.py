"""Chunked, atomic ROOT TTree writer with provenance.

:class:`RootWriter` buffers the arrays handed to :meth:`RootWriter.write` and writes them with
uproot's ``mktree`` + ``extend`` once every branch holds at least ``min_chunk_bytes`` (so baskets
are not tiny) or the buffer as a whole holds ``max_buffer_bytes`` (so memory stays bounded when
sensor arrays sit next to scalars). The file is written under a temporary name in the target
directory and renamed onto the final name only when the writer closes cleanly; on an exception the
temporary file is deleted, so nothing half-written ever carries the final name.

Supported branches: 1-D numeric or bool arrays, fixed-size (N, k...) arrays, and jagged awkward
arrays (``var * float32`` etc., written with a counter branch ``n<name>``).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from xecreco.errors import UserError
from xecreco.io.paths import check_output_file
from xecreco.io.schema import DEFAULT_RECO_TREE, PROVENANCE_KEY

__all__ = ["RootWriter", "read_provenance", "parse_compression"]

_COMPRESSIONS = {"lz4": uproot.LZ4, "zlib": uproot.ZLIB, "lzma": uproot.LZMA}
_DEFAULT_LEVELS = {"lz4": 1, "zlib": 1, "lzma": 1}


def parse_compression(spec):
    """An uproot compression object from ``"lz4"``, ``"zlib:6"``, ``"lzma"``, ``"none"`` or None.

    Objects that are already uproot compressions are returned unchanged.
    """
    if spec is None or isinstance(spec, uproot.compression.Compression):
        return spec
    text = str(spec).strip().lower()
    if text in ("none", "", "0"):
        return None
    name, _, level = text.partition(":")
    if name not in _COMPRESSIONS:
        raise UserError(
            f"unknown compression '{spec}'; use one of lz4, zlib, lzma or none (optionally "
            "with a level, e.g. zlib:6)"
        )
    try:
        level_value = int(level) if level else _DEFAULT_LEVELS[name]
    except ValueError:
        raise UserError(f"compression level in '{spec}' must be an integer") from None
    return _COMPRESSIONS[name](level_value)


def _branch_type(name: str, value):
    """The uproot ``mktree`` type of a branch from a schema entry or a data chunk."""
    if isinstance(value, ak.Array):
        return value.type.content
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ValueError(
                f"branch '{name}': object arrays cannot be written; use awkward arrays"
            )
        return value.dtype if value.ndim == 1 else np.dtype((value.dtype, value.shape[1:]))
    if isinstance(value, tuple) and len(value) == 2:
        dtype, shape = value
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        return np.dtype(dtype) if shape == () else np.dtype((np.dtype(dtype), shape))
    if isinstance(value, str) and "var" in value:
        return value
    return np.dtype(value)


def _is_jagged(array: ak.Array) -> bool:
    """True when any dimension of an awkward array has variable length."""
    kind = array.type.content
    while isinstance(kind, (ak.types.RegularType, ak.types.ListType)):
        if isinstance(kind, ak.types.ListType):
            return True
        kind = kind.content
    return False


def _as_column(name: str, value):
    """Numpy array (fixed shapes) or awkward array (jagged) for one branch chunk."""
    if isinstance(value, ak.Array):
        if _is_jagged(value):
            return value
        return ak.to_numpy(value)
    array = np.asarray(value)
    if array.ndim == 0:
        raise ValueError(f"branch '{name}': expected an array with one row per event, got a scalar")
    return array


def _nbytes(value) -> int:
    return int(value.nbytes)


class RootWriter:
    """Write a TTree in chunks to ``path`` atomically, with provenance.

    Args:
        path: final output file (.root). Its directory must exist.
        tree: tree name (default ``reco``).
        compression: ``"lz4"`` (default), ``"zlib"``, ``"lzma"``, ``"none"``, optionally with a
            level (``"zlib:6"``), or an uproot compression object.
        provenance: dict stored as JSON in a TObjString named ``xecreco_provenance``; it can be
            changed through the ``provenance`` attribute until the writer closes.
        min_chunk_bytes: buffered bytes each branch must reach before a write (default 256 kB).
        max_buffer_bytes: total buffered bytes that force a write whatever the per-branch sizes
            (default 64 MB), which bounds memory.
        schema: optional ``{name: dtype | (dtype, shape) | "var * float32"}``; fixes the branch
            set and types, so a file with 0 events still gets a tree with every branch.

    Use as a context manager: the file appears under ``path`` only on a clean exit.
    """

    def __init__(
        self,
        path,
        tree: str = DEFAULT_RECO_TREE,
        compression="lz4",
        provenance: dict | None = None,
        min_chunk_bytes: int = 256 * 1024,
        max_buffer_bytes: int = 64 * 1024 * 1024,
        schema: dict | None = None,
    ):
        self.path = Path(path)
        self.tree_name = tree
        self.compression = parse_compression(compression)
        self.provenance = provenance
        self.min_chunk_bytes = int(min_chunk_bytes)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self._types = {k: _branch_type(k, v) for k, v in (schema or {}).items()} or None
        self._buffers: dict[str, list] = {}
        self._buffered_bytes: dict[str, int] = {}
        self._buffered_rows = 0
        self._entries = 0
        self._tree = None
        self._file = None
        self._closed = False
        check_output_file(self.path, option="output")
        directory = self.path.parent
        self._tmp_path = directory / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            self._file = uproot.recreate(self._tmp_path, compression=self.compression)
        except OSError as exc:
            raise UserError(f"cannot write '{self._tmp_path}': {exc.strerror or exc}") from None

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "RootWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def entries(self) -> int:
        """Entries written or buffered so far."""
        return self._entries + self._buffered_rows

    # ------------------------------------------------------------------ writing
    def write(self, arrays: dict) -> None:
        """Append one chunk: ``{branch: array}`` with the same length N for every branch.

        The branch set (and, without a schema, the types) is fixed by the first call.
        """
        if self._closed:
            raise ValueError(f"RootWriter for '{self.path}' is already closed")
        columns = {name: _as_column(name, value) for name, value in arrays.items()}
        if not columns:
            return
        if self._types is None:
            self._types = {name: _branch_type(name, col) for name, col in columns.items()}
        if set(columns) != set(self._types):
            missing = sorted(set(self._types) - set(columns))
            extra = sorted(set(columns) - set(self._types))
            raise ValueError(
                f"RootWriter '{self.path}': branch set changed (missing {missing}, new {extra})"
            )
        lengths = {len(col) for col in columns.values()}
        if len(lengths) != 1:
            sizes = {name: len(col) for name, col in columns.items()}
            raise ValueError(f"RootWriter '{self.path}': branches have different lengths {sizes}")
        n = lengths.pop()
        if n == 0:
            return
        for name, col in columns.items():
            kind = self._types[name]
            if isinstance(col, np.ndarray) and isinstance(kind, np.dtype):
                base = kind.base if kind.shape else kind
                if col.shape[1:] != kind.shape:
                    raise ValueError(
                        f"RootWriter '{self.path}': branch '{name}' has per-entry shape "
                        f"{col.shape[1:]}, expected {kind.shape}"
                    )
                col = np.ascontiguousarray(col, dtype=base)
            self._buffers.setdefault(name, []).append(col)
            self._buffered_bytes[name] = self._buffered_bytes.get(name, 0) + _nbytes(col)
        self._buffered_rows += n
        self._maybe_flush()

    def _maybe_flush(self) -> None:
        sizes = self._buffered_bytes
        if (min(sizes.values()) >= self.min_chunk_bytes
                or sum(sizes.values()) >= self.max_buffer_bytes):
            self.flush()

    def _ensure_tree(self) -> None:
        if self._tree is None:
            self._tree = self._file.mktree(self.tree_name, dict(self._types or {}))

    def flush(self) -> None:
        """Write everything buffered as one ``extend`` call (one basket per branch)."""
        if not self._buffered_rows:
            return
        data = {}
        for name, chunks in self._buffers.items():
            if isinstance(chunks[0], ak.Array):
                data[name] = chunks[0] if len(chunks) == 1 else ak.concatenate(chunks)
            else:
                data[name] = chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
        self._ensure_tree()
        self._tree.extend(data)
        self._entries += self._buffered_rows
        self._buffers = {}
        self._buffered_bytes = {}
        self._buffered_rows = 0

    # ------------------------------------------------------------------ finishing
    def close(self) -> None:
        """Flush, store the provenance, close and rename the file onto its final name."""
        if self._closed:
            return
        try:
            self.flush()
            self._ensure_tree()
            if self.provenance is not None:
                self._file[PROVENANCE_KEY] = json.dumps(self.provenance, sort_keys=True)
            self._file.close()
            os.replace(self._tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        """Close and delete the temporary file; the final name is left untouched."""
        self._closed = True
        try:
            if self._file is not None:
                self._file.close()
        except Exception:  # noqa: BLE001 - the temporary file is deleted whatever state it is in
            pass
        self._tmp_path.unlink(missing_ok=True)


def read_provenance(path) -> dict:
    """The provenance dict stored by :class:`RootWriter` in ``path`` ({} when there is none)."""
    from xecreco.io.rootfile import open_root

    with open_root(path) as handle:
        if PROVENANCE_KEY not in handle:
            return {}
        text = str(handle[PROVENANCE_KEY])
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise UserError(
            f"'{path}': '{PROVENANCE_KEY}' is not valid JSON; the file is corrupt"
        ) from None
