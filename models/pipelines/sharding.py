"""Entry-range sharding of a ROOT -> ROOT pipeline over worker processes or torchrun ranks.

Each worker (a spawned process, or a torchrun rank) runs the pipeline on one contiguous entry
range into a part file inside a temporary folder next to the output (``.NAME.<pid>.<random>.tmp/``,
:func:`xecreco.io.paths.make_temp_dir`); the parts are then merged in order into the output, so
the result is identical to a single-process run. Used by :func:`xecreco.models.pipelines.predict.
predict_files`; the ``job`` passed here needs ``out_tree``, ``provenance`` and ``specs``
(one spec string or picklable object per reconstructor).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import Callable

import uproot

from xecreco.errors import UserError
from xecreco.io.paths import make_temp_dir
from xecreco.io.rootfile import count_entries
from xecreco.io.writer import RootWriter

__all__ = ["entry_ranges", "merge_parts", "run_spawned", "run_distributed", "torchrun_rank"]

#: Rows read at once from a part file while merging.
MERGE_STEP = "64 MB"


def merge_parts(parts: list[Path], branch_lists: list[list[str]], output: Path, job) -> int:
    """Concatenate the part files in order into ``output``; returns the number of entries."""
    nonempty = [i for i, p in enumerate(parts) if count_entries(p, job.out_tree) > 0]
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


def entry_ranges(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous entry ranges covering [0, total) (sizes differ by at most one)."""
    bounds = [total * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


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


def run_spawned(job, objects, output: Path, total: int, nproc: int, worker: Callable) -> None:
    """Split [0, total) over ``nproc`` spawned processes, each calling ``worker(job, part_path,
    start, stop) -> branch names`` (a picklable top-level function), then merge the parts."""
    job = replace(job, specs=[_portable(o, s) for o, s in zip(objects, job.specs)])
    # .NAME.<pid>.<random>.tmp/: removed below, or by the next run once this process is gone
    parts_dir = make_temp_dir(output)
    try:
        ranges = entry_ranges(total, nproc)
        parts = [parts_dir / f"part-{k:05d}.root" for k in range(nproc)]
        context = multiprocessing.get_context("spawn")
        # a worker that dies (killed, out of memory) breaks the pool and raises here instead of
        # hanging, unlike multiprocessing.Pool which would respawn it forever
        with ProcessPoolExecutor(max_workers=nproc, mp_context=context) as pool:
            futures = [pool.submit(worker, job, str(p), a, b) for p, (a, b) in zip(parts, ranges)]
            try:
                branch_lists = [future.result() for future in futures]
            except BrokenProcessPool:
                raise RuntimeError(
                    "a worker process died before finishing (killed, out of memory, or it "
                    "could not start; see above); nothing was written"
                ) from None
        merge_parts(parts, branch_lists, output, job)
    finally:
        shutil.rmtree(parts_dir, ignore_errors=True)


def torchrun_rank() -> tuple[int, int]:
    """(RANK, WORLD_SIZE) from the torchrun environment; (0, 1) when not launched by it."""
    try:
        return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError("RANK and WORLD_SIZE must be integers (set by torchrun)") from None


def run_distributed(job, objects, output: Path, total: int, rank: int, world: int,
                    run_range: Callable) -> bool:
    """Every torchrun rank runs ``run_range(job, objects, part_path, start, stop)`` (-> branch
    names) on its entry range; rank 0 merges. Returns True on rank 0."""
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
        start, stop = entry_ranges(total, world)[rank]
        outcome: tuple = ("ok", None)
        try:
            outcome = ("ok", run_range(job, objects, part, start, stop))
        except Exception as exc:  # noqa: BLE001 - reported to every rank below
            outcome = ("error", f"rank {rank}: {type(exc).__name__}: {exc}")
        gathered: list = [None] * world
        dist.all_gather_object(gathered, outcome)
        errors = [message for state, message in gathered if state == "error"]
        if errors:
            if rank == 0:
                shutil.rmtree(parts_dir, ignore_errors=True)
            raise RuntimeError("distributed run failed: " + "; ".join(errors))
        if rank == 0:
            parts = [parts_dir / f"part-{k:05d}.root" for k in range(world)]
            merge_parts(parts, [branches for _, branches in gathered], output, job)
            shutil.rmtree(parts_dir, ignore_errors=True)
        dist.barrier()
    finally:
        if created:
            dist.destroy_process_group()
    return rank == 0
