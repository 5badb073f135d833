"""Simulation identifiers (run numbers) and conflicting options (issue 18 items 1 and 6)."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from xecreco.errors import UserError
from xecreco.io.writer import read_provenance
from xecreco.sim import SimConfig, simulate_events, simulate_file
from xecreco.sim.config import RUN_FROM_SEED_OFFSET


def _ids(path):
    with uproot.open(path) as handle:
        arrays = handle["tree"].arrays(["run", "event"], library="np")
    return arrays["run"], arrays["event"]


def test_run_number_follows_the_seed_unless_given():
    config = SimConfig(chunk_events=10)
    a = simulate_events(5, config, seed=1)
    b = simulate_events(5, config, seed=11)
    assert set(a["run"]) == {RUN_FROM_SEED_OFFSET + 1} and set(b["run"]) == {1011}
    assert a["run"].dtype == np.int32
    np.testing.assert_array_equal(b["event"], np.arange(5))
    # different seeds never share (run, event)
    pairs = {(int(r), int(e)) for r, e in zip(a["run"], a["event"])}
    assert not pairs & {(int(r), int(e)) for r, e in zip(b["run"], b["event"])}
    fixed = simulate_events(3, config.replace(run_number=77), seed=1, start_event=40)
    assert set(fixed["run"]) == {77}
    np.testing.assert_array_equal(fixed["event"], [40, 41, 42])
    with pytest.raises(UserError, match="give --run"):
        simulate_events(2, config, seed=2**31)
    with pytest.raises(UserError, match="--seed must be >= 0"):
        simulate_events(2, config, seed=-3)


def test_cli_run_option_and_provenance(tmp_path, capsys):
    from xecreco.cli.main import main

    auto, fixed = tmp_path / "auto.root", tmp_path / "fixed.root"
    assert main(["simulate", "-n", "4", "-o", str(auto), "--seed", "7", "--no-progress"]) == 0
    assert "run 1007, events 0-3" in capsys.readouterr().out
    assert main(["simulate", "-n", "4", "-o", str(fixed), "--seed", "7", "--run", "12",
                 "--first-event", "100", "--no-progress"]) == 0
    run, event = _ids(auto)
    assert set(run) == {1007}
    run, event = _ids(fixed)
    assert set(run) == {12}
    np.testing.assert_array_equal(event, [100, 101, 102, 103])
    sim = read_provenance(fixed)["simulation"]
    assert sim["run"] == 12 and sim["config"]["run_number"] == 12 and sim["start_event"] == 100
    assert read_provenance(auto)["simulation"]["run"] == 1007


def test_file_run_number_in_provenance(tmp_path):
    path = tmp_path / "s.root"
    simulate_file(path, 3, SimConfig(), seed=20, progress=False)
    assert read_provenance(path)["simulation"]["run"] == 1020
    assert set(_ids(path)[0]) == {1020}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--energy", "20:30", "--source", "li"], "--energy 20:30 draws a flat spectrum but "
                                                  "--source li"),
        (["--energy", "20:30", "--source", "17.6,52.83"], "--source 17.6,52.83"),
        (["--dead", "LIST", "--dead-groups", "2"], "--dead-groups 2 draws dead channels but"),
        (["--run", "0"], "--run"),
        (["--seed", "-1"], "--seed"),
        (["--dead-groups", "500"], "dead_groups 500 exceeds the 132 readout groups"),
    ],
)
def test_cli_conflicting_options_are_one_line_errors(tmp_path, capsys, args, message):
    from xecreco.cli.main import main

    listing = tmp_path / "dead.txt"
    listing.write_text("1 2 3\n")
    args = [str(listing) if a == "LIST" else a for a in args]
    out = tmp_path / "x.root"
    status = main(["simulate", "-n", "5", "-o", str(out), "--no-progress", *args])
    assert status == 2
    err = capsys.readouterr().err
    assert message in err
    assert not out.exists()


def test_cli_energy_with_flat_source_is_fine(tmp_path):
    from xecreco.cli.main import main

    out = tmp_path / "flat.root"
    assert main(["simulate", "-n", "6", "-o", str(out), "--energy", "20:30", "--source", "flat",
                 "--no-progress"]) == 0
    with uproot.open(out) as handle:
        energy = handle["tree"]["energyTruth"].array(library="np")
    assert np.all((energy >= 0.020) & (energy <= 0.030))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"energies_mev": [17.6]}, "energies_mev is given but source is 'signal'"),
        ({"dead_list": "LIST", "dead_fraction": 0.02}, "dead_list fixes the dead channels"),
        ({"dead_list": "LIST", "dead_groups": 1}, "dead_list fixes the dead channels"),
        ({"gate_start_ns": 50.0, "gate_end_ns": 40.0}, "need gate_start_ns < gate_end_ns"),
        ({"gate_start_ns": -100.0, "gate_end_ns": -10.0}, "gate_end_ns -10.0 ns must be > 0"),
        ({"run_number": -4}, "run_number must be in"),
        ({"dead_group_rows": 0}, "dead_group_rows >= 1"),
    ],
)
def test_config_conflicts_are_errors(tmp_path, values, message):
    listing = tmp_path / "dead.txt"
    listing.write_text("1 2 3\n")
    values = {k: (str(listing) if v == "LIST" else v) for k, v in values.items()}
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        SimConfig.from_dict(values)


def test_yaml_conflict_names_the_file(tmp_path):
    path = tmp_path / "sim.yaml"
    path.write_text("source: li\nenergies_mev: [17.6, 52.83]\n")
    with pytest.raises(UserError, match=r"sim\.yaml: energies_mev is given but source is 'li'"):
        SimConfig.from_yaml(path)


def test_pileup_and_events_ids_survive_awkward(tmp_path):
    events = simulate_events(4, SimConfig(pileup_rate_hz=3e6, chunk_events=2), seed=3)
    assert set(events["run"]) == {1003}
    assert len(ak.to_list(events["pileupGateFraction"])) == 4


def test_deeply_nested_yaml_is_one_user_error(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(UserError, match=r"deep\.yaml: nested too deeply"):
        SimConfig.from_yaml(path)
