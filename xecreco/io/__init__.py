"""Data I/O: the file schema, the streaming ROOT reader, the chunked ROOT writer and provenance.

Modules: :mod:`~xecreco.io.schema` (names, units, sentinels), :mod:`~xecreco.io.rootfile`
(``open_root``, ``open_tree``, ``count_entries``, ``list_branches``), :mod:`~xecreco.io.validity`
(the validity masks and ``ReaderStats``), :mod:`~xecreco.io.reader` (``iterate_batches``,
``BatchReader``), :mod:`~xecreco.io.writer` (``RootWriter``,
``read_provenance``), :mod:`~xecreco.io.provenance` (``make_provenance``) and
:mod:`~xecreco.io.batch` (``EventBatch``). The common names are importable from here; uproot is
imported only when the reader or writer is first used.
"""

from __future__ import annotations

import importlib

from xecreco.io.batch import EventBatch

_LAZY = {
    "iterate_batches": "xecreco.io.reader",
    "BatchReader": "xecreco.io.reader",
    "ReaderStats": "xecreco.io.validity",
    "count_entries": "xecreco.io.rootfile",
    "list_branches": "xecreco.io.rootfile",
    "RootWriter": "xecreco.io.writer",
    "read_provenance": "xecreco.io.writer",
    "make_provenance": "xecreco.io.provenance",
    "BranchNames": "xecreco.io.schema",
}

__all__ = ["EventBatch", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xecreco.io' has no attribute '{name}'")
