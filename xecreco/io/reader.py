"""Streaming ROOT reader: input files -> :class:`~xecreco.io.batch.EventBatch` chunks.

One validity mask per quantity comes out of here and nothing downstream tests sentinels again;
the rule and its counts (:class:`~xecreco.io.validity.ReaderStats`) are in
:mod:`xecreco.io.validity`, file and tree opening (one-line errors) in :mod:`xecreco.io.rootfile`.

Entry numbers are global over the list of files in order (``entry_start``/``entry_stop`` are
global too), so workers and ranks can take disjoint entry ranges. Chunks are sized by memory: by
default about 64 MB of sensor arrays. Fixed-size array branches (``float npho[4760]``) and
std::vector / counted jagged branches both read; sensor-array branches must hold exactly 4760
values per entry. Jagged truth (pile-up) comes back as awkward arrays. A background thread reads
the next chunk while the caller works on the current one (``prefetch``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import awkward as ak
import numpy as np
import uproot

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS, EventBatch
from xecreco.io.prefetch import prefetch
from xecreco.io.rootfile import READ_ERRORS, as_file_list, first_line, open_root, open_tree
from xecreco.io.schema import (
    DEFAULT_TREE,
    PILEUP_TRUTH_BRANCHES,
    SENSOR_ARRAY_BRANCHES,
    SIM_EXTRA_BRANCHES,
    TRUTH_BRANCHES,
    BranchNames,
)
from xecreco.io.validity import DEFAULT_TIME_NPHO_THRESHOLD, ReaderStats, apply_validity

__all__ = ["BatchReader", "iterate_batches", "DEFAULT_CHUNK_BYTES"]

#: Target size of the sensor arrays of one chunk, bytes.
DEFAULT_CHUNK_BYTES = 64 * 1024 * 1024


@dataclass
class _FilePlan:
    path: Path
    entries: int
    offset: int  # global entry number of the file's first entry
    read: dict = field(default_factory=dict)  # canonical name -> name in file
    truth: tuple = ()  # canonical names going to batch.truth
    has_ids: bool = True


class BatchReader:
    """Iterate over ROOT input files in :class:`EventBatch` chunks, keeping :class:`ReaderStats`.

    Args:
        files: one path or a list of paths (read in order, global entry numbering).
        tree: tree name (default ``tree``).
        branches: :class:`BranchNames` (or a ``{canonical: name_in_file}`` dict) for files whose
            branch names differ from the canonical ones.
        truth: None (no truth), a list of canonical names (all must exist), or ``"all"`` for every
            truth, simulation-extra and pile-up branch present. Stored in ``batch.truth`` under
            canonical names; jagged ones as awkward arrays.
        extras: canonical names of further branches (e.g. ``dead``) for ``batch.extras``.
        step_events: events per chunk; default from ``chunk_bytes``.
        entry_start, entry_stop: global entry range (clipped to what exists).
        time_npho_threshold: minimum npho (photons) for a valid time (default 50).
        chunk_bytes: target bytes of sensor arrays per chunk when ``step_events`` is None.
        vertex: fill ``batch.vertex`` from ``xyzVTX`` when the file has it.
        prefetch: read the next chunk in a background thread.

    ``stats`` holds the counts of every batch yielded so far. Without ``run``/``event`` branches
    the batch has run 0 and event = entry.
    """

    def __init__(
        self,
        files,
        *,
        tree: str = DEFAULT_TREE,
        branches: BranchNames | dict | None = None,
        truth=None,
        extras=(),
        step_events: int | None = None,
        entry_start: int | None = None,
        entry_stop: int | None = None,
        time_npho_threshold: float = DEFAULT_TIME_NPHO_THRESHOLD,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        vertex: bool = True,
        prefetch: bool = True,
    ):
        self.files = as_file_list(files)
        self.tree = tree
        self.names = BranchNames.of(branches)
        self.time_npho_threshold = float(time_npho_threshold)
        self.prefetch = bool(prefetch)
        self.stats = ReaderStats()
        if isinstance(truth, str) and truth != "all":
            raise UserError(f"truth must be None, a list of branch names or 'all', got '{truth}'")
        self._truth_request = truth
        self._extras = tuple(extras)
        self._want_vertex = vertex
        self._plans = []
        offset = 0
        for path in self.files:
            self._plans.append(self._plan(path, offset))
            offset += self._plans[-1].entries
        self.total_entries = offset
        start = 0 if entry_start is None else int(entry_start)
        stop = self.total_entries if entry_stop is None else int(entry_stop)
        self.entry_start = min(max(start, 0), self.total_entries)
        self.entry_stop = max(min(stop, self.total_entries), self.entry_start)
        if step_events is None:
            step_events = max(1, int(chunk_bytes) // self._bytes_per_event())
        if int(step_events) < 1:
            raise UserError(f"step_events must be at least 1, got {step_events}")
        self.step_events = int(step_events)

    # ------------------------------------------------------------------ planning
    def _plan(self, path: Path, offset: int) -> _FilePlan:
        names = self.names
        with open_root(path) as handle:
            ttree = open_tree(handle, self.tree, path)
            present = set(ttree.keys())
            plan = _FilePlan(path=path, entries=int(ttree.num_entries), offset=offset)

            def require(canonical: str, role: str):
                file_name = names.file_name(canonical)
                if file_name not in present:
                    shown = ", ".join(sorted(present)) or "none"
                    raise UserError(
                        f"'{path}' tree '{self.tree}' has no {role} branch '{file_name}'; branches "
                        f"in the tree: {shown}; if the file names it differently, map it with "
                        f"--branch {canonical}=NAME_IN_FILE (Python: BranchNames; train: "
                        "data.branches)"
                    )
                plan.read[canonical] = file_name

            require("npho", "required")
            require("time", "required")
            plan.has_ids = all(names.file_name(c) in present for c in ("run", "event"))
            if plan.has_ids:
                plan.read["run"] = names.file_name("run")
                plan.read["event"] = names.file_name("event")
            plan.truth = self._truth_names(present)
            for canonical in plan.truth:
                require(canonical, "truth")
            for canonical in self._extras:
                require(canonical, "extra")
            if self._want_vertex and names.file_name("xyzVTX") in present:
                plan.read["xyzVTX"] = names.file_name("xyzVTX")
            for canonical, file_name in plan.read.items():
                if canonical in SENSOR_ARRAY_BRANCHES:
                    self._check_sensor_branch(ttree[file_name], path, file_name)
        return plan

    def _truth_names(self, present: set) -> tuple[str, ...]:
        request = self._truth_request
        if request is None:
            return ()
        if request == "all":
            known = TRUTH_BRANCHES + SIM_EXTRA_BRANCHES + PILEUP_TRUTH_BRANCHES
            return tuple(c for c in known if self.names.file_name(c) in present)
        return tuple(request)

    def _check_sensor_branch(self, branch, path, name) -> None:
        interpretation = branch.interpretation
        if isinstance(interpretation, uproot.interpretation.numerical.AsDtype):
            shape = interpretation.to_dtype.shape
            if shape != (N_SENSORS,):
                raise UserError(
                    f"'{path}' branch '{name}' holds {int(np.prod(shape)) if shape else 1} values "
                    f"per entry, expected {N_SENSORS} (one per sensor)"
                )
        elif not isinstance(interpretation, uproot.interpretation.jagged.AsJagged):
            raise UserError(
                f"'{path}' branch '{name}' has type {branch.typename}, which is not a numeric "
                f"array of {N_SENSORS} values"
            )

    def _bytes_per_event(self) -> int:
        n_sensor = max(
            sum(1 for c in plan.read if c in SENSOR_ARRAY_BRANCHES) for plan in self._plans
        )
        # float32 values plus a bool mask for npho and time, float32 for the other sensor arrays
        return N_SENSORS * (2 * 5 + 4 * (n_sensor - 2)) + 64

    # ------------------------------------------------------------------ iteration
    def __len__(self) -> int:
        """Number of events in the selected entry range."""
        return self.entry_stop - self.entry_start

    def __iter__(self) -> Iterator[EventBatch]:
        chunks = self._read_chunks()
        if self.prefetch:
            chunks = prefetch(chunks, name="xecreco-reader")
        for batch, stats in chunks:
            self.stats.add(stats)
            yield batch

    def _read_chunks(self):
        for plan in self._plans:
            first = max(self.entry_start, plan.offset)
            last = min(self.entry_stop, plan.offset + plan.entries)
            if last <= first:
                continue
            yield from self._read_file(plan, first - plan.offset, last - plan.offset)

    def _read_file(self, plan: _FilePlan, local_start: int, local_stop: int):
        to_canonical = {file_name: canonical for canonical, file_name in plan.read.items()}
        with open_root(plan.path) as handle:
            ttree = handle[self.tree]
            iterator = ttree.iterate(
                list(to_canonical),
                entry_start=local_start,
                entry_stop=local_stop,
                step_size=self.step_events,
                library="ak",
                how=dict,
            )
            position = local_start
            while True:
                try:
                    arrays = next(iterator)
                except StopIteration:
                    return
                except READ_ERRORS as exc:
                    raise UserError(
                        f"cannot read '{plan.path}' tree '{self.tree}' from entry {position}: "
                        f"{first_line(exc)}; the file may be truncated or corrupt"
                    ) from None
                columns = {to_canonical[k]: v for k, v in arrays.items()}
                n = len(columns["npho"])
                yield self._make_batch(plan, columns, position, n)
                position += n

    def _make_batch(self, plan: _FilePlan, columns: dict, local_start: int, n: int):
        stats = ReaderStats()
        entry = np.arange(plan.offset + local_start, plan.offset + local_start + n, dtype=np.int64)
        npho = self._sensor_array(columns.pop("npho"), plan, "npho", entry)
        time = self._sensor_array(columns.pop("time"), plan, "time", entry)
        valid_npho, valid_time = apply_validity(npho, time, self.time_npho_threshold, stats)
        if plan.has_ids:
            run = ak.to_numpy(columns.pop("run")).astype(np.int64, copy=False)
            event = ak.to_numpy(columns.pop("event")).astype(np.int64, copy=False)
        else:
            run = np.zeros(n, dtype=np.int64)
            event = entry.copy()
        vertex_array = columns.get("xyzVTX") if self._want_vertex else None
        truth, extras = {}, {}
        for canonical, array in columns.items():
            if canonical in SENSOR_ARRAY_BRANCHES:
                value = self._sensor_array(array, plan, canonical, entry, float32=False)
            else:
                value = _to_numpy_if_regular(array)
            if canonical in plan.truth:
                truth[canonical] = value
            if canonical in self._extras:
                extras[canonical] = value
        vertex = None
        if vertex_array is not None:
            try:
                vertex = np.asarray(_to_numpy_if_regular(vertex_array), dtype=np.float32)
            except (ValueError, TypeError):  # jagged: not one (x, y, z) per entry
                vertex = np.zeros((n, 0), np.float32)
            if vertex.shape != (n, 3):
                raise UserError(
                    f"'{plan.path}' branch '{self.names.file_name('xyzVTX')}' does not hold 3 "
                    "values (x, y, z in cm) per entry; map the right branch with BranchNames "
                    "or drop it")
        batch = EventBatch(
            npho=npho, time=time, valid_npho=valid_npho, valid_time=valid_time,
            run=run, event=event, entry=entry, vertex=vertex, truth=truth, extras=extras,
        )
        return batch, stats

    def _sensor_array(self, array, plan, name, entry, float32: bool = True) -> np.ndarray:
        """(n, 4760) numpy array from a fixed-size or jagged branch; UserError on wrong lengths."""
        if isinstance(array.type.content, ak.types.ListType):
            counts = ak.to_numpy(ak.num(array, axis=1))
            wrong = np.flatnonzero(counts != N_SENSORS)
            if wrong.size:
                raise UserError(
                    f"'{plan.path}' branch '{plan.read[name]}' has {int(counts[wrong[0]])} values "
                    f"at entry {int(entry[wrong[0]] - plan.offset)}, expected {N_SENSORS} (one per "
                    "sensor)"
                )
            values = ak.to_numpy(ak.flatten(array, axis=1)).reshape(len(array), N_SENSORS)
        else:
            values = ak.to_numpy(array)
        if float32:
            values = values.astype(np.float32, copy=False)
            if not values.flags.writeable or not values.flags.c_contiguous:
                values = np.array(values, dtype=np.float32)
        return values


def _to_numpy_if_regular(array):
    """Numpy for fixed-shape awkward arrays, the awkward array itself for jagged ones."""
    kind = array.type.content
    while isinstance(kind, ak.types.RegularType):
        kind = kind.content
    if isinstance(kind, ak.types.ListType):
        return array
    return ak.to_numpy(array)


def iterate_batches(
    files,
    *,
    tree: str = DEFAULT_TREE,
    branches: BranchNames | dict | None = None,
    truth=None,
    extras=(),
    step_events: int | None = None,
    entry_start: int | None = None,
    entry_stop: int | None = None,
    **options,
) -> Iterator[EventBatch]:
    """Yield :class:`EventBatch` chunks of ``files``; see :class:`BatchReader` for the arguments."""
    reader = BatchReader(
        files, tree=tree, branches=branches, truth=truth, extras=extras, step_events=step_events,
        entry_start=entry_start, entry_stop=entry_stop, **options,
    )
    yield from reader
