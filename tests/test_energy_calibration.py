"""Energy-response calibration of regressor checkpoints: the fit, its storage in the checkpoint,
its application in the one outputs-to-physical step, and `xecreco calibrate -r`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import uproot

from xecreco.cli.main import main
from xecreco.errors import UserError
from xecreco.models.regressor.calibration import (
    PAYLOAD_KEY,
    EnergyCalibration,
    EnergyCorrection,
    calibration_from_payload,
    fit_energy_calibration,
)
from xecreco.models.regressor.reconstructor import OutputsToPhysical, reconstructor_from_checkpoint
from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

from _nn_helpers import SCALING, make_checkpoint

torch.set_num_threads(1)

LINES_GEV = np.array([0.010, 0.025, 0.0528, 0.083, 0.100])


def response(e_gev):
    """A known nonlinear energy scale: +1.5 % at low energy falling to -1 % at 100 MeV."""
    return 1.015 - 0.025 * (np.asarray(e_gev) / 0.1) ** 2


def _sample(seed: int, lines=LINES_GEV, per_line: int = 20000):
    """(reco, true) GeV: each line smeared by 1.5 % with a low-side tail, scaled by response."""
    rng = np.random.default_rng(seed)
    true = np.repeat(lines, per_line)
    smear = rng.normal(0.0, 0.015, true.size) - rng.exponential(0.01, true.size) * (
        rng.random(true.size) < 0.3)
    return true * response(true) * (1.0 + smear), true


def test_a_known_nonlinearity_is_corrected_on_a_fresh_sample():
    reco, true = _sample(seed=1)
    cal = fit_energy_calibration(reco, true, LINES_GEV, min_events=200)
    assert np.allclose(cal.info["response_before"], np.median((reco / true).reshape(5, -1), 1))
    fresh_reco, fresh_true = _sample(seed=2)
    before = np.median((fresh_reco / fresh_true).reshape(5, -1), axis=1) - 1.0
    after = np.median((cal.apply(fresh_reco) / fresh_true).reshape(5, -1), axis=1) - 1.0
    assert np.abs(before).max() > 0.009  # the nonlinearity is there ...
    assert np.abs(after).max() < 0.001  # ... and gone at every line (statistics: 0.02 %)
    # between the knots the correction interpolates the response
    mid_reco, mid_true = _sample(seed=3, lines=np.array([0.040]))
    assert abs(np.median(cal.apply(mid_reco) / mid_true) - 1.0) < 0.002


def test_correction_is_monotone_keeps_the_end_ratios_and_torch_equals_numpy():
    cal = EnergyCalibration((0.0101, 0.0248, 0.101), (0.010, 0.025, 0.100))
    e = np.linspace(0.001, 0.2, 4001)
    g = cal.apply(e)
    assert np.all(np.diff(g) > 0)
    assert np.allclose(cal.apply(cal.reco_gev), cal.true_gev)
    assert np.isclose(cal.apply(0.005) / 0.005, 0.010 / 0.0101)  # ratio kept below the knots
    assert np.isclose(cal.apply(0.150) / 0.150, 0.100 / 0.101)  # and above
    value, slope = EnergyCorrection(cal)(torch.from_numpy(e))
    assert np.allclose(value.numpy(), g, rtol=1e-12)
    numeric = np.gradient(g, e)
    inside = np.abs(e[:, None] - np.asarray(cal.reco_gev)[None, :]).min(1) > 1e-4
    assert np.allclose(slope.numpy()[inside], numeric[inside], rtol=1e-6)


def test_fit_refuses_thin_lines_and_a_non_monotone_response():
    reco, true = _sample(seed=4, per_line=150)
    with pytest.raises(UserError, match="10 MeV line has 150 usable events"):
        fit_energy_calibration(reco, true, LINES_GEV, min_events=200)
    true = np.repeat([0.02, 0.04], 300)
    reco = np.where(true > 0.03, 0.019, 0.021)
    with pytest.raises(UserError, match="does not increase"):
        fit_energy_calibration(reco, true, [0.02, 0.04])


def test_stored_calibration_round_trips_and_bad_ones_are_one_line_errors():
    reco, true = _sample(seed=5)
    cal = fit_energy_calibration(reco, true, LINES_GEV, info={"source": "test"})
    back = EnergyCalibration.from_dict(cal.to_dict(), "x.pt")
    assert back == cal and back.info["source"] == "test"
    assert calibration_from_payload({PAYLOAD_KEY: cal.to_dict()}, "x.pt") == cal
    assert calibration_from_payload({}, "x.pt") is None
    with pytest.raises(UserError, match="x.pt: 'energy_calibration' is not an xecreco energy"):
        EnergyCalibration.from_dict({"reco_gev": [1, 2]}, "x.pt")
    bad = {**cal.to_dict(), "reco_gev": [0.02, 0.01, 0.05, 0.08, 0.1]}
    with pytest.raises(UserError, match="x.pt: bad energy calibration.*increase"):
        EnergyCalibration.from_dict(bad, "x.pt")


def test_outputs_to_physical_applies_the_calibration_to_energy_and_its_error():
    cal = EnergyCalibration((0.03, 0.06), (0.0303, 0.0594))
    heads = ("energy", "u")
    plain = OutputsToPhysical(heads, SCALING, False)
    calibrated = OutputsToPhysical(heads, SCALING, False, energy_calibration=cal)
    raw = {"energy": torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64),
           "energy_logvar": torch.zeros(3, dtype=torch.float64),
           "u": torch.zeros(3, dtype=torch.float64)}
    ref = torch.zeros(3, dtype=torch.float64)
    a, b = plain.member(raw, ref, None), calibrated.member(raw, ref, None)
    assert np.allclose(b["energy"].numpy(), cal.apply(a["energy"].numpy()))
    slope = EnergyCorrection(cal)(a["energy"])[1]
    assert np.allclose(b["energy_err"].numpy(), (a["energy_err"] * slope).numpy())
    assert torch.equal(a["u"], b["u"])


def _with_calibration(src: Path, dst: Path, cal: EnergyCalibration) -> Path:
    from xecreco.train.checkpoint import save_checkpoint

    payload = dict(load_checkpoint(src))
    payload[PAYLOAD_KEY] = cal.to_dict()
    save_checkpoint(dst, payload)
    return dst


def test_checkpoint_reconstructor_reads_the_stored_calibration(tmp_path, input_file_factory):
    from xecreco.io.reader import iterate_batches

    plain = tmp_path / "plain.pt"
    make_checkpoint(plain)
    cal = EnergyCalibration((0.03, 0.06), (0.0315, 0.0570))
    calibrated = _with_calibration(plain, tmp_path / "calibrated.pt", cal)
    batch = next(iterate_batches(input_file_factory(20)[0], step_events=20))
    a = reconstructor_from_checkpoint(plain).reconstruct(batch)
    b = reconstructor_from_checkpoint(calibrated).reconstruct(batch)
    assert np.allclose(b["energy"], cal.apply(a["energy"].astype(np.float64)), rtol=1e-6)
    assert not np.allclose(a["energy"], b["energy"])
    off = reconstructor_from_checkpoint(calibrated, energy_calibration=False).reconstruct(batch)
    assert np.array_equal(off["energy"], a["energy"])


@pytest.mark.slow
def test_calibrate_command_fits_a_checkpoint_on_a_scan(tmp_path):
    """`xecreco calibrate -r CKPT SCAN -o OUT`: the bundled model's scale error at three lines
    is removed on the fitting sample (exactly, by construction) and on a fresh one, and the raw
    response it records is the uncalibrated model's."""
    from xecreco.models.bundled import BUNDLED_REGRESSOR

    scans = {}
    for label, seed in (("fit", 71), ("fresh", 72)):
        scans[label] = tmp_path / f"scan_{label}.root"
        assert main(["simulate", "-n", "900", "--source", "17.6,52.83,83", "--seed", str(seed),
                     "-o", str(scans[label]), "--no-progress"]) == 0
    out = tmp_path / "calibrated.pt"
    assert main(["calibrate", "-r", str(BUNDLED_REGRESSOR), str(scans["fit"]), "-o", str(out),
                 "--min-line-events", "200", "--no-progress"]) == 0
    cal = calibration_from_payload(load_checkpoint(out), out)
    deep = tmp_path / "deep.pt"
    assert main(["calibrate", "-r", "default", str(scans["fit"]), "-o", str(deep),
                 "--min-line-events", "150", "--min-depth", "2", "--no-progress"]) == 0
    cal_deep = calibration_from_payload(load_checkpoint(deep), deep)
    # the bundled model carries its own calibration: the raw response is a copy without it
    raw = tmp_path / "default_regressor.pt"
    save_checkpoint(raw, {k: v for k, v in load_checkpoint(BUNDLED_REGRESSOR).items()
                          if k != PAYLOAD_KEY})
    assert cal_deep.info["min_depth_cm"] == 2.0 and cal.info["min_depth_cm"] == 0.0
    assert sum(cal_deep.info["events_per_line"]) < 0.85 * sum(cal.info["events_per_line"])
    assert cal.info["lines_MeV"] == pytest.approx([17.6, 52.83, 83.0], abs=1e-3)
    assert "calibrate" in cal.info["source"]
    for label, tolerance in (("fit", 1e-5), ("fresh", 0.004)):
        pred = tmp_path / f"pred_{label}.root"
        assert main(["predict", str(scans[label]), "-o", str(pred), "-r", str(out), "-r",
                     str(raw), "--name", "calibrated=cal", "--name",
                     "default_regressor=raw", "--no-progress"]) == 0
        with uproot.open(pred) as handle:
            t = handle["reco"].arrays(["cal_energy", "raw_energy", "energyTruth"], library="np")
        for i, line in enumerate((0.0176, 0.05283, 0.083)):
            on = np.abs(t["energyTruth"] - line) < 1e-6
            assert abs(np.median(t["cal_energy"][on] / t["energyTruth"][on]) - 1) < tolerance
            if label == "fit":  # the raw response is the one the fit recorded, line by line
                response = np.median(t["raw_energy"][on] / t["energyTruth"][on])
                assert response == pytest.approx(cal.info["response_before"][i], abs=1e-5)


def test_calibrate_r_mistakes_are_one_line(tmp_path, sim_file_small, capsys):
    from xecreco.models.bundled import BUNDLED_REGRESSOR

    out = tmp_path / "c.pt"
    assert main(["calibrate", "-r", str(BUNDLED_REGRESSOR), str(sim_file_small), "-o",
                 str(BUNDLED_REGRESSOR)]) == 2
    assert main(["calibrate", "-r", str(BUNDLED_REGRESSOR), str(sim_file_small), "-o", str(out),
                 "--no-progress"]) == 2  # a 52.83 MeV sample is no scan
    assert main(["calibrate", "-r", str(BUNDLED_REGRESSOR), str(sim_file_small), "-o", str(out),
                 "--pileup", str(sim_file_small)]) == 2
    assert main(["calibrate", str(sim_file_small), "-o", str(tmp_path / "c.json"),
                 "--min-depth", "2"]) == 2  # a classical calibration has no depth cut
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("xecreco: error:") for line in err), err
    assert "not a scan" in err[1] and "--pileup" in err[2] and "--min-depth" in err[3]
    assert not out.exists()
