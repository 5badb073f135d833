"""Loading prediction files (tree ``reco``) into per-reconstruction arrays.

A prediction file holds, for every reconstruction R, branches ``R_energy`` (GeV), ``R_u`` ...
``R_z`` (cm), ``R_time`` (ns), ``R_theta``/``R_phi`` (deg), optional ``R_npileup`` /
``R_pileup_prob`` and ``R_<q>_err``, and ``R_status`` (0 = ok), plus the truth branches copied
from the input. Reconstruction names are discovered from the ``*_status`` branches.

Several files are concatenated into one sample. With labels (one per file; repeated labels
concatenate their files), every label is a separate variant of the same events (e.g. raw vs
inpainted input): events are matched by (run, event) and every (label, reconstruction) pair
becomes one :class:`Series` of the :class:`Dataset`, so all studies compare them side by side.
Matched events must carry the same truth in every label (energy, time, positions, angles,
pile-up count): files of independent samples that happen to share (run, event) numbers are
refused with one line naming both files, so no label is ever scored against another file's
truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from xecreco.errors import UserError
from xecreco.io.schema import (
    FILL_THRESHOLD,
    OUTPUT_UNITS,
    reco_branch,
    reconstruction_names,
    status_branch,
)

__all__ = [
    "QUANTITIES",
    "TRUTH_BRANCHES",
    "LIGHT_BRANCHES",
    "DEAD_BRANCHES",
    "Series",
    "Dataset",
    "load_predictions",
    "discover_reconstructions",
]

#: Per-reconstruction quantities (branch suffixes) and their file units: the reconstruction
#: interface's outputs.
QUANTITIES = OUTPUT_UNITS

#: Truth branches the studies use (file units).
TRUTH_BRANCHES = (
    "energyTruth",  # GeV
    "timeTruth",  # ns
    "uvwTruth",  # [3] cm
    "xyzTruth",  # [3] cm
    "xyzVTX",  # [3] cm
    "emiAng",  # [2] deg (theta, phi)
    "emiVec",  # [3]
    "energyVisible",  # GeV
    "nPileup",
    "pileupEnergy",  # jagged GeV
    "pileupTime",  # jagged ns
    "pileupU",  # jagged cm
    "pileupV",  # jagged cm
    "pileupGateFraction",  # jagged, fraction of the photon's light inside the readout gate
)

#: Candidate branches for the collected light of an event, in order of preference:
#: name -> (axis label, scale from file units to plotted units).
LIGHT_BRANCHES = {
    "nphoSum": ("collected light (photons)", 1.0),
    "nsum2": ("weighted photon sum nsum2", 1.0),
    "nsum": ("photon sum (photons)", 1.0),
    "npho_sum": ("collected light (photons)", 1.0),
    "energyVisible": ("visible energy (MeV)", 1000.0),
}

#: Candidate branches for the number of dead channels of an event (a count, or a per-sensor
#: boolean array that is summed).
DEAD_BRANCHES = ("nDead", "ndead", "dead")



@dataclass
class Series:
    """One reconstruction (optionally of one labelled variant) over the events of a Dataset.

    Attributes:
        name: display name (``reco`` or ``"reco (label)"``).
        reco: reconstruction name R (branch prefix).
        label: variant label or None.
        values: quantity -> float64 (N,) in file units; quantities absent from the file are absent.
        errors: quantity -> float64 (N,) predicted uncertainties (``R_<q>_err``), where present.
        status: int32 (N,), 0 = reconstructed normally.
    """

    name: str
    reco: str
    label: str | None
    values: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    status: np.ndarray | None = None

    def has(self, *quantities: str) -> bool:
        return all(q in self.values for q in quantities)

    def ok(self, *quantities: str) -> np.ndarray:
        """Events with status 0 and finite, non-fill values of ``quantities``."""
        mask = self.status == 0
        for q in quantities:
            v = self.values[q]
            mask &= np.isfinite(v) & (np.abs(v) < FILL_THRESHOLD)
        return mask

    def efficiency(self) -> float:
        """Fraction of events with status 0."""
        return float(np.mean(self.status == 0)) if self.status.size else float("nan")


@dataclass
class Dataset:
    """Events with their truth and the series to compare.

    ``truth`` maps branch name -> numpy array (fixed-size arrays as (N, k)) or awkward array
    (jagged pile-up branches). ``notes`` collects loading remarks shown in the report.
    """

    files: list
    run: np.ndarray
    event: np.ndarray
    truth: dict
    series: list
    labels: list | None = None
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.run.size)

    def missing(self, *names: str) -> list[str]:
        """Truth branches among ``names`` that are absent."""
        return [n for n in names if n not in self.truth]

    def light(self) -> tuple[str, np.ndarray, str] | None:
        """(branch, per-event collected light in plotted units, axis label) or None."""
        for name, (label, scale) in LIGHT_BRANCHES.items():
            if name in self.truth and np.ndim(self.truth[name]) == 1:
                return name, np.asarray(self.truth[name], dtype=np.float64) * scale, label
        return None

    def dead_count(self) -> tuple[str, np.ndarray] | None:
        """(branch, number of dead channels per event) or None."""
        for name in DEAD_BRANCHES:
            if name in self.truth:
                arr = self.truth[name]
                if isinstance(arr, ak.Array):
                    return name, ak.to_numpy(ak.sum(arr, axis=1)).astype(np.int64)
                arr = np.asarray(arr)
                if arr.ndim == 2:
                    return name, arr.astype(bool).sum(axis=1).astype(np.int64)
                return name, arr.astype(np.int64)
        return None


def _open_tree(path: str, tree: str):
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such prediction file; give the output of `xecreco predict`")
    try:
        handle = uproot.open(p)
    except Exception as exc:  # noqa: BLE001 - any failure to open is a bad input file
        raise UserError(f"{path}: not a readable ROOT file ({type(exc).__name__}: {exc})") from None
    if tree not in handle:
        keys = sorted({k.split(";")[0] for k in handle.keys()})
        raise UserError(
            f"{path}: no tree '{tree}' (keys: {', '.join(keys) or 'none'}); pass the prediction "
            "tree name with --tree"
        )
    return handle[tree]


def discover_reconstructions(branches) -> list[str]:
    """Reconstruction names R of a prediction tree, from its ``R_status`` branches (sorted;
    :func:`xecreco.io.schema.reconstruction_names`)."""
    return reconstruction_names(branches)


def _to_numpy(arr):
    """Regular awkward arrays -> numpy; jagged ones stay awkward."""
    if isinstance(arr, np.ndarray):
        return arr
    try:
        return ak.to_numpy(ak.to_regular(arr, axis=None) if arr.ndim > 1 else arr)
    except (ValueError, TypeError):
        return arr


def _load_group(files: list, tree: str, recos: list | None) -> tuple:
    """Load and concatenate files of one group: (run, event, truth dict, recos, reco arrays)."""
    trees = [(f, _open_tree(str(f), tree)) for f in files]
    common = None
    for f, t in trees:
        names = set(t.keys())
        common = names if common is None else common & names
    found = discover_reconstructions(common)
    if not found:
        raise UserError(
            f"{files[0]}: tree '{tree}' has no reconstruction branches (no '<name>_status'); "
            "is this a prediction file from `xecreco predict`?"
        )
    if recos:
        unknown = [r for r in recos if r not in found]
        if unknown:
            raise UserError(
                f"{files[0]}: reconstruction(s) {', '.join(unknown)} not found; available: "
                f"{', '.join(found)}"
            )
        use = list(recos)
    else:
        use = found
    wanted = ["run", "event"]
    wanted += [t for t in TRUTH_BRANCHES if t in common]
    wanted += [t for t in LIGHT_BRANCHES if t in common and t not in wanted]
    wanted += [t for t in DEAD_BRANCHES if t in common and t not in wanted]
    for r in use:
        wanted.append(status_branch(r))
        for q in QUANTITIES:
            for suffix in ("", "_err"):
                b = reco_branch(r, q + suffix)
                if b in common:
                    wanted.append(b)
    for needed in ("run", "event"):
        if needed not in common:
            raise UserError(f"{files[0]}: prediction tree '{tree}' has no '{needed}' branch")
    parts = []
    for f, t in trees:
        try:
            parts.append(t.arrays(wanted, library="ak", how=dict))
        except Exception as exc:  # noqa: BLE001 - a truncated/corrupt basket is a bad input file
            raise UserError(
                f"{f}: cannot read tree '{tree}' ({type(exc).__name__}: {exc})"
            ) from None
    columns = {}
    for name in wanted:
        arrs = [p[name] for p in parts]
        arr = arrs[0] if len(arrs) == 1 else ak.concatenate(arrs)
        columns[name] = _to_numpy(arr)
    # which file each row came from (named in the truth-mismatch error)
    columns[_SOURCE] = np.repeat(np.arange(len(files)), [len(p["run"]) for p in parts])
    return columns, use


#: Column of a loaded group holding each row's index into the group's files.
_SOURCE = "__file_index__"
#: Truth branches that must agree between labels for an event matched on (run, event); the
#: per-event light and dead-channel counts legitimately differ (raw vs inpainted input).
_MATCHED_TRUTH = tuple(t for t in TRUTH_BRANCHES if not t.startswith("pileup"))  # not jagged


def _truth_mismatch(a, b) -> np.ndarray:
    """Per-event True where numeric truth arrays ``a`` and ``b`` differ (NaN equals NaN)."""
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        return np.ones(len(a), dtype=bool)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return ~same.all(axis=1)


def _check_same_truth(loaded: dict, groups: dict, indices: dict) -> None:
    """UserError when events matched on (run, event) carry different truth in two labels.

    Independent samples can share (run, event) numbers; scoring one label against the other's
    truth would be silently wrong, so every label is compared with the first one.
    """
    labels = list(loaded)
    first = labels[0]
    ref_columns = loaded[first][0]
    ref_index = indices[first]
    for lb in labels[1:]:
        columns = loaded[lb][0]
        index = indices[lb]
        for name in _MATCHED_TRUTH:
            if name not in ref_columns or name not in columns:
                continue
            a, b = ref_columns[name], columns[name]
            if isinstance(a, ak.Array) or isinstance(b, ak.Array):
                continue
            bad = _truth_mismatch(np.asarray(a)[ref_index], np.asarray(b)[index])
            if not bad.any():
                continue
            k = int(np.argmax(bad))
            file_a = groups[first][int(ref_columns[_SOURCE][ref_index[k]])]
            file_b = groups[lb][int(columns[_SOURCE][index[k]])]
            run = int(np.asarray(ref_columns["run"])[ref_index[k]])
            event = int(np.asarray(ref_columns["event"])[ref_index[k]])
            raise UserError(
                f"{file_a} (label '{first}') and {file_b} (label '{lb}') have different "
                f"{name} for {int(bad.sum())} of {bad.size} events matched on (run, event), "
                f"e.g. run {run} event {event}: they are different samples, not variants of "
                "the same events; validate each sample on its own (one xecreco validate per "
                "file), or give independent samples distinct run numbers (simulate --run)"
            )


def _build_series(columns: dict, recos: list, label: str | None, index=None) -> list[Series]:
    out = []
    for r in recos:
        def take(a):
            a = np.asarray(a, dtype=np.float64)
            return a if index is None else a[index]

        status = np.asarray(columns[status_branch(r)]).astype(np.int32)
        status = status if index is None else status[index]
        values = {q: take(columns[reco_branch(r, q)]) for q in QUANTITIES
                  if reco_branch(r, q) in columns}
        errors = {q: take(columns[reco_branch(r, q + "_err")]) for q in QUANTITIES
                  if reco_branch(r, q + "_err") in columns}
        name = r if label is None else f"{r} ({label})"
        out.append(Series(name=name, reco=r, label=label, values=values, errors=errors,
                          status=status))
    return out


def _truth(columns: dict, index=None) -> dict:
    truth = {}
    for name in (*TRUTH_BRANCHES, *LIGHT_BRANCHES, *DEAD_BRANCHES):
        if name in columns and name not in truth:
            a = columns[name]
            truth[name] = a if index is None else a[index]
    return truth


def _keys(run: np.ndarray, event: np.ndarray) -> np.ndarray:
    return (np.asarray(run, dtype=np.int64) << 32) + np.asarray(event, dtype=np.int64)


def load_predictions(files, *, tree: str = "reco", recos=None, labels=None) -> Dataset:
    """Load prediction files into a :class:`Dataset`.

    Args:
        files: prediction ROOT files.
        tree: prediction tree name.
        recos: reconstruction names to keep (default: all found in every file).
        labels: optional, one label per file; files sharing a label are concatenated, different
            labels are matched event by event on (run, event).
    Raises:
        UserError: missing/unreadable files, missing tree or branches, unknown reconstructions,
            a label count that does not match the files, no common events between labels, or
            matched events whose truth differs between labels (different samples).
    """
    files = [str(f) for f in files]
    if not files:
        raise UserError("no prediction files given")
    if labels is None:
        columns, use = _load_group(files, tree, recos)
        run = np.asarray(columns["run"], dtype=np.int64)
        event = np.asarray(columns["event"], dtype=np.int64)
        return Dataset(files=files, run=run, event=event, truth=_truth(columns),
                       series=_build_series(columns, use, None))
    labels = [str(lb) for lb in labels]
    if len(labels) != len(files):
        raise UserError(
            f"{len(labels)} --label value(s) for {len(files)} prediction file(s); give one label "
            "per file (repeat a label to concatenate files)"
        )
    groups: dict[str, list] = {}
    for f, lb in zip(files, labels):
        groups.setdefault(lb, []).append(f)
    loaded = {lb: _load_group(fs, tree, recos) for lb, fs in groups.items()}
    notes = []
    keysets = {}
    for lb, (columns, _) in loaded.items():
        k = _keys(columns["run"], columns["event"])
        uniq, first = np.unique(k, return_index=True)
        if uniq.size != k.size:
            notes.append(f"label '{lb}': {k.size - uniq.size} duplicated (run, event) pairs; "
                         "the first occurrence is used")
        keysets[lb] = (uniq, first)
    common = None
    for uniq, _ in keysets.values():
        common = uniq if common is None else np.intersect1d(common, uniq, assume_unique=True)
    if common.size == 0:
        raise UserError(
            "the labelled prediction files share no (run, event) pair; label files of the same "
            "simulated events (e.g. raw and inpainted) to compare them"
        )
    indices = {}
    for lb, (uniq, first) in keysets.items():
        indices[lb] = first[np.searchsorted(uniq, common)]
    _check_same_truth(loaded, groups, indices)
    first_label = next(iter(loaded))
    series = []
    # the truth of every label is the same on the matched events (checked above); a truth branch
    # found in only some labels is taken from the first label that has it
    truth = {}
    run = event = None
    for lb, (columns, use) in loaded.items():
        index = indices[lb]
        unmatched = len(columns["run"]) - common.size
        if unmatched:
            notes.append(f"label '{lb}': {unmatched} event(s) without a match in the other labels "
                         "are left out")
        if lb == first_label:
            run = np.asarray(columns["run"], dtype=np.int64)[index]
            event = np.asarray(columns["event"], dtype=np.int64)[index]
        for name, values in _truth(columns, index).items():
            truth.setdefault(name, values)
        series.extend(_build_series(columns, use, lb, index))
    return Dataset(files=files, run=run, event=event, truth=truth, series=series,
                   labels=list(groups), notes=notes)
