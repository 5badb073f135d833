"""Streaming ROOT -> ROOT prediction: ``xecreco predict`` and the validation suite use this.

:func:`predict_files` reads the input files chunk by chunk (:class:`xecreco.io.reader.BatchReader`),
runs every reconstructor on each chunk and appends the prediction tree (DESIGN.md section 2) with
:class:`xecreco.io.writer.RootWriter` (bounded memory, written under a temporary name and renamed
only on success). Branches, in order: ``run``, ``event``, ``entry``; for each reconstruction R:
``R_<q>`` for every output q (plus ``R_x/R_y/R_z`` derived from u, v, w when the reconstructor
does not give them), ``R_<q>_err`` where given, ``R_status`` (int32); then the scalar, vector and
pile-up truth branches found in every input file. Entries keep the input order.

Parallel prediction: ``nproc > 1`` spawns that many worker processes; launched by ``torchrun``
(``WORLD_SIZE > 1``), every rank takes part. Either way each worker predicts one contiguous entry
range into a part file, and the parts are merged in order into the output, so the result is
identical to a single-process run (:mod:`xecreco.models.pipelines.sharding`).

Dead-flag regressors (``model.dead_flag``) read the ``inpainted`` branch of inputs that
``xecreco inpaint`` repaired (their ``input_extras``), so the flag marks the filled sensors too.

Pipelining: a background thread reads the next chunk and does everything that comes before
the models (summary columns, each reconstructor's optional ``prepare(batch)``, e.g. the network
features) while the models run on the current chunk; torch gets this process's share of the
cores (:func:`predict_threads`). Same output, bit for bit, as ``pipelined=False``.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.geometry import uvw_to_xyz
from xecreco.io.paths import check_output_file
from xecreco.io.prefetch import prefetch
from xecreco.io.provenance import describe_files, file_checksum, make_provenance
from xecreco.io.reader import BatchReader
from xecreco.io.rootfile import count_entries, list_branches
from xecreco.io.schema import (
    DEFAULT_RECO_TREE,
    DEFAULT_TREE,
    FILL_VALUE,
    INPAINTED_BRANCH,
    INPUT_BRANCHES,
    RECO_ID_BRANCHES,
    RECO_NAME_PATTERN,
    RECO_SUMMARY_BRANCHES,
    SENSOR_ARRAY_BRANCHES,
    BranchNames,
    Status,
    reco_branch,
    status_branch,
)
from xecreco.io.writer import RootWriter
from xecreco.models.base import EventBatch
from xecreco.models.pipelines.sharding import run_distributed, run_spawned, torchrun_rank
from xecreco.models.registry import create_reconstructor
from xecreco.threads import available_cores

__all__ = ["predict_files", "resolve_reconstructors", "COPIED_TRUTH", "reco_columns",
           "predict_threads"]

#: Input branches copied to the prediction tree when every input file has them: the per-event
#: (not per-sensor) truth, simulation and pile-up branches of the schema, in its order.
COPIED_TRUTH: tuple[str, ...] = tuple(
    spec.name for spec in INPUT_BRANCHES
    if spec.group in ("truth", "sim", "pileup") and spec.name not in SENSOR_ARRAY_BRANCHES
)
#: Events per reconstruction call when the caller does not choose (bounded memory).
DEFAULT_STEP_EVENTS = 1000


# --------------------------------------------------------------------------- reconstructors
def _spec_label(spec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "name", type(spec).__name__)


def resolve_reconstructors(reconstructors, names=None) -> tuple[list, list[str], list]:
    """Reconstructor objects, their output names and their original specs.

    ``reconstructors``: names, checkpoint paths or objects. ``names``: None, a list (one new name
    or None per reconstructor) or a dict ``{spec or reconstructor name: new name}``. Output names
    must be identifiers and unique (UserError otherwise).
    """
    if isinstance(reconstructors, (str, os.PathLike)) or not isinstance(reconstructors, (list, tuple)):
        reconstructors = [reconstructors]
    specs = [os.fspath(r) if isinstance(r, os.PathLike) else r for r in reconstructors]
    if not specs:
        raise UserError("no reconstructor given; pass at least one, e.g. -r classical")
    objects = [create_reconstructor(s) if isinstance(s, str) else s for s in specs]
    if names is None:
        renamed = [None] * len(objects)
    elif isinstance(names, dict):
        known = {k for s, o in zip(specs, objects) for k in (_spec_label(s), o.name)}
        unknown = sorted(set(names) - known)
        if unknown:
            raise UserError(
                f"--name refers to {', '.join(unknown)}, which is not among the reconstructors "
                f"({', '.join(sorted(known))})"
            )
        renamed = [names.get(_spec_label(s), names.get(o.name)) for s, o in zip(specs, objects)]
    else:
        renamed = list(names)
        if len(renamed) != len(objects):
            raise UserError(f"got {len(renamed)} names for {len(objects)} reconstructors")
    out_names = [new if new else obj.name for new, obj in zip(renamed, objects)]
    for name, spec in zip(out_names, specs):
        if not isinstance(name, str) or not RECO_NAME_PATTERN.match(name):
            raise UserError(
                f"reconstruction name '{name}' (from {_spec_label(spec)}) is not an identifier "
                "(letters, digits, underscores); rename it with --name SPEC=NEWNAME"
            )
    duplicates = sorted({n for n in out_names if out_names.count(n) > 1})
    if duplicates:
        raise UserError(
            f"two reconstructions would write branches {duplicates[0]}_*; give them different "
            "names with --name SPEC=NEWNAME"
        )
    return objects, out_names, specs


def _describe(obj, out_name: str, spec) -> dict:
    """Provenance record of one reconstructor: names, class, checksum, config."""
    checksum = getattr(obj, "checksum", None)
    if checksum is None and isinstance(spec, str) and Path(spec).is_file():
        checksum = file_checksum(spec)
    record = {
        "name": out_name,
        "reconstructor_name": getattr(obj, "name", None),
        "spec": spec if isinstance(spec, str) else None,
        "class": f"{type(obj).__module__}.{type(obj).__qualname__}",
        "checksum": checksum,
    }
    config = getattr(obj, "config", None)
    if callable(config):
        record["config"] = config()
    return record


# --------------------------------------------------------------------------- columns
def reco_columns(obj, name: str, batch: EventBatch, prepared=None) -> dict[str, np.ndarray]:
    """Run one reconstructor on ``batch``: ``{f"{name}_{q}": array}`` for the prediction tree.

    ``prepared`` (optional) is what ``obj.prepare(batch)`` returned, for reconstructors that
    have that method (their inputs, e.g. network features, computed ahead in the reader thread).
    Float outputs become float32 with NaN / inf replaced by FILL_VALUE (those events get
    status FIT_FAILED if they were OK); ``status`` defaults to OK.
    """
    n = len(batch)
    if prepared is None:
        result = obj.reconstruct(batch)
    else:
        result = obj.reconstruct(batch, prepared=prepared)
    outputs = tuple(obj.outputs)
    missing = [q for q in outputs if q not in result]
    if missing:
        raise ValueError(f"reconstructor '{name}' did not return {missing} (declared in outputs)")
    status = np.asarray(result.get("status", np.zeros(n)), dtype=np.int32).reshape(-1)
    keys = list(outputs) + [k for k in result if k.endswith("_err") and k[:-4] in outputs]
    columns = {}
    for q in keys:
        values = np.asarray(result[q], dtype=np.float32).reshape(-1)
        if len(values) != n:
            raise ValueError(f"reconstructor '{name}' returned {len(values)} values of '{q}' for {n} events")
        bad = ~np.isfinite(values)
        if bad.any():
            values = np.where(bad, np.float32(FILL_VALUE), values)
            status = np.where(bad & (status == Status.OK), np.int32(Status.FIT_FAILED), status)
        columns[q] = values
    if not {"x", "y", "z"} & set(columns) and {"u", "v", "w"} <= set(columns):
        uvw = np.column_stack([columns["u"], columns["v"], columns["w"]]).astype(np.float64)
        known = np.all(uvw != np.float32(FILL_VALUE), axis=1)
        xyz = np.full((n, 3), FILL_VALUE)
        if known.any():
            xyz[known] = uvw_to_xyz(uvw[known])
        position = {q: xyz[:, k].astype(np.float32) for k, q in enumerate("xyz")}
        ordered = {}
        for q, values in columns.items():
            ordered[q] = values
            if q == "w":
                ordered.update(position)
        columns = ordered
    if len(status) != n:
        raise ValueError(f"reconstructor '{name}' returned {len(status)} status codes for {n} events")
    out = {reco_branch(name, q): v for q, v in columns.items()}
    out[status_branch(name)] = status
    return out


def _empty_columns(objects, out_names) -> dict[str, np.ndarray]:
    """Zero-length columns fixing the branch set of a prediction tree with no events."""
    columns = {b: np.zeros(0, dtype=np.int64) for b in RECO_ID_BRANCHES}
    columns.update({b: np.zeros(0, dtype=dtype)
                    for b, (dtype, _, _) in RECO_SUMMARY_BRANCHES.items()})
    for obj, name in zip(objects, out_names):
        outputs = list(obj.outputs)
        if not {"x", "y", "z"} & set(outputs) and {"u", "v", "w"} <= set(outputs):
            outputs += ["x", "y", "z"]
        for q in outputs:
            columns[reco_branch(name, q)] = np.zeros(0, dtype=np.float32)
        columns[status_branch(name)] = np.zeros(0, dtype=np.int32)
    return columns


def _summary_columns(batch: EventBatch, objects=()) -> dict:
    """Identifiers and the input's event summaries (RECO_SUMMARY_BRANCHES) of one chunk.

    Sensors a reconstructor marks dead itself (its ``dead_mask``, (4760,) bool: the dead-pattern
    predictions of xecreco.validation.deadpatterns read the clean values) count as dead."""
    masks = [m for m in (getattr(obj, "dead_mask", None) for obj in objects) if m is not None]
    valid = batch.valid_npho & ~np.any(masks, axis=0) if masks else batch.valid_npho
    return {
        "run": batch.run,
        "event": batch.event,
        "entry": batch.entry,
        # event summaries of the input for the validation scans (RECO_SUMMARY_BRANCHES)
        "nDead": (~valid).sum(axis=1).astype(np.int32),
        "nphoSum": np.where(valid, batch.npho, 0.0).sum(axis=1, dtype=np.float64)
        .astype(np.float32),
    }


@dataclass
class _Chunk:
    """One chunk as the reader thread hands it on: the batch, its summary columns and each
    reconstructor's prepared inputs (None for those without ``prepare``)."""

    batch: EventBatch
    summary: dict
    prepared: list


def _prepare_chunk(batch: EventBatch, objects) -> _Chunk:
    """The reader thread's share of the work on one chunk (everything before the models)."""
    prepared = [obj.prepare(batch) if hasattr(obj, "prepare") else None for obj in objects]
    return _Chunk(batch=batch, summary=_summary_columns(batch, objects), prepared=prepared)


def _chunk_columns(chunk: _Chunk, objects, out_names, truth) -> dict:
    """All branches of one chunk, in the tree's order (ids, summaries, reconstructions, truth)."""
    columns = dict(chunk.summary)
    for obj, name, prepared in zip(objects, out_names, chunk.prepared):
        columns.update(reco_columns(obj, name, chunk.batch, prepared))
    for key in truth:
        columns[key] = chunk.batch.truth[key]
    return columns


def predict_threads(processes: int = 1) -> int:
    """torch intra-op threads of one predicting process: its share of the cores, at least 1.

    The reader thread is not subtracted: with idle OpenMP threads sleeping (``xecreco predict``
    sets passive waiting, :mod:`xecreco.threads`) 2 threads beside it ran as fast as 1 on the
    2-core machine shared with a training (1,249 vs 1,299 events/s, best of 6) and can use the
    second core when it is free (with spinning threads, 2 threads ran at 235-267 events/s)."""
    return max(1, available_cores() // max(1, processes))


@contextmanager
def _torch_threads(threads: int | None):
    """torch's intra-op thread count set to ``threads`` inside the block (restored after);
    nothing happens when ``threads`` is None or torch is not loaded."""
    torch = sys.modules.get("torch")
    if threads is None or torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- one range
@dataclass
class _Job:
    """Everything a worker needs (picklable)."""

    inputs: list[str]
    tree: str
    branches: dict
    specs: list
    out_names: list[str]
    out_tree: str
    step_events: int
    truth: list[str]
    provenance: dict = field(default_factory=dict)
    extras: list[str] = field(default_factory=list)  # input branches a reconstructor reads
    processes: int = 1  # predicting processes on this machine (they share its cores)
    pipelined: bool = True  # read and prepare chunks ahead in a background thread
    threads: int | None = None  # torch intra-op threads; None: predict_threads(processes)


def _predict_range(job: _Job, objects, path: Path, start: int, stop: int,
                   progress: bool) -> list[str]:
    """Predict entries [start, stop) into ``path``; returns the branch names written.

    Pipelined (``job.pipelined``): one background thread reads the next chunk, computes its
    summary columns and each reconstructor's ``prepare`` while this thread runs the models on
    the current one and writes it (:func:`xecreco.io.prefetch.prefetch`: one chunk ahead, the
    reader's own error raised here, the thread stopped on any exception). Same chunks, same
    order, same values as the sequential path. The output is written under a temporary name
    and renamed only when every chunk was written (:class:`RootWriter`).
    """
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stop - start, unit="ev", desc="predict", file=sys.stderr, leave=False)
    written: list[str] | None = None
    threads = job.threads if job.threads is not None else predict_threads(job.processes)
    try:
        with _torch_threads(threads), RootWriter(path, tree=job.out_tree,
                                                 provenance=job.provenance) as writer:
            if stop > start:
                batches = BatchReader(
                    job.inputs, tree=job.tree, branches=job.branches or None,
                    truth=list(job.truth) or None, extras=tuple(job.extras),
                    step_events=job.step_events, entry_start=start, entry_stop=stop,
                    prefetch=False,
                )
                if job.pipelined:
                    chunks = prefetch(batches, lambda b: _prepare_chunk(b, objects),
                                      name="xecreco-predict-reader")
                else:
                    chunks = (_prepare_chunk(b, objects) for b in batches)
                try:
                    for chunk in chunks:
                        columns = _chunk_columns(chunk, objects, job.out_names, job.truth)
                        writer.write(columns)
                        written = written or list(columns)
                        if bar is not None:
                            bar.update(len(chunk.batch))
                finally:
                    chunks.close()
            if written is None:
                columns = _empty_columns(objects, job.out_names)
                writer.write(columns)
                written = list(columns)
    finally:
        if bar is not None:
            bar.close()
    return written


def _worker(job: _Job, path: str, start: int, stop: int) -> list[str]:
    """Entry point of a spawned worker process."""
    objects = [create_reconstructor(s) if isinstance(s, str) else s for s in job.specs]
    return _predict_range(job, objects, Path(path), start, stop, progress=False)


def _rank_range(job: _Job, objects, path: Path, start: int, stop: int) -> list[str]:
    """What one torchrun rank runs on its entry range."""
    return _predict_range(job, objects, path, start, stop, progress=False)


# --------------------------------------------------------------------------- public entry
def _input_branches(inputs: list[str], tree: str, names: BranchNames,
                    objects) -> tuple[list[str], list[str]]:
    """The input branches prediction reads besides the sensors, from one listing of each file.

    Returns ``(truth, extras)``: the :data:`COPIED_TRUTH` branches every input has (copied to the
    prediction tree), and the extra branches the reconstructors read (their ``input_extras``,
    e.g. the ``inpainted`` mask of an inpainted file for dead-flag regressors) that the inputs
    have. An extra branch in some inputs only is a UserError: the same model would see different
    inputs. Both are canonical names, in :data:`COPIED_TRUTH` and ``input_extras`` order.
    """
    present = [set(list_branches(path, tree)) for path in inputs]

    def having(branch: str) -> list[str]:
        return [p for p, in_file in zip(inputs, present) if names.file_name(branch) in in_file]

    truth = [c for c in COPIED_TRUTH if len(having(c)) == len(inputs)]
    wanted = []
    for obj in objects:
        wanted += [b for b in getattr(obj, "input_extras", ()) if b not in wanted]
    extras = []
    for branch in wanted:
        files = having(branch)
        if files and len(files) < len(inputs):
            lacking = next(p for p in inputs if p not in files)
            raise UserError(f"{files[0]} has the '{names.file_name(branch)}' branch but "
                            f"{lacking} does not; predict repaired (xecreco inpaint) and "
                            "unrepaired files separately")
        if files:
            extras.append(branch)
    return truth, extras


def predict_files(
    inputs,
    output,
    reconstructors,
    *,
    tree: str = DEFAULT_TREE,
    out_tree: str = DEFAULT_RECO_TREE,
    names=None,
    step_events: int | None = None,
    nproc: int = 1,
    progress: bool = True,
    branches: dict | None = None,
    pipelined: bool = True,
    threads: int | None = None,
) -> dict:
    """Run reconstructors over ROOT files and write the prediction tree to ``output``.

    Args:
        inputs: one path or a list of paths (read in order; ``entry`` numbers them globally).
        output: the ROOT file to write (replaced atomically on success).
        reconstructors: registered names, checkpoint paths or :class:`Reconstructor` objects.
        tree, out_tree: input and output tree names.
        names: new output names: a dict ``{spec or name: new}`` or a list aligned with
            ``reconstructors`` (None keeps the reconstructor's name).
        step_events: events per chunk (default 1000).
        nproc: worker processes (each predicts a contiguous entry range; parts merged in order).
        progress: show a progress bar on stderr (single-process only).
        branches: ``{canonical: name in file}`` for inputs with non-canonical branch names.
        pipelined: read, summarise and prepare the next chunk in a background thread while the
            models run on this one (same output as False, bit for bit).
        threads: torch intra-op threads while predicting (None: :func:`predict_threads`, this
            process's share of the cores; restored afterwards).

    Returns:
        dict with ``output``, ``events``, ``seconds``, ``events_per_s``, ``names``, ``nproc``,
        ``world_size``, ``merged`` (False on torchrun ranks other than 0) and ``unrepaired``
        (:func:`_unrepaired_dead`: dead-flag regressors given dead sensors no inpainter
        repaired; None otherwise).
    """
    started = time.perf_counter()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(p) for p in inputs]
    if not inputs:
        raise UserError("no input file given")
    specs = reconstructors if isinstance(reconstructors, (list, tuple)) else [reconstructors]
    checkpoints = [os.fspath(r) for r in specs
                   if isinstance(r, (str, os.PathLike)) and Path(r).is_file()]
    output = check_output_file(output, [*inputs, *checkpoints])
    if int(nproc) < 1:
        raise UserError(f"--nproc must be at least 1, got {nproc}")
    step = DEFAULT_STEP_EVENTS if step_events is None else int(step_events)
    if step < 1:
        raise UserError(f"--step must be at least 1, got {step_events}")
    branch_names = BranchNames.from_dict(branches)
    total = count_entries(inputs, tree)
    objects, out_names, specs = resolve_reconstructors(reconstructors, names)
    truth, extras = _input_branches(inputs, tree, branch_names, objects)
    # checks every file, tree and required branch now (one clear error before any work)
    BatchReader(inputs, tree=tree, branches=branches or None, truth=truth or None,
                extras=tuple(extras), entry_stop=0)
    rank, world = torchrun_rank()
    provenance = make_provenance(
        task="predict",
        inputs=describe_files(inputs),
        tree=tree,
        out_tree=out_tree,
        reconstructors=[_describe(o, n, s) for o, n, s in zip(objects, out_names, specs)],
        nproc=int(nproc),
        world_size=world,
    )
    job = _Job(
        inputs=inputs, tree=tree, branches=dict(branches or {}), specs=specs,
        out_names=out_names, out_tree=out_tree, step_events=step, truth=truth,
        provenance=provenance, extras=extras, processes=world if world > 1 else int(nproc),
        pipelined=bool(pipelined), threads=threads,
    )
    merged = True
    if world > 1:
        merged = run_distributed(job, objects, output, total, rank, world, _rank_range)
    elif int(nproc) > 1:
        run_spawned(job, objects, output, total, int(nproc), _worker)
    else:
        _predict_range(job, objects, output, 0, total, progress)
    seconds = time.perf_counter() - started
    return {
        "output": str(output),
        "events": total,
        "seconds": seconds,
        "events_per_s": total / seconds if seconds > 0 else 0.0,
        "names": out_names,
        "nproc": int(nproc),
        "world_size": world,
        "merged": merged,
        "unrepaired": _unrepaired_dead(output, out_tree, objects, out_names, extras)
        if merged else None,
    }


def _unrepaired_dead(output: Path, out_tree: str, objects, out_names, extras) -> dict | None:
    """``{"events_with_dead", "names"}`` when dead-flag regressors (trained on inpainter-repaired
    input) predicted events that have dead sensors and no ``inpainted`` branch, else None: the
    caller says so (unrepaired, the bundled model's energy is about 1.3 % low)."""
    flagged = [n for o, n in zip(objects, out_names)
               if INPAINTED_BRANCH in getattr(o, "input_extras", ())]
    if not flagged or INPAINTED_BRANCH in extras:
        return None
    import uproot

    with uproot.open(output) as handle:
        n_dead = handle[out_tree]["nDead"].array(library="np")
    with_dead = int(np.count_nonzero(n_dead))
    return {"events_with_dead": with_dead, "names": flagged} if with_dead else None
