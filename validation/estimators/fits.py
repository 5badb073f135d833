"""Fits of resolution distributions: a Gaussian core, a Gaussian with a low-side exponential
tail (the MEG energy response), and the calorimeter resolution curve.

Every fit works in the units of its input (the studies pass MeV, mm, ps, mrad or percent) and
returns a :class:`~xecreco.validation.estimators.results.FitResult` with an explicit quality: a
fit that cannot be trusted is reported with ``status == "failed"`` and no values, never as NaN.

Fits use iminuit (``Minuit(cost).migrad()``) with cost functions from :mod:`iminuit.cost`.
Fit quality levels:

- ``ok``: migrad converged with a valid minimum and chi2/ndof <= ``POOR_CHI2_NDOF``;
- ``poor``: converged but chi2/ndof in (``POOR_CHI2_NDOF``, ``FAILED_CHI2_NDOF``]; values kept;
- ``failed``: too few entries, no convergence, a parameter at its limit, or chi2/ndof above
  ``FAILED_CHI2_NDOF`` (the model does not describe the data); values are ``None``.
"""

from __future__ import annotations

import math

import numpy as np
from iminuit import Minuit
from iminuit.cost import ExtendedBinnedNLL, LeastSquares
from scipy.special import ndtr, ndtri

from xecreco.validation.estimators.results import FitResult, failed_fit
from xecreco.validation.estimators.widths import (
    ONE_SIGMA,
    finite_values,
    quantile_sorted,
    sigma68_sorted,
)

__all__ = [
    "POOR_CHI2_NDOF",
    "FAILED_CHI2_NDOF",
    "MIN_FIT_ENTRIES",
    "gauss_core_fit",
    "gauss_exp_tail_fit",
    "gauss_exp_tail_pdf",
    "sample_gauss_exp_tail",
    "calorimeter_fit",
    "calorimeter_resolution",
]

#: chi2/ndof above which a converged fit is flagged ``poor``.
POOR_CHI2_NDOF = 3.0
#: chi2/ndof above which a fit is ``failed`` (the model does not describe the data).
FAILED_CHI2_NDOF = 10.0
#: fewer entries than this and a histogram fit is not attempted (``failed``).
MIN_FIT_ENTRIES = 30


def _fit_result(model: str, status: str, m: Minuit, names, *, derived=None, **fields) -> FitResult:
    """The :class:`FitResult` of a usable (``ok`` or ``poor``) Minuit fit: value and Hesse error
    of each parameter in ``names``; ``fields``: chi2, ndof, n, message, curve."""
    return FitResult(model=model, status=status,
                     values={p: float(m.values[p]) for p in names},
                     errors={p: float(m.errors[p]) for p in names},
                     derived=derived or {}, **fields)


def _quality(m: Minuit, chi2: float, ndof: int, limits: dict) -> tuple[str, str]:
    if not m.valid:
        return "failed", "migrad did not converge to a valid minimum"
    for name, (lo, hi) in limits.items():
        v, e = m.values[name], m.errors[name]
        tol = max(1e-6 * (abs(v) + 1e-12), 1e-3 * e)
        if (lo is not None and v - lo < tol) or (hi is not None and hi - v < tol):
            return "failed", f"parameter {name} at its limit"
    if ndof <= 0:
        return "failed", "no degrees of freedom left"
    red = chi2 / ndof
    if red > FAILED_CHI2_NDOF:
        return "failed", f"chi2/ndof = {red:.1f}: the model does not describe the data"
    if red > POOR_CHI2_NDOF:
        return "poor", f"chi2/ndof = {red:.1f}"
    return "ok", ""


def _binned_deviance(counts: np.ndarray, expected: np.ndarray) -> float:
    """Poisson deviance 2 sum(mu - n + n ln(n/mu)), a chi2-like goodness of fit."""
    mu = np.maximum(expected, 1e-300)
    n = counts
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(n > 0, n * np.log(n / mu), 0.0)
    return float(2.0 * np.sum(mu - n + term))


def _histogram(x: np.ndarray, lo: float, hi: float,
               n_entries: int) -> tuple[np.ndarray, np.ndarray]:
    nbins = int(np.clip(np.sqrt(n_entries) / 2.0, 20, 100))
    counts, edges = np.histogram(x, bins=nbins, range=(lo, hi))
    return counts.astype(np.float64), edges


def _propagate(f, values: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    """f(values) and its error from the covariance matrix (numerical Jacobian)."""
    v0 = float(f(values))
    grad = np.zeros(values.size)
    for i in range(values.size):
        h = 1e-6 * max(abs(values[i]), 1e-3)
        up, dn = values.copy(), values.copy()
        up[i] += h
        dn[i] -= h
        grad[i] = (f(up) - f(dn)) / (2 * h)
    var = float(grad @ cov @ grad)
    return v0, math.sqrt(max(var, 0.0))


# --------------------------------------------------------------------------- Gaussian core


def _gauss_cdf(xe, n, mu, sigma):
    return n * ndtr((xe - mu) / sigma)


def gauss_core_fit(x, *, nsigma: float = 2.0, iterations: int = 2,
                   min_entries: int = MIN_FIT_ENTRIES) -> FitResult:
    """Gaussian fit to the core of ``x``: a binned extended likelihood fit in mu +- nsigma*sigma,
    iterated ``iterations`` times starting from the median and sigma68.

    Parameters ``mu`` and ``sigma`` (units of x) and ``n`` (expected entries over the whole line).
    """
    model = "gauss_core"
    x = finite_values(x)
    if x.size < min_entries:
        return failed_fit(model, int(x.size), f"{x.size} entries, fewer than {min_entries}")
    s = np.sort(x)
    mu = float(quantile_sorted(s, 0.5))
    sigma = float(sigma68_sorted(s))
    if not sigma > 0:
        return failed_fit(model, int(x.size), "zero width: all entries are equal")
    m = None
    for _ in range(max(iterations, 1)):
        lo, hi = mu - nsigma * sigma, mu + nsigma * sigma
        inside = x[(x >= lo) & (x <= hi)]
        if inside.size < min_entries:
            return failed_fit(model, int(inside.size), f"{inside.size} entries in the core window")
        counts, edges = _histogram(inside, lo, hi, inside.size)
        cost = ExtendedBinnedNLL(counts, edges, _gauss_cdf)
        m = Minuit(cost, n=float(x.size), mu=mu, sigma=sigma)
        m.limits["n"] = (0.0, None)
        m.limits["sigma"] = (1e-6 * sigma, 20.0 * sigma)
        m.limits["mu"] = (lo, hi)
        m.migrad()
        if not m.valid:
            break
        mu, sigma = float(m.values["mu"]), float(m.values["sigma"])
    expected = np.diff(_gauss_cdf(edges, *m.values))
    chi2 = _binned_deviance(counts, expected)
    ndof = int(np.count_nonzero(counts > 0)) - 3
    limits = {"sigma": (1e-6 * sigma, None), "mu": (lo, hi)}
    status, message = _quality(m, chi2, ndof, limits)
    if status == "failed":
        return FitResult(model=model, status=status, n=int(x.size), chi2=chi2, ndof=ndof,
                         message=message)
    xs = np.linspace(lo, hi, 200)
    width = edges[1] - edges[0]
    gauss = np.exp(-0.5 * ((xs - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    ys = m.values["n"] * width * gauss
    return _fit_result(model, status, m, ("mu", "sigma", "n"), chi2=chi2, ndof=ndof,
                       n=int(x.size), message=message, curve=(xs, ys, width))


# --------------------------------------------------------------------------- Gauss + exp tail


def gauss_exp_tail_pdf(x, mu, sigma, k):
    """Normalised Gaussian (mean ``mu``, width ``sigma``) with an exponential low-side tail.

    Below ``mu - k*sigma`` the Gaussian is replaced by the exponential that continues it with a
    continuous value and slope: ``exp(k**2/2 + k*(x-mu)/sigma)``. ``sigma`` is the upper-side
    sigma of the MEG convention, ``k > 0`` the transition point in units of sigma.
    """
    x = np.asarray(x, dtype=np.float64)
    t = (x - mu) / sigma
    core = np.exp(-0.5 * t * t)
    tail = np.exp(np.minimum(0.5 * k * k + k * t, 0.0))
    f = np.where(t > -k, core, tail)
    return f / _gauss_exp_tail_norm(sigma, k)


def _gauss_exp_tail_norm(sigma, k):
    return sigma * (math.sqrt(2.0 * math.pi) * ndtr(k) + np.exp(-0.5 * k * k) / k)


def _gauss_exp_tail_cdf_unit(t, k):
    """Unnormalised integral of the shape (sigma = 1) from -inf to t."""
    tail_total = np.exp(-0.5 * k * k) / k
    below = np.exp(np.minimum(0.5 * k * k + k * t, 0.0)) / k
    above = tail_total + math.sqrt(2.0 * math.pi) * (ndtr(t) - ndtr(-k))
    return np.where(t <= -k, below, above)


def _gauss_exp_tail_cdf(xe, n, mu, sigma, k):
    t = (xe - mu) / sigma
    norm = math.sqrt(2.0 * math.pi) * ndtr(k) + math.exp(-0.5 * k * k) / k
    return n * _gauss_exp_tail_cdf_unit(t, k) / norm


def _gauss_exp_tail_fwhm(mu, sigma, k):
    half = math.sqrt(2.0 * math.log(2.0))
    upper = half
    if k >= half:
        lower = -half
    else:
        lower = (-math.log(2.0) - 0.5 * k * k) / k
    return sigma * (upper - lower)


def sample_gauss_exp_tail(n: int, mu: float, sigma: float, k: float, rng=None) -> np.ndarray:
    """Draw ``n`` values from :func:`gauss_exp_tail_pdf` (inverse-CDF on the two pieces)."""
    rng = np.random.default_rng(rng)
    tail_w = math.exp(-0.5 * k * k) / k
    core_w = math.sqrt(2.0 * math.pi) * ndtr(k)
    in_tail = rng.random(n) < tail_w / (tail_w + core_w)
    out = np.empty(n)
    nt = int(in_tail.sum())
    # tail: density exp(k t) below -k -> t = -k + ln(U)/k
    out[in_tail] = -k + np.log(rng.random(nt)) / k
    # core: Gaussian truncated to t > -k
    u = ndtr(-k) + rng.random(n - nt) * (1.0 - ndtr(-k))
    out[~in_tail] = ndtri(u)
    return mu + sigma * out


def gauss_exp_tail_fit(x, *, low: float = 6.0, high: float = 3.0,
                       min_entries: int = MIN_FIT_ENTRIES) -> FitResult:
    """MEG energy-response fit: Gaussian with a low-side exponential tail (see
    :func:`gauss_exp_tail_pdf`), binned extended likelihood in
    [median - low*sigma68, median + high*sigma68].

    Parameters: ``mu`` (peak), ``sigma`` (upper-side sigma), ``k`` (tail transition, sigma
    units), ``n``. Derived: ``fwhm`` (units of x) with propagated error.
    """
    model = "gauss_exp_tail"
    x = finite_values(x)
    if x.size < min_entries:
        return failed_fit(model, int(x.size), f"{x.size} entries, fewer than {min_entries}")
    s = np.sort(x)
    med = float(quantile_sorted(s, 0.5))
    s68 = float(sigma68_sorted(s))
    if not s68 > 0:
        return failed_fit(model, int(x.size), "zero width: all entries are equal")
    # start from the upper half-width, which the tail does not inflate
    upper = float(quantile_sorted(s, 0.5 + ONE_SIGMA / 2.0)) - med
    lo, hi = med - low * s68, med + high * s68
    inside = x[(x >= lo) & (x <= hi)]
    if inside.size < min_entries:
        return failed_fit(model, int(inside.size), f"{inside.size} entries in the fit window")
    counts, edges = _histogram(inside, lo, hi, inside.size)
    cost = ExtendedBinnedNLL(counts, edges, _gauss_exp_tail_cdf)
    sig0 = max(upper, 0.2 * s68)
    m = Minuit(cost, n=float(x.size), mu=med, sigma=sig0, k=1.0)
    m.limits["n"] = (0.0, None)
    m.limits["mu"] = (lo, hi)
    m.limits["sigma"] = (1e-4 * s68, 20.0 * s68)
    m.limits["k"] = (0.05, 10.0)
    m.migrad()
    if m.valid:
        m.hesse()
    expected = np.diff(_gauss_exp_tail_cdf(edges, *m.values))
    chi2 = _binned_deviance(counts, expected)
    ndof = int(np.count_nonzero(counts > 0)) - 4
    limits = {"sigma": (1e-4 * s68, None), "mu": (lo, hi)}
    status, message = _quality(m, chi2, ndof, limits)
    if status == "failed":
        return FitResult(model=model, status=status, n=int(x.size), chi2=chi2, ndof=ndof,
                         message=message)
    names = ("mu", "sigma", "k", "n")
    vals = np.array([m.values[p] for p in names])
    cov = np.array(m.covariance)[:3, :3] if m.covariance is not None else np.zeros((3, 3))
    fwhm = _propagate(lambda p: _gauss_exp_tail_fwhm(p[0], p[1], p[2]), vals[:3], cov)
    xs = np.linspace(lo, hi, 300)
    width = edges[1] - edges[0]
    shape = gauss_exp_tail_pdf(xs, m.values["mu"], m.values["sigma"], m.values["k"])
    ys = m.values["n"] * width * shape
    return _fit_result(model, status, m, names, derived={"fwhm": fwhm}, chi2=chi2, ndof=ndof,
                       n=int(x.size), message=message, curve=(xs, ys, width))


# --------------------------------------------------------------------------- calorimeter fit


def calorimeter_resolution(energy_gev, a, b, c):
    """sigma_E / E = a / sqrt(E) (+) b (+) c / E in quadrature; E in GeV, a in sqrt(GeV),
    b dimensionless, c in GeV; returns a fraction."""
    e = np.asarray(energy_gev, dtype=np.float64)
    return np.sqrt((a / np.sqrt(e)) ** 2 + b**2 + (c / e) ** 2)


def calorimeter_fit(energy_gev, resolution, error) -> FitResult:
    """Least-squares fit of :func:`calorimeter_resolution` to resolution points.

    ``energy_gev``: bin centres (GeV); ``resolution``, ``error``: sigma_E/E and its error
    (fractions). Points with a missing value or error are dropped; at least 4 points (one degree
    of freedom) are needed. Parameters a, b, c are constrained to be >= 0.
    """
    model = "calorimeter"
    e = np.asarray(energy_gev, dtype=np.float64)
    r = np.asarray([np.nan if v is None else v for v in resolution], dtype=np.float64)
    s = np.asarray([np.nan if v is None else v for v in error], dtype=np.float64)
    good = np.isfinite(e) & np.isfinite(r) & np.isfinite(s) & (s > 0) & (e > 0)
    e, r, s = e[good], r[good], s[good]
    if e.size < 4:
        return failed_fit(model, int(e.size),
                       f"resolution known at {e.size} energy point(s); at least 4 needed")
    cost = LeastSquares(e, r, s, calorimeter_resolution)
    r0 = float(np.median(r))
    e0 = float(np.median(e))
    # start with the three terms sharing the median resolution equally at the median energy
    third = r0 / math.sqrt(3)
    m = Minuit(cost, a=third * math.sqrt(e0), b=third, c=third * e0)
    for p in ("a", "b", "c"):
        m.limits[p] = (0.0, None)
    m.migrad()
    if m.valid:
        m.hesse()
    chi2 = float(m.fval)
    ndof = int(e.size) - 3
    if not m.valid:
        return FitResult(model=model, status="failed", n=int(e.size), chi2=chi2, ndof=ndof,
                         message="migrad did not converge to a valid minimum")
    red = chi2 / ndof
    status, message = "ok", ""
    if red > POOR_CHI2_NDOF:
        # points are few and binned estimates; a large chi2 flags the fit but keeps the values
        status, message = "poor", f"chi2/ndof = {red:.1f}"
    at_zero = [p for p in ("a", "b", "c") if m.values[p] < 1e-3 * max(m.errors[p], 1e-12)]
    if at_zero:
        message = (message + "; " if message else "") + "at zero: " + ", ".join(at_zero)
    xs = np.linspace(e.min(), e.max(), 200)
    ys = calorimeter_resolution(xs, *[m.values[p] for p in ("a", "b", "c")])
    return _fit_result(model, status, m, ("a", "b", "c"), chi2=chi2, ndof=ndof, n=int(e.size),
                       message=message, curve=(xs, ys, None))
