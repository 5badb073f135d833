"""The simulation as a tool: config files, files on disk, reproducibility, CLI, dead channels."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.errors import UserError
from xecreco.io.schema import PILEUP_TRUTH_BRANCHES, SIM_EXTRA_BRANCHES, TRUTH_BRANCHES
from xecreco.io.writer import read_provenance
from xecreco.sim import SimConfig, simulate_events, simulate_file
from xecreco.sim.dead import dead_mask
from xecreco.sim.response import make_calibration

REPO = Path(__file__).resolve().parents[1]


def _read(path, tree="tree"):
    with uproot.open(path) as handle:
        return handle[tree].arrays(library="ak")


# --- configuration -----------------------------------------------------------------------------


def test_default_yaml_is_the_builtin_default():
    assert SimConfig.from_yaml(REPO / "configs" / "sim-default.yaml") == SimConfig()


def test_yaml_overrides_and_unknown_key_suggestion(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("source: flat\nenergy_min_mev: 20\npileup_rate_hz: 1.0e6\n")
    config = SimConfig.from_yaml(good)
    assert (config.source, config.energy_min_mev, config.pileup_rate_hz) == ("flat", 20, 1e6)
    assert config.mppc_pde == SimConfig().mppc_pde
    bad = tmp_path / "bad.yaml"
    bad.write_text("moliere_radius: 4.5\n")
    with pytest.raises(UserError, match="unknown config key 'moliere_radius'; did you mean 'moliere_radius_cm'"):
        SimConfig.from_yaml(bad)
    with pytest.raises(UserError, match="source 'muon' unknown"):
        SimConfig(source="muon")
    with pytest.raises(UserError, match="missing.yaml does not exist"):
        SimConfig.from_yaml(tmp_path / "missing.yaml")
    typed = tmp_path / "typed.yaml"
    typed.write_text("n_deposits: many\n")
    with pytest.raises(UserError, match=r"typed\.yaml: config key 'n_deposits': expected int, "
                                        r"got 'many'"):
        SimConfig.from_yaml(typed)


def test_calibration_is_a_fixed_detector_property():
    config = SimConfig()
    is_mppc = np.arange(4760) < 4092
    a = make_calibration(config, is_mppc)
    b = make_calibration(config, is_mppc)
    np.testing.assert_array_equal(a.true_efficiency, b.true_efficiency)
    rel = a.true_efficiency[is_mppc] / config.mppc_pde
    assert np.std(rel) == pytest.approx(config.efficiency_spread, rel=0.1)
    err = a.calibrated_efficiency / a.true_efficiency
    assert np.std(err) == pytest.approx(config.calibration_error, rel=0.1)
    other = make_calibration(config.replace(calibration_seed=8), is_mppc)
    assert not np.allclose(other.true_efficiency, a.true_efficiency)


# --- files ---------------------------------------------------------------------------------------


def test_small_file_has_every_branch_and_provenance(sim_file_small):
    arrays = _read(sim_file_small)
    assert len(arrays) == 300
    clean_copies = {"nphoClean", "timeClean"}  # written only when channels are dead
    for name in ("npho", "time", "run", "event", *TRUTH_BRANCHES, *SIM_EXTRA_BRANCHES,
                 *PILEUP_TRUTH_BRANCHES):
        if name not in clean_copies:
            assert name in arrays.fields, name
    assert not clean_copies & set(arrays.fields)
    npho = ak.to_numpy(arrays["npho"])
    assert npho.shape == (300, 4760)
    np.testing.assert_array_equal(ak.to_numpy(arrays["event"]), np.arange(300))
    time = ak.to_numpy(arrays["time"])
    valid = time < 9e9
    assert 0.05 < valid.mean() < 0.5  # only well-lit sensors are timed
    assert np.all(np.abs(time[valid]) < 1e-6)  # seconds
    assert np.all(ak.to_numpy(arrays["nPileup"]) == 0)
    assert not np.any(ak.to_numpy(arrays["dead"]))
    prov = read_provenance(sim_file_small)
    sim = prov["simulation"]
    assert sim["seed"] == 20260101 and sim["events"] == 300
    assert SimConfig.from_dict(sim["config"]) == SimConfig()
    assert sim["stats"]["events"] == 300 and "photons_not_converted" in sim["stats"]


def test_dead_channels_carry_sentinel_and_clean_copies(sim_file_pileup_dead):
    arrays = _read(sim_file_pileup_dead)
    dead = ak.to_numpy(arrays["dead"])
    npho, time = ak.to_numpy(arrays["npho"]), ak.to_numpy(arrays["time"])
    clean_npho, clean_time = ak.to_numpy(arrays["nphoClean"]), ak.to_numpy(arrays["timeClean"])
    assert dead[0].sum() == round(0.02 * 4760)
    assert np.all(dead == dead[0])  # one fixed mask for the whole file
    assert np.all(npho[dead] == np.float32(1e10)) and np.all(time[dead] == np.float32(1e10))
    np.testing.assert_array_equal(npho[~dead], clean_npho[~dead])
    np.testing.assert_array_equal(time[~dead], clean_time[~dead])
    assert np.all(np.abs(clean_npho[dead]) < 1e9)  # undamaged values kept
    counts = ak.to_numpy(arrays["nPileup"])
    assert counts.mean() == pytest.approx(1.0, abs=0.2)
    assert np.array_equal(ak.to_numpy(ak.num(arrays["pileupEnergy"])), counts)
    energies = ak.to_numpy(ak.flatten(arrays["pileupEnergy"]))
    assert np.all((energies > 0) & (energies <= 0.05283 + 1e-6))  # GeV
    w = ak.to_numpy(ak.flatten(arrays["pileupW"]))
    assert np.all((w > 0) & (w < 42))


def test_dead_list_file(tmp_path):
    listing = tmp_path / "dead.txt"
    listing.write_text("# dead sensors\n3, 17\n4759 100\n")
    mask = dead_mask(SimConfig(dead_list=str(listing)))
    assert sorted(np.flatnonzero(mask)) == [3, 17, 100, 4759]
    listing.write_text("3 4760\n")
    with pytest.raises(UserError, match=":1: sensor id 4760 is outside"):
        dead_mask(SimConfig(dead_list=str(listing)))
    listing.write_text("12 x\n")
    with pytest.raises(UserError, match="'x' is not a sensor id"):
        dead_mask(SimConfig(dead_list=str(listing)))


def test_same_seed_same_contents_whatever_jobs(tmp_path):
    config = SimConfig(chunk_events=40, pileup_rate_hz=2.5e6, dead_fraction=0.01)
    one = tmp_path / "one.root"
    two = tmp_path / "two.root"
    stats1 = simulate_file(one, 100, config, seed=11, jobs=1, progress=False)
    stats2 = simulate_file(two, 100, config, seed=11, jobs=2, progress=False)
    assert stats1 == stats2
    a, b = _read(one), _read(two)
    for name in a.fields:
        assert ak.all(ak.ravel(a[name]) == ak.ravel(b[name])), name
    # and the file equals the in-memory simulation of the same seed
    memory = simulate_events(100, config, seed=11)
    np.testing.assert_array_equal(ak.to_numpy(a["npho"]), memory["npho"])
    other = simulate_events(100, config, seed=12)
    assert not np.array_equal(other["npho"], memory["npho"])
    # events are tied to their numbers: a later start continues the same sequence
    tail = simulate_events(60, config, seed=11, start_event=40)
    np.testing.assert_array_equal(tail["npho"], memory["npho"][40:])
    np.testing.assert_array_equal(tail["event"], np.arange(40, 100))


def test_non_converted_photons_are_counted_not_written(tmp_path):
    # a long attenuation length: many photons cross the xenon without converting
    config = SimConfig(attenuation_lengths_cm=[60.0] * 5, attenuation_high_energy_cm=60.0)
    path = tmp_path / "thin.root"
    stats = simulate_file(path, 120, config, seed=2, progress=False)
    assert len(_read(path)) == 120
    lost_fraction = stats["photons_not_converted"] / (stats["photons_not_converted"] + 120)
    assert 0.35 < lost_fraction < 0.75  # about exp(-41 cm / 60 cm) plus side exits
    assert read_provenance(path)["simulation"]["stats"]["photons_not_converted"] == \
        stats["photons_not_converted"]


def test_failed_run_leaves_no_file(tmp_path, monkeypatch):
    import xecreco.sim.runner as runner

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(runner, "simulate_chunk", broken)
    path = tmp_path / "out.root"
    with pytest.raises(RuntimeError):
        simulate_file(path, 10, SimConfig(), progress=False)
    assert list(tmp_path.iterdir()) == []


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_simulate(tmp_path, capsys):
    from xecreco.cli.main import main

    out = tmp_path / "cli.root"
    status = main(["simulate", "-n", "30", "-o", str(out), "--source", "17.6,52.83", "--seed", "3",
                   "--dead", "0.01", "--pileup-rate", "1e6", "--no-progress"])
    assert status == 0
    arrays = _read(out)
    assert set(np.unique(np.round(ak.to_numpy(arrays["energyTruth"]), 7))) <= {0.0176, 0.05283}
    assert ak.to_numpy(arrays["dead"])[0].sum() == 48
    assert "wrote 30 events" in capsys.readouterr().out
    flat = tmp_path / "flat.root"
    args = ["simulate", "-n", "20", "-o", str(flat), "--energy", "20:30", "--no-progress"]
    assert main(args) == 0
    energy = ak.to_numpy(_read(flat)["energyTruth"])
    assert np.all((energy >= 0.020) & (energy <= 0.030))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "muons"], "--source 'muons'"),
        (["--energy", "60:15"], "need 0 < LOW < HIGH"),
        (["--dead", "nofile.txt"], "neither a fraction"),
        (["--dead", "1.5"], "must be in [0, 1)"),
    ],
)
def test_cli_simulate_bad_options(tmp_path, capsys, args, message):
    from xecreco.cli.main import main

    out = tmp_path / "x.root"
    assert main(["simulate", "-n", "5", "-o", str(out), "--no-progress", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_simulate_bad_config_key(tmp_path, capsys):
    from xecreco.cli.main import main

    config = tmp_path / "sim.yaml"
    config.write_text("pileup_rate: 3\n")
    status = main(["simulate", "-n", "5", "-o", str(tmp_path / "x.root"), "--config", str(config)])
    assert status == 2
    assert "did you mean 'pileup_rate_hz'" in capsys.readouterr().err
