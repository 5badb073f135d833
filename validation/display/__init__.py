"""Event display: all 4760 sensors on one unrolled picture of the detector.

Parts: :mod:`~xecreco.validation.display.unrolled` (where each sensor sits in the picture, in cm,
and :func:`draw_unrolled` for any per-sensor values) and :mod:`~xecreco.validation.display.event`
(one input event with its truth, pile-up photons and reconstructions: :func:`display_event`, what
``xecreco display`` runs). The public names are importable from this package.
"""

from __future__ import annotations

from xecreco.validation.display import event, unrolled
from xecreco.validation.display.event import *  # noqa: F403
from xecreco.validation.display.unrolled import *  # noqa: F403

__all__ = [*unrolled.__all__, *event.__all__]
