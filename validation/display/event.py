"""One event on the unrolled detector: read an input entry and its reconstructions, mark the
truth, pile-up photons and every reconstruction, and write PNG or PDF pictures.

Marker positions are inner-face (u, v) in cm (the picture's axes, see
:mod:`~xecreco.validation.display.unrolled`); energies are shown in MeV, times in ns relative to
the event's time reference of the normalisation spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects

from xecreco.errors import UserError
from xecreco.geometry import Geometry, xyz_to_uvw
from xecreco.geometry import constants as C
from xecreco.geometry.uvw import uvw_to_xyz
from xecreco.io.paths import atomic_output
from xecreco.io.schema import FILL_THRESHOLD, reco_branch, status_branch
from xecreco.validation.display.unrolled import INNER_HALF_U, INNER_HALF_V, Marker, draw_unrolled

__all__ = [
    "EventView",
    "RecoPoint",
    "read_event",
    "read_reco_points",
    "inner_face_entry",
    "truth_markers",
    "reco_markers",
    "event_figure",
    "save_figures",
    "display_event",
]



@dataclass
class EventView:
    """One input event for the display, in file units.

    ``npho`` (4760,) photons, ``time`` (4760,) s, ``valid_npho`` / ``valid_time`` (4760,) bool,
    ``dead`` (4760,) bool (the file's ``dead`` branch, or else the sensors without a valid npho),
    ``truth``: branch -> value for this event (scalars, 3-vectors, pile-up lists), ``vertex``
    (3,) cm or None.
    """

    path: str
    entry: int
    run: int
    event: int
    npho: np.ndarray
    time: np.ndarray
    valid_npho: np.ndarray
    valid_time: np.ndarray
    dead: np.ndarray
    time_reference_ns: float
    truth: dict = field(default_factory=dict)
    vertex: np.ndarray | None = None


@dataclass(frozen=True)
class RecoPoint:
    """One reconstruction of an event: ``name`` (R of the R_* branches), ``values`` quantity ->
    float in file units (energy GeV, u/v/w cm, time ns) and ``status`` (0 = ok)."""

    name: str
    values: dict
    status: int = 0


def read_event(path, entry: int, *, tree: str = "tree", branches=None) -> EventView:
    """Read input entry ``entry`` (global over the file) of ``path`` for the display.

    Raises UserError for a missing or unreadable file, a missing tree, or an entry out of range.
    """
    from xecreco.io.reader import BatchReader
    from xecreco.normalization import NormalizationSpec

    reader = BatchReader(path, tree=tree, branches=branches, truth="all", entry_start=entry,
                         entry_stop=entry + 1, prefetch=False)
    if not 0 <= entry < reader.total_entries:
        raise UserError(f"{path}: entry {entry} is out of range; tree '{tree}' has "
                        f"{reader.total_entries} entries (0-{reader.total_entries - 1})")
    batch = next(iter(reader))
    truth = {}
    for name, value in batch.truth.items():
        item = value[0]
        truth[name] = np.asarray(item.tolist() if hasattr(item, "tolist") else item)
    dead = (truth.pop("dead").astype(bool) if "dead" in truth and truth["dead"].shape ==
            (C.N_SENSORS,) else ~batch.valid_npho[0])
    for name in ("nphoClean", "timeClean", "nphe"):
        truth.pop(name, None)
    return EventView(
        path=str(path), entry=int(entry), run=int(batch.run[0]), event=int(batch.event[0]),
        npho=batch.npho[0], time=batch.time[0], valid_npho=batch.valid_npho[0],
        valid_time=batch.valid_time[0], dead=dead,
        time_reference_ns=float(NormalizationSpec().time_reference_ns(batch)[0]),
        truth=truth, vertex=None if batch.vertex is None else np.asarray(batch.vertex[0]),
    )


def read_reco_points(path, view: EventView, *, tree: str = "reco") -> list[RecoPoint]:
    """The reconstructions stored in prediction file ``path`` for the event of ``view``.

    The row is the one whose ``entry`` branch equals ``view.entry`` (row ``view.entry`` when the
    tree has no ``entry`` branch); its (run, event) must equal the input's. Raises UserError for
    a missing file or tree, no reconstruction branches, no such row, or a (run, event) mismatch.
    """
    from xecreco.io.rootfile import open_root, open_tree
    from xecreco.validation.data import QUANTITIES, discover_reconstructions

    with open_root(path) as handle:
        ttree = open_tree(handle, tree, path)
        keys = set(ttree.keys())
        names = discover_reconstructions(keys)
        if not names:
            raise UserError(f"{path}: tree '{tree}' has no reconstruction branches (no "
                            "'<name>_status'); give a prediction file from `xecreco predict`")
        if "entry" in keys:
            entries = ttree["entry"].array(library="np")
            rows = np.flatnonzero(entries == view.entry)
            if rows.size == 0:
                raise UserError(f"{path}: no prediction for input entry {view.entry} (its entries "
                                f"run {entries.min() if entries.size else '-'}-"
                                f"{entries.max() if entries.size else '-'}); predict the same "
                                f"input file ({view.path})")
            row = int(rows[0])
        else:
            row = view.entry
            if row >= ttree.num_entries:
                raise UserError(f"{path}: has {ttree.num_entries} rows, no row {row} for input "
                                f"entry {view.entry}; predict the same input file ({view.path})")
        wanted = [b for b in ("run", "event") if b in keys]
        for r in names:
            wanted.append(status_branch(r))
            wanted += [reco_branch(r, q) for q in QUANTITIES if reco_branch(r, q) in keys]
        arrays = ttree.arrays(wanted, entry_start=row, entry_stop=row + 1, library="np")
    ids = tuple(int(arrays[b][0]) for b in ("run", "event") if b in arrays)
    if len(ids) == 2 and ids != (view.run, view.event):
        raise UserError(
            f"{path}: row for input entry {view.entry} is (run, event) = {ids}, but {view.path} "
            f"has ({view.run}, {view.event}): the prediction file was not made from this input"
        )
    points = []
    for r in names:
        values = {q: float(arrays[reco_branch(r, q)][0]) for q in QUANTITIES
                  if reco_branch(r, q) in arrays}
        points.append(RecoPoint(r, values, int(arrays[status_branch(r)][0])))
    return points


def _usable(value) -> bool:
    return value is not None and math.isfinite(value) and abs(value) < FILL_THRESHOLD


def inner_face_entry(point_xyz: np.ndarray, vertex_xyz: np.ndarray) -> np.ndarray | None:
    """(u, v) cm where the straight line from ``vertex_xyz`` to ``point_xyz`` crosses the inner
    face's cylinder r = R (64.97 cm) before the point; None when it does not."""
    p = np.asarray(point_xyz, dtype=np.float64)
    a = np.asarray(vertex_xyz, dtype=np.float64)
    d = p - a
    qa = d[0] ** 2 + d[1] ** 2
    if qa <= 0:
        return None
    qb = 2.0 * (a[0] * d[0] + a[1] * d[1])
    qc = a[0] ** 2 + a[1] ** 2 - C.R_INNER**2
    disc = qb * qb - 4.0 * qa * qc
    if disc < 0:
        return None
    t = (-qb + math.sqrt(disc)) / (2.0 * qa)  # the vertex is inside the cylinder: one root > 0
    if not 0.0 <= t <= 1.0 + 1e-9:
        return None
    return xyz_to_uvw(a + t * d)[:2]


def _on_inner(u: float, v: float) -> bool:
    return abs(u) <= INNER_HALF_U and abs(v) <= INNER_HALF_V


def truth_markers(view: EventView) -> tuple[list[Marker], list, list]:
    """What the truth of ``view`` adds to the display: (markers, segments, notes).

    Markers: the true first interaction and the pile-up photons at their (u, v). Segments
    ((u, v) start, (u, v) end): their flight lines from the point where they cross the inner
    face (r = R) to the marker; the signal photon flies from the event vertex (``xyzVTX``, else
    the target centre), pile-up photons from the target centre (their vertices are not stored).
    Notes ((u, v), text): the energy of each pile-up photon in MeV. Pile-up photons whose
    (u, v) lies off the inner face are left out and counted in the legend label.
    """
    markers, segments, notes = [], [], []
    target = np.asarray(C.TARGET_CENTRE_CM, dtype=np.float64)
    uvw = view.truth.get("uvwTruth")
    if uvw is not None and uvw.shape == (3,) and np.all(np.isfinite(uvw)):
        energy = view.truth.get("energyTruth")
        text = f"truth: w = {uvw[2]:.1f} cm"
        if energy is not None:
            text = f"truth: {1000 * float(energy):.1f} MeV, w = {uvw[2]:.1f} cm"
        text += " (line: flight from the face)"
        markers.append(Marker(float(uvw[0]), float(uvw[1]), text, "truth"))
        vertex = view.vertex if view.vertex is not None else target
        hit = inner_face_entry(uvw_to_xyz(uvw), vertex)
        if hit is not None:
            segments.append((hit, uvw[:2]))
    pu, pv, pw = (view.truth.get(k) for k in ("pileupU", "pileupV", "pileupW"))
    if pu is not None and pv is not None and np.size(pu):
        pu, pv = np.atleast_1d(pu), np.atleast_1d(pv)
        pw = np.zeros(pu.size) if pw is None else np.atleast_1d(pw)
        pe = np.atleast_1d(view.truth.get("pileupEnergy", np.full(pu.size, np.nan)))
        shown = [i for i in range(pu.size) if _on_inner(float(pu[i]), float(pv[i]))]
        off = pu.size - len(shown)
        for k, i in enumerate(shown):
            label = "_nolegend_"
            if k == 0:
                label = f"pile-up photons: {len(shown)} on the inner face"
                label += f", {off} elsewhere" if off else ""
            markers.append(Marker(float(pu[i]), float(pv[i]), label, "pileup"))
            hit = inner_face_entry(uvw_to_xyz(np.array([pu[i], pv[i], pw[i]])), target)
            if hit is not None:
                segments.append((hit, np.array([pu[i], pv[i]])))
            if np.isfinite(pe[i]):
                notes.append(((float(pu[i]), float(pv[i])), f"{1000 * float(pe[i]):.0f}"))
    return markers, segments, notes


def reco_markers(points) -> list[Marker]:
    """One marker per reconstruction at its (u, v), labelled with its name and w."""
    markers = []
    for p in points:
        u, v, w = (p.values.get(q) for q in ("u", "v", "w"))
        if not (_usable(u) and _usable(v)):
            continue
        text = p.name + (f": w = {w:.1f} cm" if _usable(w) else "")
        if p.status:
            text += f" (status {p.status})"
        markers.append(Marker(u, v, text, "reco"))
    return markers


def _title(view: EventView, points) -> str:
    head = f"run {view.run}  event {view.event}  (entry {view.entry} of {Path(view.path).name})"
    parts = []
    energy = view.truth.get("energyTruth")
    if energy is not None:
        parts.append(f"E true {1000 * float(energy):.2f} MeV")
    for p in points:
        e = p.values.get("energy")
        if _usable(e):
            parts.append(f"{p.name} {1000 * e:.2f} MeV")
    n_pile = view.truth.get("nPileup")
    if n_pile is not None:
        parts.append(f"{int(n_pile)} pile-up photons")
    return head + ("\n" + "  |  ".join(parts) if parts else "")


def _draw_segments(ax, segments) -> None:
    for start, end in segments:
        ax.plot([start[0], end[0]], [start[1], end[1]], color="white", linewidth=1.2,
                zorder=4, gid="flight")


def _annotate(ax, notes) -> None:
    outline = [patheffects.withStroke(linewidth=2.0, foreground="white")]
    for (u, v), text in notes:
        ax.annotate(text, (u, v), xytext=(5, 4), textcoords="offset points", fontsize=7,
                    color="black", zorder=6, path_effects=outline)


def event_figure(view: EventView, points=(), *, geometry: Geometry | None = None,
                 note: str | None = None):
    """The display of one event: npho (log scale) and sensor times (ns, relative to the event's
    time reference of the normalisation spec) on the unrolled detector, dead and invalid sensors
    marked, truth, pile-up and every reconstruction in ``points`` marked; ``note`` is a further
    title line. Returns the Figure."""
    truth, segments, notes = truth_markers(view)
    markers = truth + reco_markers(points)
    fig, axes = plt.subplots(1, 2, figsize=(19, 7.4 if not note else 7.8))
    fig.subplots_adjust(left=0.045, right=0.975, bottom=0.08, top=0.87 if not note else 0.84,
                        wspace=0.1)
    time_ns = view.time.astype(np.float64) * 1e9 - view.time_reference_ns
    panels = (
        (axes[0], view.npho, True, ~view.valid_npho, "npho (photons)",
         "npho (log scale)"),
        (axes[1], time_ns, False, ~view.valid_time,
         "sensor time - reference (ns)",
         f"sensor time (reference {view.time_reference_ns:.2f} ns: mean of the 10 earliest "
         "well-lit sensors)"),
    )
    for ax, values, log, invalid, cbar, title in panels:
        vmin = vmax = None
        if not log:
            good = values[~invalid & ~view.dead]
            if good.size:
                vmin, vmax = np.percentile(good, [2, 98])
        draw_unrolled(values, ax=ax, log=log, vmin=vmin, vmax=vmax, invalid=invalid,
                      dead=view.dead, markers=markers, title=title, cbar_label=cbar,
                      geometry=geometry, cmap="viridis" if log else "plasma")
        _draw_segments(ax, segments)
        _annotate(ax, notes)
    title = _title(view, points) + (f"\n{note}" if note else "")
    fig.suptitle(title, fontsize=13 if not note else 12)
    return fig


def save_figures(figures, out) -> list[Path]:
    """Write figures to ``out`` atomically (temporary name + rename): a PDF gets one page per
    figure; a PNG is ``out`` for one figure and ``OUT_<i>.png`` for several, where i is the
    figure's ``entry`` attribute (the input entry). Returns the paths written."""
    from matplotlib.backends.backend_pdf import PdfPages

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".pdf"):
        raise UserError(f"{out}: the display is written as .png or .pdf; give -o OUT.png or "
                        "OUT.pdf")
    if not out.parent.is_dir():
        raise UserError(f"{out}: folder {out.parent} does not exist; create it first")
    figures = list(figures)
    written = []
    if suffix == ".pdf":
        with atomic_output(out) as tmp, PdfPages(tmp) as pdf:
            for fig in figures:
                pdf.savefig(fig)
        return [out]
    for fig in figures:
        target = out
        if len(figures) > 1:
            target = out.with_name(f"{out.stem}_{getattr(fig, 'xecreco_entry', len(written))}.png")
        with atomic_output(target) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        written.append(target)
    return written


def display_event(path, entry, *, predictions=(), out=None, tree: str = "tree",
                  pred_tree: str = "reco", branches=None, geometry: Geometry | None = None):
    """What ``xecreco display`` runs: draw input entries of ``path`` with the reconstructions of
    the prediction files ``predictions``.

    Args:
        path: input ROOT file (tree ``tree``).
        entry: an entry number or a sequence of them (global over the file).
        predictions: prediction files of the same input (tree ``pred_tree``); every
            reconstruction they hold is marked with its name.
        out: None (return the figures), or a .pdf (one page per entry) or .png path (one entry:
            that file; several: ``OUT_<entry>.png`` beside it).
        branches: :class:`~xecreco.io.schema.BranchNames` for other input branch names.
        geometry: sensor positions (default: design).
    Returns:
        With ``out`` None: the Figure (one entry given as an int) or a list of Figures;
        otherwise the list of paths written.
    Raises:
        UserError: missing files, an entry out of range, or a prediction file whose row for an
        entry has another (run, event).
    """
    single = np.ndim(entry) == 0
    entries = [int(entry)] if single else [int(e) for e in entry]
    if not entries:
        raise UserError("no entry given; use --entry N")
    if out is not None and Path(out).suffix.lower() not in (".png", ".pdf"):
        raise UserError(f"{out}: the display is written as .png or .pdf; give -o OUT.png or "
                        "OUT.pdf")
    figures = []
    try:
        for e in entries:
            view = read_event(path, e, tree=tree, branches=branches)
            points = [p for f in predictions for p in read_reco_points(f, view, tree=pred_tree)]
            fig = event_figure(view, points, geometry=geometry)
            fig.xecreco_entry = e
            figures.append(fig)
        if out is None:
            return figures[0] if single else figures
        return save_figures(figures, out)
    finally:
        if out is not None:
            for fig in figures:
                plt.close(fig)
