"""The bundled pretrained regressor: small, plain, registered, and as good as the docs say."""

from __future__ import annotations

import numpy as np
import pytest
import uproot

from xecreco.models import available_reconstructors, bundled
from xecreco.models.predict import predict_files
from xecreco.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(not bundled.BUNDLED_REGRESSOR.is_file(),
                                reason="this install ships no bundled regressor")


def test_bundled_regressor_is_small_plain_and_registered():
    assert bundled.BUNDLED_REGRESSOR.stat().st_size < 20 * 2**20
    payload = load_checkpoint(bundled.BUNDLED_REGRESSOR)  # weights_only=True
    assert payload["task"] == "regressor"
    assert payload["model_config"]["preset"] == "cpu"
    assert "default" in available_reconstructors()


def test_bundled_regressor_predicts_physical_values(sim_file_small, tmp_path):
    out = tmp_path / "pred.root"
    predict_files([sim_file_small], out, ["default"], progress=False)
    with uproot.open(out) as handle:
        data = handle["reco"].arrays(library="np")
    assert np.all(data["default_status"] == 0)
    ratio = data["default_energy"] / data["energyTruth"]
    assert abs(np.median(ratio) - 1.0) < 0.03
    du = data["default_u"] - data["uvwTruth"][:, 0]
    assert np.percentile(np.abs(du), 68) < 1.0  # cm


@pytest.mark.slow
def test_bundled_regressor_beats_classical_where_documented(tmp_path):
    from xecreco.sim import simulate_file
    from xecreco.validation.api import validate
    from xecreco.validation.headlines import HEADLINE_STUDIES, headline_numbers

    source = tmp_path / "signal.root"
    simulate_file(source, 4000, seed=909, jobs=2, progress=False)
    predict_files([source], tmp_path / "pred.root", ["classical", "default"], progress=False)
    summary = validate([tmp_path / "pred.root"], tmp_path / "report", studies=list(HEADLINE_STUDIES),
                       progress=False, formats=("png",))
    ml, classical = headline_numbers(summary, "default"), headline_numbers(summary, "classical")
    for key in bundled.BETTER_THAN_CLASSICAL:
        assert ml[key] < classical[key], f"{key}: bundled {ml[key]:.3g} vs classical {classical[key]:.3g}"
