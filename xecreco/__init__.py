"""xecreco: photon reconstruction for the MEG II liquid-xenon calorimeter (XEC).

Core library: geometry, data I/O, normalisation, fast simulation and the training engine.
Reconstruction models live in :mod:`xecreco.models`, physics validation in
:mod:`xecreco.validation` and the command line in :mod:`xecreco.cli`.
"""

from xecreco._version import __version__

__all__ = ["__version__"]
