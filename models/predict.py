"""Streaming ROOT -> ROOT prediction: ``xecreco predict`` and the validation suite use this.

:func:`predict_files` reads the input files chunk by chunk (:func:`xecreco.io.reader.iterate_batches`),
runs every reconstructor on each chunk and appends the prediction tree (DESIGN.md section 2) with
:class:`xecreco.io.writer.RootWriter` (bounded memory, written under a temporary name and renamed
only on success). Branches, in order: ``run``, ``event``, ``entry``; for each reconstruction R:
``R_<q>`` for every output q (plus ``R_x/R_y/R_z`` derived from u, v, w when the reconstructor
does not give them), ``R_<q>_err`` where given, ``R_status`` (int32); then the scalar, vector and
pile-up truth branches found in every input file. Entries keep the input order.

Parallel prediction: ``nproc > 1`` spawns that many worker processes; launched by ``torchrun``
(``WORLD_SIZE > 1``), every rank takes part. Either way each worker predicts one contiguous entry
range into a part file, and the parts are merged in order into the output, so the result is
identical to a single-process run.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import re
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import uproot

from xecreco.errors import UserError
from xecreco.geometry import uvw_to_xyz
from xecreco.io.paths import check_output_file, make_temp_dir
from xecreco.io.provenance import describe_files, file_checksum, make_provenance
from xecreco.io.reader import BatchReader, count_entries, iterate_batches, list_branches
from xecreco.io.schema import (
    DEFAULT_RECO_TREE,
    DEFAULT_TREE,
    PILEUP_TRUTH_BRANCHES,
    TRUTH_BRANCHES,
    BranchNames,
)
from xecreco.io.writer import RootWriter
from xecreco.models.base import FILL_VALUE, EventBatch, Status
from xecreco.models.registry import create_reconstructor

__all__ = ["predict_files", "resolve_reconstructors", "COPIED_TRUTH", "reco_columns"]

#: Input branches copied to the prediction tree when every input file has them.
COPIED_TRUTH: tuple[str, ...] = TRUTH_BRANCHES + ("energyVisible",) + PILEUP_TRUTH_BRANCHES
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Events per reconstruction call when the caller does not choose (bounded memory).
DEFAULT_STEP_EVENTS = 1000
#: Rows read at once from a part file while merging.
MERGE_STEP = "64 MB"


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
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
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
def reco_columns(obj, name: str, batch: EventBatch) -> dict[str, np.ndarray]:
    """Run one reconstructor on ``batch``: ``{f"{name}_{q}": array}`` for the prediction tree.

    Float outputs become float32 with NaN / inf replaced by FILL_VALUE (those events get
    status FIT_FAILED if they were OK); ``status`` defaults to OK.
    """
    n = len(batch)
    result = obj.reconstruct(batch)
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
    out = {f"{name}_{q}": v for q, v in columns.items()}
    out[f"{name}_status"] = status
    return out


def _empty_columns(objects, out_names) -> dict[str, np.ndarray]:
    """Zero-length columns fixing the branch set of a prediction tree with no events."""
    columns = {b: np.zeros(0, dtype=np.int64) for b in ("run", "event", "entry")}
    columns["nDead"] = np.zeros(0, dtype=np.int32)
    columns["nphoSum"] = np.zeros(0, dtype=np.float32)
    for obj, name in zip(objects, out_names):
        outputs = list(obj.outputs)
        if not {"x", "y", "z"} & set(outputs) and {"u", "v", "w"} <= set(outputs):
            outputs += ["x", "y", "z"]
        for q in outputs:
            columns[f"{name}_{q}"] = np.zeros(0, dtype=np.float32)
        columns[f"{name}_status"] = np.zeros(0, dtype=np.int32)
    return columns


def _batch_columns(batch: EventBatch, objects, out_names, truth) -> dict:
    columns = {
        "run": batch.run,
        "event": batch.event,
        "entry": batch.entry,
        # event summaries of the input for the validation scans (dead channels, collected light)
        "nDead": (~batch.valid_npho).sum(axis=1).astype(np.int32),
        "nphoSum": np.where(batch.valid_npho, batch.npho, 0.0).sum(axis=1, dtype=np.float64)
        .astype(np.float32),
    }
    for obj, name in zip(objects, out_names):
        columns.update(reco_columns(obj, name, batch))
    for key in truth:
        columns[key] = batch.truth[key]
    return columns


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


def _predict_range(job: _Job, objects, path: Path, start: int, stop: int, progress: bool) -> list[str]:
    """Predict entries [start, stop) into ``path``; returns the branch names written."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=stop - start, unit="ev", desc="predict", file=sys.stderr, leave=False)
    written: list[str] | None = None
    try:
        with RootWriter(path, tree=job.out_tree, provenance=job.provenance) as writer:
            if stop > start:
                for batch in iterate_batches(
                    job.inputs, tree=job.tree, branches=job.branches or None,
                    truth=list(job.truth) or None, step_events=job.step_events,
                    entry_start=start, entry_stop=stop,
                ):
                    columns = _batch_columns(batch, objects, job.out_names, job.truth)
                    writer.write(columns)
                    written = written or list(columns)
                    if bar is not None:
                        bar.update(len(batch))
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


def _merge_parts(parts: list[Path], branch_lists: list[list[str]], output: Path, job: _Job) -> int:
    """Concatenate the part files in order into ``output``; returns the number of entries."""
    nonempty = [i for i, p in enumerate(parts) if _entries(p, job.out_tree) > 0]
    names = branch_lists[nonempty[0]] if nonempty else branch_lists[0]
    total = 0
    with RootWriter(output, tree=job.out_tree, provenance=job.provenance) as writer:
        for i in nonempty or [0]:
            with uproot.open(parts[i]) as handle:
                tree = handle[job.out_tree]
                if tree.num_entries == 0:
                    writer.write(tree.arrays(names, library="ak", how=dict))
                    continue
                for arrays in tree.iterate(names, step_size=MERGE_STEP, library="ak", how=dict):
                    writer.write(arrays)
                    total += len(arrays["entry"])
    return total


def _entries(path: Path, tree: str) -> int:
    with uproot.open(path) as handle:
        return int(handle[tree].num_entries)


def _ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous entry ranges covering [0, total) (sizes differ by at most one)."""
    bounds = [total * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


# --------------------------------------------------------------------------- parallel modes
def _portable(obj, spec):
    """What a spawned worker receives: the object itself when it pickles (no re-creation, no
    registry import in the worker), else its spec string."""
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any pickling failure means: rebuild it from the spec
        if not isinstance(spec, str):
            raise UserError(
                f"reconstructor '{getattr(obj, 'name', obj)}' cannot be sent to worker processes "
                "(not picklable); use --nproc 1 or register it by name"
            ) from None
        return spec
    return obj


def _run_spawned(job: _Job, objects, output: Path, total: int, nproc: int) -> None:
    job = replace(job, specs=[_portable(o, s) for o, s in zip(objects, job.specs)])
    # .NAME.<pid>.<random>.tmp/: removed below, or by the next run once this process is gone
    parts_dir = make_temp_dir(output)
    try:
        ranges = _ranges(total, nproc)
        parts = [parts_dir / f"part-{k:05d}.root" for k in range(nproc)]
        context = multiprocessing.get_context("spawn")
        # a worker that dies (killed, out of memory) breaks the pool and raises here instead of
        # hanging, unlike multiprocessing.Pool which would respawn it forever
        with ProcessPoolExecutor(max_workers=nproc, mp_context=context) as pool:
            futures = [pool.submit(_worker, job, str(p), a, b) for p, (a, b) in zip(parts, ranges)]
            try:
                branch_lists = [future.result() for future in futures]
            except BrokenProcessPool:
                raise RuntimeError(
                    "a prediction worker process died before finishing (killed, out of memory, or it "
                    "could not start; see above); nothing was written"
                ) from None
        _merge_parts(parts, branch_lists, output, job)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def torchrun_rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the torchrun environment; (0, 1) when not launched by it."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers (set by torchrun)") from None


def _run_distributed(job: _Job, objects, output: Path, total: int, rank: int, world: int) -> bool:
    """Every torchrun rank predicts its range; rank 0 merges. Returns True on rank 0."""
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="gloo")
    try:
        # rank 0 makes .NAME.<pid>.<random>.tmp/ (the one temporary-name convention) and tells
        # the other ranks its name
        shared = [str(make_temp_dir(output)) if rank == 0 else None]
        dist.broadcast_object_list(shared, src=0)
        parts_dir = Path(shared[0])
        part = parts_dir / f"part-{rank:05d}.root"
        start, stop = _ranges(total, world)[rank]
        outcome: tuple = ("ok", None)
        try:
            outcome = ("ok", _predict_range(job, objects, part, start, stop, progress=False))
        except Exception as exc:  # noqa: BLE001 - reported to every rank below
            outcome = ("error", f"rank {rank}: {type(exc).__name__}: {exc}")
        gathered: list = [None] * world
        dist.all_gather_object(gathered, outcome)
        errors = [message for state, message in gathered if state == "error"]
        if errors:
            if rank == 0:
                shutil.rmtree(parts_dir, ignore_errors=True)
            raise RuntimeError("distributed prediction failed: " + "; ".join(errors))
        if rank == 0:
            parts = [parts_dir / f"part-{k:05d}.root" for k in range(world)]
            _merge_parts(parts, [branches for _, branches in gathered], output, job)
            shutil.rmtree(parts_dir, ignore_errors=True)
        dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()
    return rank == 0


# --------------------------------------------------------------------------- public entry
def _copyable_truth(inputs: list[str], tree: str, names: BranchNames) -> list[str]:
    present = None
    for path in inputs:
        branches = set(list_branches(path, tree))
        here = {c for c in COPIED_TRUTH if names.file_name(c) in branches}
        present = here if present is None else present & here
    return [c for c in COPIED_TRUTH if c in (present or set())]


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

    Returns:
        dict with ``output``, ``events``, ``seconds``, ``events_per_s``, ``names``, ``nproc``,
        ``world_size`` and ``merged`` (False on torchrun ranks other than 0).
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
    truth = _copyable_truth(inputs, tree, branch_names)
    # checks every file, tree and required branch now (one clear error before any work)
    BatchReader(inputs, tree=tree, branches=branches or None, truth=truth or None, entry_stop=0)
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
        provenance=provenance,
    )
    merged = True
    if world > 1:
        merged = _run_distributed(job, objects, output, total, rank, world)
    elif int(nproc) > 1:
        _run_spawned(job, objects, output, total, int(nproc))
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
    }
