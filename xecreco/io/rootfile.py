"""Opening ROOT files and trees for reading, with every failure as one line.

:func:`open_root` detects missing files, directories, files that are not ROOT and truncated
copies; :func:`open_tree` lists the trees of the file when the requested one is absent. Both raise
:class:`~xecreco.errors.UserError` naming the file (and tree) and what to do. :data:`READ_ERRORS`
is the set of exceptions uproot and the decompressors raise for unreadable bytes; readers turn
them into the same kind of line.
"""

from __future__ import annotations

import os
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import uproot

from xecreco.errors import UserError
from xecreco.io.schema import DEFAULT_TREE

__all__ = [
    "READ_ERRORS",
    "as_file_list",
    "count_entries",
    "first_line",
    "list_branches",
    "open_root",
    "open_tree",
]

#: Errors uproot and the decompressors raise for unreadable bytes (a flipped byte in a streamer
#: gives NotImplementedError "memberwise serialization", KeyError, IndexError, struct.error or
#: RecursionError; a corrupt size field can ask for any amount of memory).
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError, ValueError, EOFError, zlib.error, uproot.deserialization.DeserializationError,
    NotImplementedError, KeyError, IndexError, struct.error, RecursionError, MemoryError,
)
try:  # lz4 raises its own error class for corrupt blocks
    import lz4.block as _lz4_block

    READ_ERRORS = READ_ERRORS + (_lz4_block.LZ4BlockError,)
except (ImportError, AttributeError):  # pragma: no cover - lz4 is a dependency
    pass


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


@contextmanager
def open_root(path):
    """Open a ROOT file for reading, turning every failure into a one-line UserError.

    Detects missing files, files that are not ROOT, and files shorter than their header says
    (truncated copies).
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"file not found: '{path}'")
    if path.is_dir():
        raise UserError(f"'{path}' is a directory, not a ROOT file")
    try:
        with open(path, "rb") as raw:
            magic = raw.read(4)
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror or exc}") from None
    if magic != b"root":
        what = "it is empty" if not magic else f"it starts with {magic!r}, not b'root'"
        raise UserError(f"'{path}' is not a ROOT file ({what}); give a .root file")
    try:
        # plain reads: about 2x faster than uproot's default (fsspec) source for local files; a
        # memory map is faster still but its pages count in the RSS and grow with the file
        handle = uproot.open(path, handler=uproot.source.file.MultithreadedFileSource)
    except READ_ERRORS as exc:
        message = first_line(exc)
        if "not a ROOT file" in message:
            raise UserError(f"'{path}' is not a ROOT file ({message}); give a .root file") from None
        raise UserError(
            f"cannot open '{path}': {message}; the file may be truncated or corrupt"
        ) from None
    try:
        expected = int(handle.file.fEND)
        actual = path.stat().st_size
        if actual < expected:
            raise UserError(
                f"'{path}' is truncated: {actual} bytes on disk, the ROOT header says {expected}; "
                "copy or produce the file again"
            )
        yield handle
    finally:
        handle.close()


def open_tree(handle, tree: str, path) -> "uproot.TTree":
    """The TTree ``tree`` of an open file; UserError listing the trees when it is absent."""
    try:
        trees = sorted({k.split(";")[0] for k, c in handle.classnames().items() if c == "TTree"})
        if tree not in trees:
            reason = "an object of that name is not a TTree" if tree in handle else "not found"
            raise UserError(
                f"'{path}' has no tree '{tree}' ({reason}); trees in the file: "
                f"{', '.join(trees) or 'none'}; choose one with --tree"
            )
        return handle[tree]
    except READ_ERRORS as exc:
        raise UserError(f"cannot read the tree '{tree}' of '{path}': {first_line(exc)[:160]}; "
                        "the file may be corrupt") from None


def list_branches(file, tree: str = DEFAULT_TREE) -> list[str]:
    """Names of the branches of ``tree`` in ``file`` (top level and sub-branches)."""
    with open_root(file) as handle:
        return list(open_tree(handle, tree, file).keys())


def count_entries(files, tree: str = DEFAULT_TREE) -> int:
    """Total number of entries of ``tree`` over ``files``."""
    total = 0
    for path in as_file_list(files):
        with open_root(path) as handle:
            total += int(open_tree(handle, tree, path).num_entries)
    return total


def as_file_list(files) -> list[Path]:
    """One path or a list of paths as a non-empty list of Paths (UserError when empty)."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = [Path(f) for f in files]
    if not files:
        raise UserError("no input files given")
    return files
