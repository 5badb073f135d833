"""The opt-in speed paths of issue 13: torch.compile with a clean fallback, and bf16 autocast,
whose physics must stay at the fp32 result."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _reference_events import reference_batch
from xecreco.models import bundled
from xecreco.train import acceleration
from xecreco.train.acceleration import autocast, compile_module, cpu_has_native_bf16

torch.set_num_threads(1)

needs_bundled = pytest.mark.skipif(not bundled.BUNDLED_REGRESSOR.is_file(),
                                   reason="this install ships no bundled regressor")


def test_compile_without_a_compiler_runs_eagerly(monkeypatch, capsys):
    monkeypatch.setattr(acceleration.shutil, "which", lambda name: None)
    module = nn.Linear(3, 2)
    assert compile_module(module) is module
    assert "needs a C++ compiler" in capsys.readouterr().err
    assert compile_module(module, enabled=False) is module


def test_a_failing_compile_falls_back_to_the_eager_module(capsys):
    module = nn.Linear(3, 2)

    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no luck")

    wrapped = acceleration._CompiledOrEager(module, broken)
    x = torch.randn(4, 3)
    assert torch.equal(wrapped(x), module(x))
    assert "running eagerly" in capsys.readouterr().err
    assert torch.equal(wrapped(x), module(x))  # and stays eager without a second note
    assert capsys.readouterr().err == ""


def test_training_with_run_compile_and_no_compiler_trains(tmp_path, monkeypatch):
    from train_helpers import tiny_config, tiny_task
    from xecreco.train.config import load_config
    from xecreco.train.loop import run_training

    monkeypatch.setattr(acceleration.shutil, "which", lambda name: None)
    cfg = load_config(tiny_config(epochs=1, compile=True))
    assert cfg.run.compile is True
    result = run_training(cfg, tmp_path / "run", task=tiny_task())
    assert result["finished"] and result["step"] > 0


def test_native_bf16_flag_and_precision_names():
    assert isinstance(cpu_has_native_bf16(), bool)
    with pytest.raises(ValueError, match="precision"):
        autocast("fp16")


def _outputs(precision: str, batch) -> dict[str, np.ndarray]:
    reco = bundled.bundled_regressor()
    with autocast(precision):
        return reco.reconstruct(batch)


@needs_bundled
def test_bf16_outputs_of_the_bundled_regressor_stay_at_fp32():
    """Energy within 0.5 % (rms 0.3 %; the fp32 light references carry it), positions within
    0.5 cm, time within 50 ps of the fp32 result on the 64 reference events."""
    batch = reference_batch()
    fp32, bf16 = _outputs("fp32", batch), _outputs("bf16", batch)
    assert np.array_equal(fp32["status"], bf16["status"])
    ratio = bf16["energy"] / fp32["energy"] - 1.0
    assert np.max(np.abs(ratio)) < 5e-3 and np.sqrt(np.mean(ratio ** 2)) < 3e-3
    for q in ("u", "v", "w"):
        assert np.max(np.abs(bf16[q] - fp32[q])) < 0.5, q  # cm
    assert np.max(np.abs(bf16["time"] - fp32["time"])) < 0.05  # ns


@needs_bundled
@pytest.mark.slow
def test_bf16_resolutions_on_2000_photons_within_one_percent_of_fp32(tmp_path):
    from xecreco.io.reader import iterate_batches
    from xecreco.sim import SimConfig, simulate_file
    from xecreco.validation.estimators import sigma68

    path = tmp_path / "flat.root"
    simulate_file(path, 2000, config=SimConfig(source="flat"), seed=1313, progress=False)
    batch = next(iterate_batches([path], truth="all", step_events=2000))
    fp32, bf16 = _outputs("fp32", batch), _outputs("bf16", batch)
    truth_uvw = np.asarray(batch.truth["uvwTruth"], dtype=np.float64)
    residuals = {
        "energy": lambda o: o["energy"] / batch.truth["energyTruth"] - 1.0,
        "u": lambda o: o["u"] - truth_uvw[:, 0],
        "v": lambda o: o["v"] - truth_uvw[:, 1],
        "w": lambda o: o["w"] - truth_uvw[:, 2],
        "time": lambda o: o["time"] - batch.truth["timeTruth"],
    }
    for name, residual in residuals.items():
        ok = (fp32["status"] == 0) & (bf16["status"] == 0)
        a = sigma68(residual(fp32)[ok], replicas=0).value
        b = sigma68(residual(bf16)[ok], replicas=0).value
        assert abs(b / a - 1.0) < 0.01, f"{name}: bf16 {b:.4g} vs fp32 {a:.4g}"
