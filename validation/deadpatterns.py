"""Dead-channel patterns on the same events: what ``xecreco validate --data SIM.root -r RECO
--dead-patterns`` predicts before the report.

A simulated file with dead channels holds the file's dead mask (``dead``) and the undamaged
sensor values (``nphoClean`` / ``timeClean``). Its dead sensors are split by
:func:`xecreco.sim.dead.split_dead_mask` into the readout groups that are dead as a whole
(``grouped``) and all the others (``scattered``). Every reconstructor then runs on the same events
once per pattern, each time on the clean values with the pattern's sensors marked dead (exactly
as the reader marks dead channels) and repaired by the inpainter:

- ``clean``: no dead channel (the undamaged values, nothing inpainted);
- ``scattered``: only the scattered dead sensors;
- ``grouped``: only the dead readout groups;
- ``grouped+scattered``: the file's whole mask (what its ``npho`` holds).

Patterns with no sensor in a file are left out (a file without dead groups gives ``clean`` and
``scattered``). One prediction file per (data file, pattern) is written, labelled by the pattern;
:func:`xecreco.validation.api.validate` compares the labels, and the dead-channel study reports
every headline resolution per pattern and its loss against ``clean``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.io.rootfile import open_root, open_tree
from xecreco.io.schema import DEFAULT_TREE, N_SENSORS, BranchNames
from xecreco.sim.dead import split_dead_mask

__all__ = ["PATTERNS", "file_dead_mask", "pattern_masks", "RepairedReconstructor",
           "predict_patterns"]

#: Pattern labels in report order; the first is the reference of the losses.
PATTERNS = ("clean", "scattered", "grouped", "grouped+scattered")

#: Events per chunk when reading the dead-mask branch.
_MASK_STEP = 2000


def file_dead_mask(path, tree: str = DEFAULT_TREE, branches: BranchNames | None = None
                   ) -> np.ndarray:
    """(4760,) bool: the dead mask of a simulated file (its ``dead`` branch, the same in every
    event as the simulation writes it). UserError naming the file and branch when the file has
    no dead mask, no clean values, or a mask that changes between events."""
    names = branches or BranchNames()
    dead_name = names.file_name("dead")
    with open_root(path) as handle:
        ttree = open_tree(handle, tree, path)
        keys = set(ttree.keys())
        missing = [b for b in (dead_name, names.file_name("nphoClean"),
                               names.file_name("timeClean")) if b not in keys]
        if missing:
            raise UserError(
                f"{path}: tree '{tree}' has no {', '.join(missing)} branch: --dead-patterns needs "
                "a simulated file with dead channels (xecreco simulate --dead F --dead-groups N)")
        first = None
        for chunk in ttree.iterate([dead_name], step_size=_MASK_STEP, library="np"):
            dead = np.asarray(chunk[dead_name].tolist() if chunk[dead_name].dtype == object
                              else chunk[dead_name], dtype=bool)
            if dead.ndim != 2 or dead.shape[1] != N_SENSORS:
                raise UserError(f"{path}: branch '{dead_name}' is not {N_SENSORS} bools per "
                                "event")
            if len(dead) == 0:
                continue
            first = dead[0] if first is None else first
            if not np.all(dead == first):
                raise UserError(
                    f"{path}: branch '{dead_name}' changes between events; --dead-patterns "
                    "needs one dead mask per file (as xecreco simulate writes it)")
    if first is None:
        raise UserError(f"{path}: tree '{tree}' has no events")
    return first.copy()


def pattern_masks(mask: np.ndarray) -> dict[str, np.ndarray]:
    """``{label: (4760,) bool}`` of the patterns of a dead mask (module doc), non-empty ones
    only, in :data:`PATTERNS` order; ``clean`` is always there."""
    grouped, scattered = split_dead_mask(mask)
    parts = {"clean": np.zeros(N_SENSORS, dtype=bool), "scattered": scattered,
             "grouped": grouped, "grouped+scattered": grouped | scattered}
    out = {"clean": parts["clean"]}
    if scattered.any():
        out["scattered"] = scattered
    if grouped.any():
        out["grouped"] = grouped
    if scattered.any() and grouped.any():
        out["grouped+scattered"] = parts["grouped+scattered"]
    return out


class _Repair:
    """One pattern applied and repaired per batch, shared by that pattern's reconstructors (the
    last batch is kept, so several reconstructors inpaint it once)."""

    def __init__(self, mask: np.ndarray, inpainter):
        self.mask = np.asarray(mask, dtype=bool)
        self.inpainter = inpainter
        self._last = None
        self._repaired = None

    def __call__(self, batch):
        if not self.mask.any():
            return batch
        if batch is not self._last:
            from xecreco.models.pipelines.inpaint import apply_dead_mask

            self._repaired = self.inpainter.inpaint(apply_dead_mask(batch, self.mask))
            self._last = batch
        return self._repaired


class RepairedReconstructor:
    """A reconstructor that sees ``batch`` with a dead pattern applied and repaired
    (:class:`xecreco.models.base.Reconstructor` protocol: same name and outputs as ``base``)."""

    def __init__(self, base, repair: _Repair):
        self.base = base
        self.repair = repair
        self.name = base.name
        self.outputs = tuple(base.outputs)
        self.checksum = getattr(base, "checksum", None)
        #: the sensors this pattern marks dead: the prediction tree's nDead and nphoSum count
        #: them (models.pipelines.predict), as for a file whose npho holds the pattern
        self.dead_mask = repair.mask

    def reconstruct(self, batch) -> dict[str, np.ndarray]:
        return self.base.reconstruct(self.repair(batch))

    def config(self) -> dict:
        """Provenance: the wrapped reconstructor, the inpainter, the number of dead sensors."""
        inner = getattr(self.base, "config", None)
        return {"reconstructor": inner() if callable(inner) else None,
                "inpainter": getattr(self.repair.inpainter, "name", None),
                "dead_sensors": int(self.repair.mask.sum())}


def predict_patterns(data_files, reconstructors, work_dir, *, inpainter=None,
                     tree: str = DEFAULT_TREE, branches: dict | None = None,
                     step_events: int | None = None, progress: bool = True
                     ) -> tuple[list[str], list[str]]:
    """Predict ``reconstructors`` on every pattern of every data file.

    Writes ``work_dir/predictions_<i>_<pattern>.root`` (i = index of the data file) with
    :func:`xecreco.models.pipelines.predict.predict_files`, reading the clean values of the file
    (``nphoClean`` / ``timeClean``). ``inpainter``: registry name, checkpoint path, Inpainter or
    None (:func:`xecreco.models.pipelines.inpaint.resolve_inpainter`: the bundled inpainter).
    Returns (prediction files, their pattern labels), ready for ``validate(files,
    labels=labels)``.
    """
    from xecreco.models.pipelines.inpaint import resolve_inpainter
    from xecreco.models.pipelines.predict import resolve_reconstructors, predict_files

    names = BranchNames.from_dict(branches or {})
    clean = {**names.to_dict(), "npho": names.file_name("nphoClean"),
             "time": names.file_name("timeClean")}
    model = resolve_inpainter(inpainter)
    objects, out_names, _ = resolve_reconstructors(list(reconstructors))
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    files, labels = [], []
    for i, path in enumerate(data_files):
        masks = pattern_masks(file_dead_mask(path, tree, names))
        if len(masks) == 1:
            raise UserError(f"{path}: no dead channel in the branch "
                            f"'{names.file_name('dead')}': nothing to compare with the clean "
                            "events")
        for label, mask in masks.items():
            repair = _Repair(mask, model)
            wrapped = [RepairedReconstructor(obj, repair) for obj in objects]
            out = work_dir / f"predictions_{i}_{label.replace('+', '_')}.root"
            if progress:
                print(f"dead pattern '{label}' ({int(mask.sum())} dead sensors) of {path}",
                      flush=True)
            predict_files([str(path)], str(out), wrapped, tree=tree, names=out_names,
                          step_events=step_events, progress=progress, branches=clean)
            files.append(str(out))
            labels.append(label)
    order = sorted(range(len(files)), key=lambda k: PATTERNS.index(labels[k]))
    return [files[k] for k in order], [labels[k] for k in order]
