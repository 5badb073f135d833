"""Streaming ROOT -> ROOT dead-channel repair (what ``xecreco inpaint`` runs).

:func:`inpaint_file` reads the input in chunks, optionally marks extra sensors dead (a list file
or a per-event bool branch), repairs the invalid sensors with an inpainter and writes a copy of
the input tree with the same branches (repaired ``npho`` and ``time``; every other branch copied
unchanged) plus an ``inpainted`` (N, 4760) bool branch. Sensors that remain invalid (no usable
neighbour) keep the MEG sentinel 1e10. If the input has ``relative_time``, it is filled at the
repaired sensors consistently with the repaired ``time``. Memory is bounded by the chunk size;
the output is written under a temporary name and renamed on success.
"""

from __future__ import annotations

import time as _time
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.io.deadlist import read_dead_list
from xecreco.geometry import N_SENSORS, Face, design_geometry
from xecreco.io.paths import check_output_file
from xecreco.io.provenance import describe_files, make_provenance
from xecreco.io.reader import iterate_batches
from xecreco.io.rootfile import count_entries, list_branches, open_root, open_tree
from xecreco.io.schema import DEFAULT_TREE, INPAINTED_BRANCH, SENTINEL, BranchNames
from xecreco.io.writer import RootWriter

from xecreco.models.base import EventBatch, Inpainter
from xecreco.models.registry import create_inpainter
from xecreco.normalization import valid_values

__all__ = ["inpaint_file", "read_dead_list", "apply_dead_mask", "resolve_inpainter",
           "DEFAULT_STEP_EVENTS"]

#: Events per chunk when the caller gives none. Bounds memory: the baselines hold about a dozen
#: (N, 4760) float64 working arrays (38 kB per event each), the reader all sensor branches.
DEFAULT_STEP_EVENTS = 256


def apply_dead_mask(batch: EventBatch, dead: np.ndarray) -> EventBatch:
    """Mark sensors invalid: ``dead`` is a (4760,) or (N, 4760) bool mask (True = dead).

    The npho and time values there are zeroed (the reader's convention for invalid sensors).
    """
    dead = np.broadcast_to(np.asarray(dead, dtype=bool), batch.npho.shape)
    if not dead.any():
        return batch
    return batch.replace(
        npho=np.where(dead, 0.0, batch.npho).astype(batch.npho.dtype),
        time=np.where(dead, 0.0, batch.time).astype(batch.time.dtype),
        valid_npho=batch.valid_npho & ~dead,
        valid_time=batch.valid_time & ~dead,
    )


def resolve_inpainter(inpainter: str | Inpainter | None) -> Inpainter:
    """An inpainter object from a registry name, a checkpoint path or an object.

    None picks ``default`` (the bundled neural inpainter) when it is installed, otherwise the
    ``local-fit`` baseline (the best baseline on the inner face, see docs/inpainting.md).
    """
    if inpainter is None:
        from xecreco.models.registry import available_inpainters

        inpainter = "default" if "default" in available_inpainters() else "local-fit"
    if isinstance(inpainter, (str, Path)):
        return create_inpainter(str(inpainter))
    if not isinstance(inpainter, Inpainter):
        raise TypeError("expected an inpainter name or an Inpainter, got "
                        f"{type(inpainter).__name__}")
    return inpainter


def output_arrays(batch: EventBatch, repaired: EventBatch, names: BranchNames,
                   copied: list[str], ids: dict) -> dict[str, np.ndarray]:
    """The output branches of one chunk; ``ids`` maps id branch -> (batch attribute, dtype)."""
    arrays = {name: getattr(batch, attr).astype(dtype) for name, (attr, dtype) in ids.items()}
    arrays[names.npho] = np.where(repaired.valid_npho, repaired.npho, SENTINEL).astype(np.float32)
    arrays[names.time] = np.where(repaired.valid_time, repaired.time, SENTINEL).astype(np.float32)
    filled = np.asarray(repaired.extras[INPAINTED_BRANCH], dtype=bool)
    for name in copied:
        arrays[name] = batch.extras[name]
    relative = names.relative_time
    if relative in arrays:
        arrays[relative] = _relative_time(arrays[relative], batch, repaired, filled)
    arrays[INPAINTED_BRANCH] = filled
    return arrays


def _relative_time(relative: np.ndarray, batch: EventBatch, repaired: EventBatch,
                   filled: np.ndarray) -> np.ndarray:
    """``relative_time`` with repaired sensors filled as time minus the event's reference."""
    relative = np.asarray(relative)
    good = batch.valid_time & valid_values(relative)
    offset = np.where(good, batch.time.astype(np.float64) - relative, np.nan)
    with np.errstate(all="ignore"):
        reference = np.nanmedian(np.where(good.any(axis=1)[:, None], offset, 0.0), axis=1)
    fill = filled & repaired.valid_time
    out = relative.astype(np.float32, copy=True)
    out[fill] = (repaired.time.astype(np.float64) - reference[:, None])[fill]
    return out


def _branch_layout(path: str, tree: str, ids: tuple[str, ...]) -> tuple[set[str], dict]:
    """(counter branches, {id branch: numpy dtype}) of the input tree.

    Counter branches only count the entries of jagged branches (``n<name>``); the writer
    recreates them, so they are not copied. The id branches (run, event) are written back with
    their dtype in the file (the reader hands them over as int64).
    """
    with open_root(path) as handle:
        ttree = open_tree(handle, tree, path)
        counters = set()
        for branch in ttree.branches:
            count = getattr(branch, "count_branch", None)
            if count is not None:
                counters.add(count.name)
        dtypes = {}
        for name in ids:
            if name in ttree:
                dtype = getattr(ttree[name].interpretation, "to_dtype", None)
                if dtype is not None and dtype.shape == ():
                    dtypes[name] = dtype.newbyteorder("=")
        return counters, dtypes


def _check_dead_branch(path: str, tree: str, name: str) -> None:
    """UserError unless ``tree`` in ``path`` has ``name`` as a bool branch of 4760 per entry."""
    with open_root(path) as handle:
        ttree = open_tree(handle, tree, path)
        if name not in ttree:
            raise UserError(f"{path}: tree '{tree}' has no branch '{name}' for --dead-branch; "
                            f"branches: {', '.join(ttree.keys())}")
        branch = ttree[name]
        dtype = getattr(branch.interpretation, "to_dtype", None)
        if dtype is None or dtype.base != np.dtype(bool) or dtype.shape != (N_SENSORS,):
            raise UserError(f"{path}: --dead-branch '{name}' has type {branch.typename}, not a "
                            f"bool array of {N_SENSORS} per entry (True = dead); give a bool "
                            "branch such as 'dead', or a sensor-id list with --dead")


def inpaint_file(input, output, inpainter: str | Inpainter | None = None, dead_file=None,
                 dead_branch: str | None = None, *, tree: str = DEFAULT_TREE,
                 out_tree: str | None = None, branches: BranchNames | dict | None = None,
                 step_events: int | None = None, compression: str = "lz4",
                 progress: bool = True) -> dict:
    """Write a repaired copy of ROOT file(s) ``input`` to ``output``.

    Args:
        input: a path or a list of paths (their entries are concatenated in order).
        output: output ROOT file (written atomically).
        inpainter: registry name (``neighbour-average``, ``solid-angle``, ``local-fit``,
            ``default``), checkpoint path or Inpainter object; None = :func:`resolve_inpainter`.
        dead_file: optional list of sensor ids (see :func:`read_dead_list`) marked invalid in
            every event before inpainting.
        dead_branch: optional name of a per-event (4760,) bool branch; True sensors are marked
            invalid before inpainting. Exclusive with ``dead_file``.
        tree: input tree name; out_tree: output tree name (default: the same as ``tree``).
        branches: branch names in the file, a :class:`BranchNames` or ``{canonical: name}``
            (defaults: the canonical names).
        step_events: events per chunk (default :data:`DEFAULT_STEP_EVENTS`).
        compression: output compression (``lz4``, ``zlib:6``, ``none`` ...).
        progress: show a progress bar.

    Returns:
        dict with ``events``, ``inpainted`` (values filled per face name), ``still_invalid``
        (sensor values left invalid), ``seconds`` and ``inpainter``.
    """
    if dead_file is not None and dead_branch is not None:
        raise UserError("give either a dead-channel list (--dead) or a dead branch "
                        "(--dead-branch), not both")
    files = [str(p) for p in ([input] if isinstance(input, (str, Path)) else list(input))]
    if not files:
        raise UserError("no input file given to inpaint")
    model_file = inpainter if isinstance(inpainter, (str, Path)) and Path(inpainter).is_file() \
        else None
    check_output_file(output, [*files, dead_file, model_file])
    names = BranchNames.of(branches)
    out_tree = out_tree or tree
    model = resolve_inpainter(inpainter)
    dead_ids = read_dead_list(dead_file) if dead_file is not None else None

    available = list_branches(files[0], tree)
    counters, id_dtypes = _branch_layout(files[0], tree, (names.run, names.event))
    if dead_branch is not None:
        for path in files:
            _check_dead_branch(path, tree, dead_branch)
    own = {names.npho, names.time, names.run, names.event}
    copied = [b for b in available
              if b not in own and b not in counters and b != INPAINTED_BRANCH and "." not in b]
    extras = list(copied)
    if dead_branch is not None and dead_branch not in extras:
        extras.append(dead_branch)
    ids = {names.run: "run", names.event: "event"}
    ids = {name: (attr, id_dtypes.get(name, np.dtype(np.int64)))
           for name, attr in ids.items() if name in available}

    face_of = np.asarray(design_geometry().face)
    per_face = np.zeros(len(Face), dtype=np.int64)
    still_invalid = 0
    n_events = 0
    total = count_entries(files, tree=tree)
    if total == 0:
        raise UserError(f"tree '{tree}' of {', '.join(files)} has no entries: nothing to inpaint")
    step = int(step_events or DEFAULT_STEP_EVENTS)
    provenance = make_provenance(
        command="inpaint", inpainter=getattr(model, "name", type(model).__name__),
        inputs=describe_files(files), tree=tree,
        dead_file=str(dead_file) if dead_file is not None else None,
        dead_ids=dead_ids, dead_branch=dead_branch,
    )
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="ev", desc="inpaint")
    started = _time.perf_counter()
    try:
        with RootWriter(output, tree=out_tree, compression=compression,
                        provenance=provenance) as writer:
            for batch in iterate_batches(files, tree=tree, branches=names, extras=extras,
                                         step_events=step):
                if dead_ids is not None:
                    mask = np.zeros(N_SENSORS, dtype=bool)
                    mask[dead_ids] = True
                    batch = apply_dead_mask(batch, mask)
                elif dead_branch is not None:
                    batch = apply_dead_mask(batch, np.asarray(batch.extras[dead_branch], bool))
                repaired = model.inpaint(batch)
                filled = np.asarray(repaired.extras[INPAINTED_BRANCH], dtype=bool)
                per_face += np.bincount(face_of[np.nonzero(filled)[1]], minlength=len(Face))
                still_invalid += int((~repaired.valid_npho).sum())
                writer.write(output_arrays(batch, repaired, names, copied, ids))
                n_events += len(batch)
                if bar is not None:
                    bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return {
        "events": n_events,
        "inpainter": getattr(model, "name", type(model).__name__),
        "inpainted": {f.name.lower(): int(per_face[f]) for f in Face},
        "still_invalid": still_invalid,
        "seconds": _time.perf_counter() - started,
    }
