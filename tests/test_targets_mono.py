"""Targets without spread (a mono-energetic sample): one clear line, never a 7e-18 scale."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.normalization import TargetScaling, has_spread
from xecreco.train.targets import fit_target_scaling

SIGNAL_GEV = 0.05283


def test_identical_float64_values_have_no_spread():
    energy = np.full(1000, SIGNAL_GEV)
    assert 0 < energy.std() < 1e-15  # float64 rounding: the cause of the 7e-18 scale
    assert not has_spread(energy.mean(), energy.std())
    assert TargetScaling.fit({"energy": energy}).scale["energy"] == 1.0
    assert has_spread(SIGNAL_GEV, 1e-4 * SIGNAL_GEV)
    assert has_spread(0.0, 1e-3)  # a target centred on 0 (u) keeps its spread


def test_fit_target_scaling_names_the_target_and_the_way_out():
    rng = np.random.default_rng(3)
    values = {"u": rng.normal(0, 10, 500), "energy": np.full(500, SIGNAL_GEV)}
    with pytest.raises(UserError, match=r"target 'energy' has no spread in sample\.root.*"
                                        r"--energy 15:60.*drop 'energy' from task\.targets") as err:
        fit_target_scaling(values, "sample.root")
    assert "\n" not in str(err.value)
    values["energy"] = rng.uniform(0.015, 0.06, 500)
    scaling = fit_target_scaling(values)
    assert scaling.scale["energy"] == pytest.approx(values["energy"].std())


def test_training_on_a_mono_energetic_sample_is_one_clear_error(sim_file_small, tmp_path):
    """`xecreco simulate` signal photons, all at 52.83 MeV: the energy target has no spread."""
    from xecreco.train.api import train

    config = {"data": {"train_files": [str(sim_file_small)], "batch_size": 16,
                       "scaling_events": 200},
              "run": {"max_steps": 1, "progress": False}}
    with pytest.raises(UserError, match=r"target 'energy' has no spread in the first \d+ "
                                        r"training events of .*signal_small\.root"):
        train(config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "last.pt").exists()
    config["task"] = {"targets": ["u", "v", "w", "time", "direction"]}
    config["data"]["val_fraction"] = 0.1
    config["checkpoint"] = {"best_metric": "weighted"}
    result = train(config, run_dir=tmp_path / "run2")
    assert result["step"] == 1
