"""Classical (MEG II-style) reconstruction: LSAF position, photon-sum energy, sensor-time
combination, pile-up score. Importing this package registers the reconstructor ``classical``.
"""

from xecreco.models.classical.calibration import (
    ClassicalCalibration,
    default_calibration,
    load_calibration,
    save_calibration,
)
from xecreco.models.classical.reconstructor import OUTPUTS, ClassicalReconstructor
from xecreco.models.registry import register_reconstructor

register_reconstructor("classical", ClassicalReconstructor)

__all__ = [
    "OUTPUTS",
    "ClassicalCalibration",
    "ClassicalReconstructor",
    "default_calibration",
    "load_calibration",
    "save_calibration",
]
