"""Physics studies. Each module has ``NAME``, ``TITLE`` and ``run(dataset, context) ->
StudyResult``; :data:`STUDIES` lists them in report order."""

from xecreco.validation.studies import (
    angle,
    calibration,
    deadchannels,
    energy,
    pileup,
    position,
    scan,
    timing,
)

#: study name -> module, in report order.
STUDIES = {m.NAME: m for m in (energy, position, angle, timing, pileup, deadchannels,
                                  scan, calibration)}

__all__ = ["STUDIES"]
