"""Resolution estimators: robust widths with bootstrap errors and fits of resolution shapes.

Parts: :mod:`~xecreco.validation.estimators.widths` (sigma68, sigma_eff, IQR, quantiles, median),
:mod:`~xecreco.validation.estimators.bootstrap` (vectorised bootstrap errors),
:mod:`~xecreco.validation.estimators.fits` (Gaussian core, Gaussian with a low-side exponential
tail, calorimeter resolution; quality levels ok / poor / failed) and
:mod:`~xecreco.validation.estimators.results` (:class:`Estimate`, :class:`FitResult`).

Every estimator works in the units of its input (the studies pass MeV, mm, ps, mrad or percent).
Robust widths return an :class:`Estimate`, fits a :class:`FitResult`; both carry an explicit
quality: what cannot be trusted is ``None`` (or ``status == "failed"``), never NaN. The public
names are importable from this package.
"""

from __future__ import annotations

from xecreco.validation.estimators.bootstrap import BOOTSTRAP_MAX_SAMPLE, BOOTSTRAP_REPLICAS
from xecreco.validation.estimators.fits import (
    FAILED_CHI2_NDOF,
    MIN_FIT_ENTRIES,
    POOR_CHI2_NDOF,
    calorimeter_fit,
    calorimeter_resolution,
    gauss_core_fit,
    gauss_exp_tail_fit,
    gauss_exp_tail_pdf,
    sample_gauss_exp_tail,
)
from xecreco.validation.estimators.results import Estimate, FitResult, clean
from xecreco.validation.estimators.widths import (
    ONE_SIGMA,
    iqr,
    quantile,
    robust_widths,
    sigma68,
    sigma_eff,
)

__all__ = [
    "Estimate",
    "FitResult",
    "POOR_CHI2_NDOF",
    "FAILED_CHI2_NDOF",
    "MIN_FIT_ENTRIES",
    "ONE_SIGMA",
    "BOOTSTRAP_REPLICAS",
    "BOOTSTRAP_MAX_SAMPLE",
    "sigma68",
    "sigma_eff",
    "iqr",
    "quantile",
    "robust_widths",
    "gauss_core_fit",
    "gauss_exp_tail_fit",
    "gauss_exp_tail_pdf",
    "sample_gauss_exp_tail",
    "calorimeter_fit",
    "calorimeter_resolution",
    "clean",
]
