"""Pretrained models shipped in the package (``xecreco/models/data``).

Only paths live here (no torch import), so the registry can tell whether a bundled model is
installed without loading it. How each file was trained: docs/models.md ("Bundled models").
"""

from __future__ import annotations

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"

#: CPU-preset regressor, registered as reconstructor ``default``.
BUNDLED_REGRESSOR = DATA_DIR / "default_regressor.pt"
#: Neural dead-channel inpainter, registered as inpainter ``default``.
BUNDLED_INPAINTER = DATA_DIR / "default_inpainter.pt"


def bundled_regressor(**kwargs):
    """The bundled regressor as a reconstructor named ``default``."""
    from xecreco.models.checkpoint_reco import reconstructor_from_checkpoint

    kwargs.setdefault("name", "default")
    return reconstructor_from_checkpoint(str(BUNDLED_REGRESSOR), **kwargs)


def bundled_inpainter(**kwargs):
    """The bundled neural inpainter, named ``default``."""
    from xecreco.models.inpainter import inpainter_from_checkpoint

    kwargs.setdefault("name", "default")
    return inpainter_from_checkpoint(BUNDLED_INPAINTER, **kwargs)
