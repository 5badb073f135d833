"""The unrolled detector: all 4760 sensors on one picture, and drawing values on it.

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
from dataclasses import dataclass
from functools import lru_cache

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib import patheffects  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from xecreco.geometry import Face, Geometry, design_geometry, face_ids  # noqa: E402
from xecreco.geometry import constants as C  # noqa: E402
from xecreco.geometry.sensors import outer_dense_cells  # noqa: E402

__all__ = [
    "Marker",
    "MARKER_STYLES",
    "UnrolledLayout",
    "build_layout",
    "unrolled_layout",
    "draw_unrolled",
    "INVALID_COLOUR",
    "DEAD_COLOUR",
    "INNER_HALF_U",
    "INNER_HALF_V",
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
