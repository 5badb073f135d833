"""``predict -r classical -r default`` and ``inpaint`` write what they wrote before issue 12.

The reference (tests/data/pipeline_reference.npz) was written by tests/_pipeline_reference.py on
commit ae8698b, before the restructuring (rewritten, with code that had just passed, each time a bundled model
is replaced; last: 2026-12-03, the bundled regressor given its pile-up head and expert: two new
branches, every old value within the tolerance), from a fixed simulated sample (200 signal photons, 2 %
dead channels). Every floating-point value must agree within ``_compare.REFERENCE_RTOL`` (1e-5)
relative, integers exactly; for
quantities that can be near zero (positions, angles, times) the relative scale is
max(|reference|, rms of that quantity over the sample).
"""

from __future__ import annotations

import numpy as np
import pytest

import _compare as compare
import _pipeline_reference as pipeline
from xecreco.models import bundled


pytestmark = pytest.mark.skipif(
    not (bundled.BUNDLED_REGRESSOR.is_file() and bundled.BUNDLED_INPAINTER.is_file()),
    reason="this install ships no bundled models")


@pytest.fixture(scope="module")
def reference():
    with np.load(pipeline.REFERENCE_FILE) as data:
        return dict(data)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("restructure_reference")
    sample_path = pipeline.simulate_sample(directory)
    return {
        "sample": pipeline.read_tree(sample_path, "tree"),
        "prediction": pipeline.read_tree(pipeline.run_predict(sample_path, directory), "reco"),
        "repaired": pipeline.read_tree(pipeline.run_inpaint(sample_path, directory), "tree"),
    }


def assert_close(name: str, have, want: np.ndarray) -> None:
    compare.assert_close(name, have, want, compare.REFERENCE_RTOL)


def test_the_simulated_sample_is_the_reference_sample(outputs, reference):
    fingerprint = pipeline.sample_fingerprint(outputs["sample"])
    for key, value in fingerprint.items():
        assert_close(f"sample {key} (the simulator changed, not the pipelines)", value,
                     reference[f"sample_{key}"])


def test_predict_classical_and_default_outputs_unchanged(outputs, reference):
    prediction = outputs["prediction"]
    assert list(prediction) == list(reference["predict__branches"]), "prediction branches changed"
    assert any(b.startswith("classical_") for b in prediction)
    assert any(b.startswith("default_") for b in prediction)
    for branch, values in prediction.items():
        assert_close(f"predict {branch}", values, reference[f"predict_{branch}"])


def test_inpaint_outputs_unchanged(outputs, reference):
    sample, repaired = outputs["sample"], outputs["repaired"]
    assert list(repaired) == list(reference["inpaint__branches"]), "inpaint output branches changed"
    numbers = pipeline.repaired_values(sample, repaired)
    assert numbers["npho_changed"].size > 0, "inpaint changed no value: the test would be empty"
    for key, values in numbers.items():
        assert_close(f"inpaint {key}", values, reference[f"inpaint_{key}"])
    for branch, values in repaired.items():
        if branch in ("npho", "time", "inpainted"):
            continue
        np.testing.assert_array_equal(np.asarray(values), np.asarray(sample[branch]),
                                      err_msg=f"inpaint changed the copied branch {branch}")


def test_the_comparison_notices_a_change_of_twenty_parts_per_million():
    want = np.array([1.0, 2.0, -3.0, 0.0])
    assert_close("same", want * (1 + 5e-7), want)
    with pytest.raises(AssertionError):
        assert_close("moved", want * (1 + 2e-5), want)
    with pytest.raises(AssertionError):
        assert_close("status", np.array([0, 1]), np.array([0, 2]))
