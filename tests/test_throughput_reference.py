"""fp32 outputs of the bundled models stay what they were before the throughput work (issue 13).

The reference (tests/data/bundled_reference.npz) was written by tests/_reference_events.py on
commit d9de2c2, before any speed change (rewritten, with code that had just passed, each time a bundled model
is replaced; last: 2026-12-03, the bundled regressor given its pile-up head and pile-up expert,
``main_*`` being its main network alone), from a fixed toy sample of 64 events that does not
depend on the simulator. Every value must agree within 1e-5 relative; for quantities that can be
near zero (positions, standardised outputs) the relative scale is max(|reference|, rms of that
quantity over the sample).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _compare import REFERENCE_RTOL, assert_close
from _reference_events import (
    REFERENCE_FILE,
    inpainter_outputs,
    reference_batch,
    regressor_network_outputs,
    regressor_physical_outputs,
)
from xecreco.models import bundled


pytestmark = pytest.mark.skipif(
    not (bundled.BUNDLED_REGRESSOR.is_file() and bundled.BUNDLED_INPAINTER.is_file()),
    reason="this install ships no bundled models")


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE_FILE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def batch():
    return reference_batch()


@pytest.fixture(autouse=True)
def _fp32_default():
    assert torch.get_default_dtype() == torch.float32


def _assert_close(prefix: str, got: dict, reference: dict) -> None:
    expected = {k[len(prefix):]: v for k, v in reference.items() if k.startswith(prefix)}
    assert set(got) == set(expected), f"{prefix} outputs changed: {sorted(got)} vs {sorted(expected)}"
    for name, want in expected.items():
        assert_close(prefix + name, got[name], want, REFERENCE_RTOL)


def test_bundled_regressor_network_outputs_unchanged(batch, reference):
    _assert_close("net_", regressor_network_outputs(batch), reference)


def test_bundled_regressor_physical_outputs_unchanged(batch, reference):
    _assert_close("reco_", regressor_physical_outputs(batch), reference)


def test_bundled_regressor_main_network_outputs_unchanged(batch, reference):
    _assert_close("main_", regressor_physical_outputs(batch, pileup_expert=False), reference)


def test_bundled_inpainter_outputs_unchanged(batch, reference):
    _assert_close("inpaint_", inpainter_outputs(batch), reference)
