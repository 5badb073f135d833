"""Event display: all 4760 sensors on one unrolled picture of the detector.

Coordinates of the picture (cm), built from the sensor positions of :mod:`xecreco.geometry`:

- INNER: at its own (u, v) = (z, R phi), R = 64.97 cm; each MPPC a 1.51 x 1.53 cm cell. The
  picture's axes are therefore the inner-face (u, v) and markers are drawn there.
- US / DS: folded out about the inner face's upstream / downstream edge (u = -+33.2 cm): a PMT
  at azimuth phi sits at v = R phi, and at the distance from that edge it has in the (z, r)
  plane. US lies left of the inner face, DS right of it.
- TOP / BOTTOM: folded out about the inner face's top / bottom edge (the hex planes meet it at
  v = +-71.2 cm): a PMT sits at u = z and at its distance r - R from that edge, above / below.
- OUTER: it faces the inner face from behind, so it cannot be folded out; it is drawn to the
  right of DS at (u_0 + z, R phi), with the same azimuth scale as the inner face (a row of
  the outer face lines up with the inner rows of the same azimuth) and +z to the right.

Cells tile each face at its physical pitch (outer coarse 10.356 cm x 5.23 deg, dense centre
patch 6.2 cm x 3.487 deg, US/DS rings x strips, top/bottom hexagons 6.12 cm across).
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from xecreco.errors import UserError  # noqa: E402
from xecreco.geometry import Face, Geometry, design_geometry, face_ids, xyz_to_uvw  # noqa: E402
from xecreco.geometry import constants as C  # noqa: E402
from xecreco.geometry.sensors import outer_dense_cells  # noqa: E402
from xecreco.geometry.uvw import uvw_to_xyz  # noqa: E402

__all__ = [
    "Marker",
    "MARKER_STYLES",
    "UnrolledLayout",
    "unrolled_layout",
    "draw_unrolled",
    "EventView",
    "RecoPoint",
    "read_event",
    "read_reco_points",
    "event_figure",
    "display_event",
    "save_figures",
    "INVALID_COLOUR",
    "DEAD_COLOUR",
]

#: colour of cells whose value is invalid (e.g. no valid time) and of dead sensors
INVALID_COLOUR = "#c8c8c8"
DEAD_COLOUR = "#e8102e"

#: u (cm) of the inner face's upstream / downstream edges and v (cm) of its top / bottom edges
INNER_HALF_U = 0.5 * C.INNER_N_COLS * C.INNER_Z_PITCH
INNER_HALF_V = C.R_INNER * math.radians(0.5 * C.INNER_N_ROWS * C.INNER_PHI_PITCH_DEG)
#: empty space (cm) between the DS face and the outer face in the picture
OUTER_GAP = 10.0
#: inset (cm) of PMT cells so neighbouring PMTs stay distinguishable
PMT_INSET = 0.3


@dataclass(frozen=True)
class Marker:
    """A point drawn on the inner-face coordinates: ``u_cm``, ``v_cm`` (cm), ``label`` (legend
    text) and ``style``: a name in :data:`MARKER_STYLES` or a dict of ``Axes.plot`` keywords."""

    u_cm: float
    v_cm: float
    label: str
    style: str | dict = "reco"


#: named marker styles (``Axes.plot`` keywords); "reco" markers get a colour per label
MARKER_STYLES = {
    "truth": dict(marker="*", markersize=21, markerfacecolor="none", markeredgecolor="black",
                  markeredgewidth=1.6, linestyle="none", zorder=7,
                  path_effects=[patheffects.withStroke(linewidth=3.5, foreground="white")]),
    "pileup": dict(marker="D", markersize=9, markerfacecolor="#ff9f1c", markeredgecolor="black",
                   markeredgewidth=1.0, linestyle="none"),
    "reco": dict(marker="X", markersize=11, markeredgecolor="black", markeredgewidth=0.8,
                 linestyle="none", zorder=6),
}
_RECO_COLOURS = ("#ff2bd6", "#00e5ff", "#ffffff", "#7fff00", "#ffd700", "#8a2be2")


@dataclass(frozen=True, eq=False)
class UnrolledLayout:
    """Where every sensor sits in the unrolled picture (cm, see the module docstring).

    ``centre`` (4760, 2): cell centre per sensor id; ``polygons``: tuple of 4760 (k, 2) vertex
    arrays (the cell outlines); ``face_boxes``: Face -> (x_min, x_max, y_min, y_max) of the
    face's cells; ``outer_u0``: x of the outer face's z = 0.
    """

    centre: np.ndarray
    polygons: tuple
    face_boxes: dict
    outer_u0: float


def _rectangle(cx: np.ndarray, cy: np.ndarray, half_x, half_y) -> list[np.ndarray]:
    hx = np.broadcast_to(half_x, cx.shape)
    hy = np.broadcast_to(half_y, cx.shape)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    return [np.column_stack([x + corners[:, 0] * a, y + corners[:, 1] * b])
            for x, y, a, b in zip(cx, cy, hx, hy)]


def _hexagon(cx: np.ndarray, cy: np.ndarray, radius: float) -> list[np.ndarray]:
    angles = np.radians(90.0 + 60.0 * np.arange(6))  # pointy top: flat sides face along u
    ring = radius * np.column_stack([np.cos(angles), np.sin(angles)])
    return [ring + np.array([x, y]) for x, y in zip(cx, cy)]


def build_layout(geometry: Geometry) -> UnrolledLayout:
    """:class:`UnrolledLayout` of ``geometry`` (design or as-built positions)."""
    centre = np.zeros((geometry.n_sensors, 2))
    polygons: list = [None] * geometry.n_sensors
    uvw = geometry.uvw
    r = np.hypot(geometry.position[:, 0], geometry.position[:, 1])
    z = geometry.position[:, 2]

    ids = face_ids(Face.INNER)
    centre[ids] = uvw[ids, :2]
    half_v = 0.5 * C.R_INNER * math.radians(C.INNER_PHI_PITCH_DEG)
    for i, p in zip(ids, _rectangle(centre[ids, 0], centre[ids, 1], 0.5 * C.INNER_Z_PITCH,
                                    half_v)):
        polygons[i] = p

    side_half = (0.5 * math.hypot(C.SIDE_R_PITCH, C.SIDE_Z_PITCH) - PMT_INSET,
                 0.5 * C.R_INNER * math.radians(C.OUTER_PHI_PITCH_DEG) - PMT_INSET)
    for face, sign in ((Face.US, -1.0), (Face.DS, 1.0)):
        ids = face_ids(face)
        fold = np.hypot(np.abs(z[ids]) - INNER_HALF_U, r[ids] - C.R_INNER)
        centre[ids, 0] = sign * (INNER_HALF_U + fold)
        centre[ids, 1] = uvw[ids, 1]
        for i, p in zip(ids, _rectangle(centre[ids, 0], centre[ids, 1], *side_half)):
            polygons[i] = p

    hex_radius = C.HEX_Z_PITCH / math.sqrt(3.0) - PMT_INSET
    for face, sign in ((Face.TOP, 1.0), (Face.BOTTOM, -1.0)):
        ids = face_ids(face)
        centre[ids, 0] = z[ids]
        centre[ids, 1] = sign * (INNER_HALF_V + r[ids] - C.R_INNER)
        for i, p in zip(ids, _hexagon(centre[ids, 0], centre[ids, 1], hex_radius)):
            polygons[i] = p

    ids = face_ids(Face.OUTER)
    ds_right = max(p[:, 0].max() for p in (polygons[i] for i in face_ids(Face.DS)))
    half_outer = 0.5 * C.OUTER_N_Z * C.OUTER_Z_PITCH
    outer_u0 = ds_right + OUTER_GAP + half_outer
    centre[ids, 0] = outer_u0 + z[ids]
    centre[ids, 1] = uvw[ids, 1]
    dense = np.isin(ids, list(outer_dense_cells()))
    half_x = np.where(dense, 0.5 * C.OUTER_DENSE_Z_PITCH, 0.5 * C.OUTER_Z_PITCH) - PMT_INSET
    half_y = C.R_INNER * np.radians(np.where(dense, 0.5 * C.OUTER_DENSE_PHI_PITCH_DEG,
                                             0.5 * C.OUTER_PHI_PITCH_DEG)) - PMT_INSET
    for i, p in zip(ids, _rectangle(centre[ids, 0], centre[ids, 1], half_x, half_y)):
        polygons[i] = p

    boxes = {}
    for face in Face:
        pts = np.concatenate([polygons[i] for i in face_ids(face)])
        boxes[face] = (float(pts[:, 0].min()), float(pts[:, 0].max()),
                       float(pts[:, 1].min()), float(pts[:, 1].max()))
    centre.setflags(write=False)
    return UnrolledLayout(centre=centre, polygons=tuple(polygons), face_boxes=boxes,
                          outer_u0=float(outer_u0))


@lru_cache(maxsize=1)
def _design_layout() -> UnrolledLayout:
    return build_layout(design_geometry())


def unrolled_layout(geometry: Geometry | None = None) -> UnrolledLayout:
    """The unrolled layout of ``geometry`` (default: the design geometry, cached)."""
    return _design_layout() if geometry is None else build_layout(geometry)


_FACE_LABELS = {Face.INNER: "inner (MPPC)", Face.OUTER: "outer", Face.US: "US", Face.DS: "DS",
                Face.TOP: "top", Face.BOTTOM: "bottom"}


def _face_labels(ax, layout: UnrolledLayout) -> None:
    kw = dict(fontsize=10, color="#333333", fontweight="bold")
    for face, text in _FACE_LABELS.items():
        x0, x1, y0, y1 = layout.face_boxes[face]
        if face in (Face.US, Face.DS, Face.OUTER):
            ax.text(0.5 * (x0 + x1), y1 + 2.0, text, ha="center", va="bottom", **kw)
        elif face == Face.INNER:
            ax.text(x0 + 1.0, y1 - 1.0, text, ha="left", va="top", fontsize=8, color="white",
                    fontweight="bold")
        else:
            ax.text(x1 + 2.0, 0.5 * (y0 + y1), text, ha="left", va="center", **kw)


def _mask(mask, name: str) -> np.ndarray:
    if mask is None:
        return np.zeros(C.N_SENSORS, dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (C.N_SENSORS,):
        raise ValueError(f"{name} must be a bool array of shape ({C.N_SENSORS},), got {mask.shape}")
    return mask


def _colour_norm(values: np.ndarray, shown: np.ndarray, log: bool, vmin, vmax):
    good = values[shown & np.isfinite(values)]
    if log:
        positive = good[good > 0]
        hi = vmax if vmax is not None else (positive.max() if positive.size else 10.0)
        lo = vmin if vmin is not None else max(hi * 1e-4, positive.min() if positive.size else 1)
        lo = min(lo, hi / 10.0)
        return LogNorm(vmin=lo, vmax=hi, clip=True)
    if vmin is None or vmax is None:
        lo, hi = (np.percentile(good, [1, 99]) if good.size else (0.0, 1.0))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    if not vmax > vmin:
        vmax = vmin + 1.0
    return Normalize(vmin=vmin, vmax=vmax, clip=True)


def _draw_markers(ax, markers) -> list:
    handles = []
    n_reco = 0
    for m in markers:
        if isinstance(m.style, dict):
            kw = {"linestyle": "none", **m.style}
        else:
            if m.style not in MARKER_STYLES:
                raise ValueError(f"unknown marker style '{m.style}': use one of "
                                 f"{', '.join(MARKER_STYLES)} or a dict of plot keywords")
            kw = dict(MARKER_STYLES[m.style])
            if m.style == "reco":
                kw.setdefault("color", _RECO_COLOURS[n_reco % len(_RECO_COLOURS)])
                n_reco += 1
        kw.setdefault("zorder", 5)
        (line,) = ax.plot([m.u_cm], [m.v_cm], label=m.label, gid="marker", **kw)
        handles.append(line)
    return handles


def draw_unrolled(values, *, ax=None, log: bool = False, vmin=None, vmax=None,
                  cmap="viridis", invalid=None, dead=None, markers=(), title=None,
                  cbar_label=None, geometry: Geometry | None = None, legend: bool = True):
    """Draw per-sensor ``values`` on the unrolled detector; returns the matplotlib Axes.

    Args:
        values: (4760,) floats in sensor-id order.
        ax: Axes to draw on (default: a new figure).
        log: logarithmic colour scale (values <= 0 get the lowest colour).
        vmin, vmax: colour range (default: from the shown values; log: max / 1e4 .. max).
        cmap: matplotlib colour map.
        invalid: (4760,) bool, cells drawn grey (value not usable, e.g. no valid time).
        dead: (4760,) bool, cells drawn red (dead sensors; takes precedence over ``invalid``).
        markers: :class:`Marker` objects drawn at their inner-face (u, v).
        title, cbar_label: panel title and colour-bar label (no colour bar when None).
        geometry: sensor positions (default: the design geometry).
        legend: add a legend of the markers, dead and invalid cells.
    The value cells are the collection with gid "sensors" (one polygon per sensor id, in id
    order); dead and invalid cells are the collections with gid "dead" and "invalid".
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (C.N_SENSORS,):
        raise ValueError(f"values must have shape ({C.N_SENSORS},), got {values.shape}")
    dead = _mask(dead, "dead")
    invalid = _mask(invalid, "invalid") & ~dead
    layout = unrolled_layout(geometry)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 7.5))
    shown = ~(dead | invalid)
    norm = _colour_norm(values, shown, log, vmin, vmax)
    plotted = np.where(shown, values, np.nan)
    if log:
        plotted = np.where(np.isfinite(plotted), np.maximum(plotted, norm.vmin), np.nan)
    cm = plt.get_cmap(cmap).copy()
    cm = cm.with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    cells = PolyCollection(layout.polygons, array=plotted, cmap=cm, norm=norm,
                           edgecolors="none", gid="sensors", zorder=1)
    ax.add_collection(cells)
    handles = []
    for name, mask, colour in (("invalid", invalid, INVALID_COLOUR), ("dead", dead, DEAD_COLOUR)):
        ids = np.flatnonzero(mask)
        coll = PolyCollection([layout.polygons[i] for i in ids], facecolors=colour,
                              edgecolors="black" if name == "dead" else "none",
                              linewidths=0.3, gid=name, zorder=2)
        ax.add_collection(coll)
        if ids.size:
            text = "dead sensor" if name == "dead" else "no valid value"
            handles.append(Patch(facecolor=colour, edgecolor="black", label=f"{text} ({ids.size})"))
    handles = _draw_markers(ax, markers) + handles
    x_lo = min(b[0] for b in layout.face_boxes.values())
    x_hi = max(b[1] for b in layout.face_boxes.values())
    y_lo = min(b[2] for b in layout.face_boxes.values())
    y_hi = max(b[3] for b in layout.face_boxes.values())
    ax.set_xlim(x_lo - 3.0, x_hi + 14.0)
    ax.set_ylim(y_lo - 6.0, y_hi + 3.0)
    ax.set_aspect("equal")
    ax.set_facecolor("white")
    ax.set_xlabel("u = z on the inner face (cm)")
    ax.set_ylabel(r"v = R$\,\phi$ on the inner face (cm)")
    _face_labels(ax, layout)
    if title:
        ax.set_title(title, fontsize=11)
    if cbar_label is not None:
        cbar = ax.figure.colorbar(cells, ax=ax, shrink=0.75, pad=0.01)
        cbar.set_label(cbar_label)
    handles = [h for h in handles if not h.get_label().startswith("_")]
    if legend and handles:
        ax.legend(handles=handles, loc="lower right", fontsize=7.5, framealpha=0.9,
                  borderaxespad=0.3, handlelength=1.2, markerscale=0.7)
    return ax


# --- one event ------------------------------------------------------------------------------------


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
            wanted.append(f"{r}_status")
            wanted += [f"{r}_{q}" for q in QUANTITIES if f"{r}_{q}" in keys]
        arrays = ttree.arrays(wanted, entry_start=row, entry_stop=row + 1, library="np")
    ids = tuple(int(arrays[b][0]) for b in ("run", "event") if b in arrays)
    if len(ids) == 2 and ids != (view.run, view.event):
        raise UserError(
            f"{path}: row for input entry {view.entry} is (run, event) = {ids}, but {view.path} "
            f"has ({view.run}, {view.event}): the prediction file was not made from this input"
        )
    points = []
    for r in names:
        values = {q: float(arrays[f"{r}_{q}"][0]) for q in QUANTITIES if f"{r}_{q}" in arrays}
        points.append(RecoPoint(r, values, int(arrays[f"{r}_status"][0])))
    return points


def _usable(value) -> bool:
    return value is not None and math.isfinite(value) and abs(value) < 1e9


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


def _atomic_target(path: Path) -> Path:
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


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
        tmp = _atomic_target(out)
        try:
            with PdfPages(tmp) as pdf:
                for fig in figures:
                    pdf.savefig(fig)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        return [out]
    for fig in figures:
        target = out
        if len(figures) > 1:
            target = out.with_name(f"{out.stem}_{getattr(fig, 'xecreco_entry', len(written))}.png")
        tmp = _atomic_target(target)
        try:
            fig.savefig(tmp, format="png", dpi=100)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
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
