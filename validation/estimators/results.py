"""Result types of the estimators: :class:`Estimate` (a value with its bootstrap error) and
:class:`FitResult` (a fit with an explicit quality), plus :func:`clean` for JSON.

Values and errors are in the units of the estimator's input; undefined values are ``None``, never
NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Estimate", "FitResult", "clean", "failed_fit"]


def clean(x) -> float | None:
    """A float for JSON: NaN and inf become ``None``."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclass
class Estimate:
    """A value with its (bootstrap) error, in the units of the input; ``None`` when undefined."""

    value: float | None
    error: float | None
    n: int

    def to_dict(self) -> dict:
        return {"value": clean(self.value), "error": clean(self.error), "n": int(self.n)}


@dataclass
class FitResult:
    """Result of a histogram or graph fit.

    Attributes:
        model: name of the fitted model.
        status: ``"ok"``, ``"poor"`` or ``"failed"`` (levels: see
            :mod:`xecreco.validation.estimators.fits`).
        values, errors: parameter name -> value / Hesse error (input units); empty when failed.
        derived: name -> (value, error) for quantities computed from the parameters
            (e.g. ``fwhm``); errors propagated with the covariance matrix.
        chi2, ndof: goodness of fit (deviance for binned likelihood fits).
        n: entries (or points) used.
        message: why a fit failed or is poor; empty when ok.
        curve: (x, y) of the fitted model in the histogram's units, for plotting (None if failed).
    """

    model: str
    status: str
    values: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    derived: dict = field(default_factory=dict)
    chi2: float | None = None
    ndof: int | None = None
    n: int = 0
    message: str = ""
    curve: tuple | None = None

    @property
    def ok(self) -> bool:
        """True when values are available (status ``ok`` or ``poor``)."""
        return self.status != "failed"

    def get(self, name: str) -> tuple[float | None, float | None]:
        """(value, error) of a parameter or derived quantity; (None, None) when failed."""
        if not self.ok:
            return None, None
        if name in self.derived:
            return self.derived[name]
        return self.values.get(name), self.errors.get(name)

    def to_dict(self) -> dict:
        out = {
            "model": self.model,
            "status": self.status,
            "n": int(self.n),
            "chi2": clean(self.chi2),
            "ndof": self.ndof,
            "message": self.message,
        }
        if self.ok:
            out["values"] = {k: clean(v) for k, v in self.values.items()}
            out["errors"] = {k: clean(v) for k, v in self.errors.items()}
            for k, (v, e) in self.derived.items():
                out["values"][k] = clean(v)
                out["errors"][k] = clean(e)
        return out


def failed_fit(model: str, n: int, message: str) -> FitResult:
    """A ``failed`` :class:`FitResult` with no values and the reason in ``message``."""
    return FitResult(model=model, status="failed", n=n, message=message)
