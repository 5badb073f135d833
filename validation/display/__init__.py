"""Event display: all 4760 sensors on one unrolled picture of the detector.

Parts: :mod:`~xecreco.validation.display.unrolled` (where each sensor sits in the picture, in cm,
and :func:`draw_unrolled` for any per-sensor values) and :mod:`~xecreco.validation.display.event`
(one input event with its truth, pile-up photons and reconstructions: :func:`display_event`, what
``xecreco display`` runs). The public names are importable from this package.
"""

from __future__ import annotations

from xecreco.validation.display.event import (
    EventView,
    RecoPoint,
    display_event,
    event_figure,
    inner_face_entry,
    read_event,
    read_reco_points,
    reco_markers,
    save_figures,
    truth_markers,
)
from xecreco.validation.display.unrolled import (
    DEAD_COLOUR,
    INNER_HALF_U,
    INNER_HALF_V,
    INVALID_COLOUR,
    MARKER_STYLES,
    Marker,
    UnrolledLayout,
    build_layout,
    draw_unrolled,
    unrolled_layout,
)

__all__ = [
    "Marker",
    "MARKER_STYLES",
    "UnrolledLayout",
    "build_layout",
    "unrolled_layout",
    "draw_unrolled",
    "EventView",
    "RecoPoint",
    "read_event",
    "read_reco_points",
    "inner_face_entry",
    "truth_markers",
    "reco_markers",
    "event_figure",
    "display_event",
    "save_figures",
    "INVALID_COLOUR",
    "DEAD_COLOUR",
    "INNER_HALF_U",
    "INNER_HALF_V",
]
