"""One comparison of outputs against stored reference numbers (the reference-output tests)."""

from __future__ import annotations

import numpy as np

#: relative tolerance of the reference-output tests: issue 13 item 5's float32 bound (a fresh
#: install, numpy 2.4.6 and torch 2.13.0, moved default_energy by 1.2e-6 with unchanged code)
REFERENCE_RTOL = 1e-5


def assert_close(name: str, have, want: np.ndarray, rtol: float) -> None:
    """``have`` equals ``want`` (integers, booleans, strings) or agrees within ``rtol`` (floats).

    The relative scale of a float value is max(|reference|, rms of the reference array), so
    quantities that can be near zero (positions, angles, standardised outputs) are compared on
    the spread of that quantity over the sample.
    """
    have = np.asarray(have)
    assert have.shape == want.shape, f"{name}: shape {have.shape} != {want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(have, want, err_msg=name)
        return
    if want.size == 0:
        return
    want = want.astype(np.float64)
    scale = np.maximum(np.abs(want), np.sqrt(np.mean(want ** 2)))
    scale = np.where(scale > 0, scale, 1.0)
    worst = float(np.max(np.abs(have.astype(np.float64) - want) / scale))
    assert worst <= rtol, f"{name}: max relative difference {worst:.2e} > {rtol:.0e}"
