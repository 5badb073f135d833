"""The worst-event gallery of the validation report (``xecreco validate ... --input SIM.root
--worst N``).

For every reconstruction (series) and headline observable, the N events with the largest
absolute residual among the events the studies use (status 0, finite output, truth present)
are drawn with the event display (:mod:`xecreco.validation.display`) into
``plots/worst_<series>_<observable>_<rank>.<ext>`` (every plot format of the report; the page
shows the first). Residuals, in the report's units:

- energy: (E_reco - E_true) / E_true in %;
- u, v, w: reco - truth (``uvwTruth``) in mm;
- time: t_reco - ``timeTruth`` in ps.

Events are found in the input files by (run, event) (the prediction tree is the input's friend,
but a labelled comparison may mix files); events absent from the inputs cannot be drawn and
are not candidates (a report note counts them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.validation.studies.base import safe_name

__all__ = ["OBSERVABLES", "GalleryItem", "residuals", "worst_indices", "input_index",
           "build_gallery"]

#: observable -> (truth branch, column of it or None, residual unit, value unit, value scale)
OBSERVABLES = {
    "energy": ("energyTruth", None, "%", "MeV", 1000.0),
    "u": ("uvwTruth", 0, "mm", "mm", 10.0),
    "v": ("uvwTruth", 1, "mm", "mm", 10.0),
    "w": ("uvwTruth", 2, "mm", "mm", 10.0),
    "time": ("timeTruth", None, "ps", "ps", 1000.0),
}


@dataclass(frozen=True)
class GalleryItem:
    """One drawn event: the series and observable it is worst in, its rank (0 = worst), the
    dataset index, run, event, input file and entry, truth and reco values and the residual
    (report units, see :data:`OBSERVABLES`) and the image file name under ``plots/``."""

    series: str
    observable: str
    rank: int
    index: int
    run: int
    event: int
    input_file: str
    entry: int
    truth: float
    reco: float
    residual: float
    image: str

    def caption(self) -> str:
        _, _, r_unit, v_unit, _ = OBSERVABLES[self.observable]
        return (f"run {self.run}, event {self.event} (entry {self.entry} of "
                f"{Path(self.input_file).name}): {self.observable} true {self.truth:.2f} "
                f"{v_unit}, {self.series} {self.reco:.2f} {v_unit}, residual "
                f"{self.residual:+.2f} {r_unit}")


def residuals(data, series, observable: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual, truth, reco) of ``observable`` for every event of ``data`` in report units;
    NaN where the event does not enter the studies (status not 0, fill value, missing truth)."""
    branch, column, _, _, scale = OBSERVABLES[observable]
    n = len(data)
    nan = np.full(n, np.nan)
    if branch not in data.truth or not series.has(observable):
        return nan, nan, nan
    truth = np.asarray(data.truth[branch], dtype=np.float64)
    truth = truth if column is None else truth[:, column]
    reco = np.asarray(series.values[observable], dtype=np.float64)
    ok = series.ok(observable) & np.isfinite(truth)
    if observable == "energy":
        ok &= truth > 0
        resid = np.where(ok, 100.0 * (reco - truth) / np.where(ok, truth, 1.0), np.nan)
    else:
        resid = np.where(ok, scale * (reco - truth), np.nan)
    return resid, np.where(ok, scale * truth, np.nan), np.where(ok, scale * reco, np.nan)


def worst_indices(resid: np.ndarray, n: int, candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``n`` largest |resid| (finite, and among ``candidates`` when given),
    largest first (ties by index)."""
    usable = np.isfinite(resid)
    if candidates is not None:
        usable &= candidates
    idx = np.flatnonzero(usable)
    order = np.lexsort((idx, -np.abs(resid[idx])))
    return idx[order[:n]]


def input_index(data, input_files, tree: str = "tree",
                branches: dict | None = None) -> tuple[list, np.ndarray]:
    """Where each event of ``data`` lies in the input files, by (run, event): returns
    (files, (N, 2) int64 of [file number, entry in that file], -1 where absent). Files without
    run/event branches number their events run 0, event = entry (as the reader does).
    ``branches``: ``{canonical: name in file}`` (run and event may be renamed too)."""
    from xecreco.io.rootfile import open_root, open_tree
    from xecreco.io.schema import BranchNames

    names = BranchNames.from_dict(branches)
    run_name, event_name = names.file_name("run"), names.file_name("event")

    files = [str(f) for f in input_files]
    if not files:
        raise UserError("--worst needs the simulated input file(s): give --input SIM.root")
    found = {}
    for number, path in enumerate(files):
        with open_root(path) as handle:
            ttree = open_tree(handle, tree, path)
            n = int(ttree.num_entries)
            if {run_name, event_name} <= set(ttree.keys()):
                ids = ttree.arrays([run_name, event_name], library="np")
                run, event = ids[run_name].astype(np.int64), ids[event_name].astype(np.int64)
            else:
                run, event = np.zeros(n, np.int64), np.arange(n, dtype=np.int64)
        for entry, key in enumerate(zip(run.tolist(), event.tolist())):
            found.setdefault(key, (number, entry))
    where = np.array([found.get(k, (-1, -1)) for k in zip(data.run.tolist(),
                                                           data.event.tolist())],
                     dtype=np.int64).reshape(len(data), 2)
    return files, where


def _reco_points(data, index: int):
    from xecreco.validation.display import RecoPoint

    points = []
    for s in data.series:
        values = {q: float(v[index]) for q, v in s.values.items()}
        points.append(RecoPoint(s.name, values, int(s.status[index])))
    return points


def build_gallery(data, input_files, n: int, plot_dir, *, tree: str = "tree",
                  branches: dict | None = None, formats=("png", "pdf"),
                  progress: bool = False) -> tuple[list[GalleryItem], list[str]]:
    """Draw the ``n`` worst events per (series, observable) into ``plot_dir``, one file per
    format of ``formats`` (matplotlib extensions; an item's ``image`` is the first, the one
    the page shows); returns the items in report order (series, observable, rank) and notes
    for the report. ``tree`` and ``branches`` (``{canonical: name in file}``) describe the input
    files."""
    import matplotlib.pyplot as plt
    from tqdm.auto import tqdm

    from xecreco.validation.display import event_figure, read_event

    if n < 1:
        raise UserError(f"--worst must be at least 1, got {n}")
    files, where = input_index(data, input_files, tree=tree, branches=branches)
    present = where[:, 0] >= 0
    notes = []
    if not present.any():
        raise UserError(
            f"{files[0]}: none of the {len(data)} events of the prediction files is in the input "
            "file(s) (matched by run and event); give the simulated file the predictions were "
            "made from with --input"
        )
    if not present.all():
        notes.append(f"worst events: {int((~present).sum())} of {len(data)} events are not in the "
                     "input files and cannot be drawn; they are not candidates")
    plan = []
    for s in data.series:
        for obs in OBSERVABLES:
            resid, truth, reco = residuals(data, s, obs)
            for rank, i in enumerate(worst_indices(resid, n, present)):
                image = f"worst_{safe_name(s.name)}_{obs}_{rank}.{formats[0]}"
                plan.append(GalleryItem(
                    series=s.name, observable=obs, rank=rank, index=int(i),
                    run=int(data.run[i]), event=int(data.event[i]),
                    input_file=files[where[i, 0]], entry=int(where[i, 1]),
                    truth=float(truth[i]), reco=float(reco[i]), residual=float(resid[i]),
                    image=image))
    plot_dir = Path(plot_dir)
    plot_dir.mkdir(parents=True, exist_ok=True)
    views = {}
    for item in tqdm(plan, desc="worst events", unit="event", disable=not progress):
        key = (item.input_file, item.entry)
        if key not in views:
            views[key] = read_event(item.input_file, item.entry, tree=tree, branches=branches)
        note = (f"worst {item.observable} of {item.series} #{item.rank + 1}: residual "
                f"{item.residual:+.2f} {OBSERVABLES[item.observable][2]} (true "
                f"{item.truth:.2f}, reco {item.reco:.2f} {OBSERVABLES[item.observable][3]})")
        fig = event_figure(views[key], _reco_points(data, item.index), note=note)
        stem = item.image.rsplit(".", 1)[0]
        for ext in formats:
            fig.savefig(plot_dir / f"{stem}.{ext}", format=ext, dpi=80 if ext == "png" else None)
        plt.close(fig)
    return plan, notes
