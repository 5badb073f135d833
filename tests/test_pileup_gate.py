"""The pile-up gate: a main network with a pileup head, a pile-up expert stored in its
checkpoint (``xecreco bundle --pileup-expert``), in predict and in the ONNX export; and the
frozen fine-tuning (``model.trainable``) that adds such a head to a trained network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from _nn_helpers import TINY, make_checkpoint, sim_batch
from train_helpers import tiny_config
from xecreco.errors import UserError
from xecreco.models.bundled import bundle_checkpoint
from xecreco.models.regressor.gated import (PileupGate, PileupGatedReconstructor, gate_masks,
                                            merge_expert)
from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
from xecreco.train.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
HEADS = ["energy", "time", "u", "v", "w", "direction", "pileup"]


# ------------------------------------------------------------------------------ the rule


def test_merge_takes_the_expert_where_both_probabilities_say_pileup():
    gate = PileupGate(run_threshold=0.2, use_threshold=0.5)
    primary = {"energy": np.array([1.0, 2.0, 3.0, 4.0, 5.0]),
               "pileup_prob": np.array([0.1, 0.3, 0.9, 0.25, 0.95]),
               "status": np.array([0, 0, 0, 0, 1], np.int32)}
    run = gate_masks(gate, primary["pileup_prob"], primary["status"])
    # event 4 was not reconstructed (status 1): the expert does not run there
    np.testing.assert_array_equal(run, [False, True, True, True, False])
    expert = {"energy": np.array([20.0, 30.0, 40.0]), "pileup_prob": np.array([0.4, 0.8, 0.6]),
              "status": np.array([0, 0, 0], np.int32),
              "pileup_energy": np.array([0.001, 0.02, 0.01])}
    out = merge_expert(primary, expert, run, gate)
    np.testing.assert_array_equal(out["energy"], [1.0, 2.0, 30.0, 40.0, 5.0])
    # the expert's probability where it ran, the primary's (below RUN) elsewhere
    np.testing.assert_array_equal(out["pileup_prob"], [0.1, 0.4, 0.8, 0.6, 0.95])
    np.testing.assert_array_equal(out["pileup_energy"], [0.0, 0.001, 0.02, 0.01, 0.0])
    # a cut at USE selects exactly the events with the expert's outputs (status OK)
    np.testing.assert_array_equal((out["pileup_prob"] >= 0.5) & (out["status"] == 0),
                                  out["energy"] != primary["energy"])
    assert primary["energy"][2] == 3.0  # the inputs are not modified


@pytest.mark.parametrize("values", [(0.0, 0.5), (0.5, 1.0), (-0.1, 0.5), ("a", 0.5)])
def test_gate_thresholds_are_probabilities(values):
    with pytest.raises(UserError, match="must be a probability in"):
        PileupGate(*values)


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def gated_checkpoint(tmp_path_factory):
    """A main network and an expert (other weights, a pileup_energy head more) bundled into
    one file with a gate that sends some of the sample events to the expert."""
    folder = tmp_path_factory.mktemp("gate")
    main, expert = folder / "main.pt", folder / "expert.pt"
    make_checkpoint(main, {**TINY, "heads": HEADS}, seed=0)
    make_checkpoint(expert, {**TINY, "heads": HEADS + ["pileup_energy"]}, seed=1)
    probe = reconstructor_from_checkpoint(main).reconstruct(sim_batch(12, seed=3))
    run = float(np.quantile(probe["pileup_prob"], 0.4))  # the expert runs on about 60 %
    expert_probe = reconstructor_from_checkpoint(expert).reconstruct(sim_batch(12, seed=3))
    use = float(np.quantile(expert_probe["pileup_prob"], 0.3))
    out = folder / "gated.pt"
    bundle_checkpoint(main, out, pileup_expert=expert, pileup_gate=(run, use))
    return {"main": main, "expert": expert, "gated": out, "gate": PileupGate(run, use)}


def test_gated_checkpoint_reconstructs_with_the_right_network(gated_checkpoint):
    batch = sim_batch(12, seed=3)
    gated = reconstructor_from_checkpoint(gated_checkpoint["gated"], name="default")
    assert isinstance(gated, PileupGatedReconstructor)
    assert gated.outputs[-1] == "pileup_energy" and "pileup_prob" in gated.outputs
    assert len(gated.members) == 1  # explanations see the main network
    main = reconstructor_from_checkpoint(gated_checkpoint["main"]).reconstruct(batch)
    expert = reconstructor_from_checkpoint(gated_checkpoint["expert"]).reconstruct(batch)
    out = gated.reconstruct(batch)
    gate = gated_checkpoint["gate"]
    ran = main["pileup_prob"] >= gate.run_threshold
    used = ran & (expert["pileup_prob"] >= gate.use_threshold)
    assert 0 < used.sum() < ran.sum() < len(batch)  # all three kinds of event are there
    for q in ("energy", "u", "w", "time", "theta"):
        np.testing.assert_array_equal(out[q][~used], main[q][~used])  # bit for bit
        np.testing.assert_allclose(out[q][used], expert[q][used], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["pileup_prob"][ran], expert["pileup_prob"][ran], atol=1e-6)
    np.testing.assert_array_equal(out["pileup_prob"][~ran], main["pileup_prob"][~ran])
    assert np.all(out["pileup_energy"][~ran] == 0)
    np.testing.assert_allclose(out["pileup_energy"][ran], expert["pileup_energy"][ran],
                               atol=1e-7)
    # prepared inputs (the predict pipeline's reader thread) give the same outputs
    again = gated.reconstruct(batch, gated.prepare(batch))
    np.testing.assert_array_equal(again["energy"], out["energy"])


def test_gated_checkpoint_exports_one_graph_that_agrees_with_predict(gated_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    from xecreco.models.export import export_checkpoint

    result = export_checkpoint(gated_checkpoint["gated"], tmp_path / "g.onnx", check_events=24,
                               seed=3)
    assert result["outputs"][-2:] == ["pileup_energy", "status"]
    assert result["tolerance_ratio"] <= 1.0
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "g.onnx")).metadata_props}
    assert "pileup_gate" in meta and "pileup_expert_model_config" in meta


def test_bundle_refuses_an_expert_that_does_not_fit(gated_checkpoint, tmp_path):
    no_head = tmp_path / "nohead.pt"
    make_checkpoint(no_head, {**TINY, "heads": HEADS[:-1]}, seed=2)
    with pytest.raises(UserError, match="needs a 'pileup' head in the main network"):
        bundle_checkpoint(no_head, tmp_path / "a.pt", pileup_expert=gated_checkpoint["expert"],
                          pileup_gate=(0.1, 0.2))
    with pytest.raises(UserError, match="the pile-up expert has no 'pileup' head"):
        bundle_checkpoint(gated_checkpoint["main"], tmp_path / "b.pt", pileup_expert=no_head,
                          pileup_gate=(0.1, 0.2))
    with pytest.raises(UserError, match="needs the gate's thresholds"):
        bundle_checkpoint(gated_checkpoint["main"], tmp_path / "c.pt",
                          pileup_expert=gated_checkpoint["expert"])
    with pytest.raises(UserError, match="holds no pile-up expert"):
        bundle_checkpoint(gated_checkpoint["main"], tmp_path / "d.pt", pileup_gate=(0.1, 0.2))
    assert not list(tmp_path.glob("[abcd].pt"))
    # new thresholds for the expert a bundled file holds
    bundle_checkpoint(gated_checkpoint["gated"], tmp_path / "e.pt", pileup_gate=(0.3, 0.6))
    assert load_checkpoint(tmp_path / "e.pt")["pileup_gate"] == {"run_threshold": 0.3,
                                                                 "use_threshold": 0.6}


def test_bundle_cli_gate_options(gated_checkpoint, tmp_path):
    from cli.main import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["bundle", str(gated_checkpoint["main"]), "-o", str(tmp_path / "g.pt"),
                             "--pileup-expert", str(gated_checkpoint["expert"]),
                             "--pileup-gate", "0.2", "0.5"])
    assert ok.exit_code == 0, ok.output
    assert isinstance(reconstructor_from_checkpoint(tmp_path / "g.pt"), PileupGatedReconstructor)
    bad = runner.invoke(cli, ["bundle", str(gated_checkpoint["main"]), "-o",
                              str(tmp_path / "h.pt"), "--pileup-expert",
                              str(gated_checkpoint["expert"]), "--pileup-gate", "0.2", "1.5"])
    assert bad.exit_code == 2 and "--pileup-gate" in bad.output
    assert not (tmp_path / "h.pt").exists()


def test_a_malformed_gate_is_one_line_naming_the_file(gated_checkpoint, tmp_path):
    payload = load_checkpoint(gated_checkpoint["gated"])
    payload["pileup_gate"] = {"run_threshold": 0.2}
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, payload)
    with pytest.raises(UserError, match=r"broken.pt: malformed 'pileup_gate' entry"):
        reconstructor_from_checkpoint(broken)
    with pytest.raises(UserError, match="cannot form an ensemble"):
        reconstructor_from_checkpoint([gated_checkpoint["gated"], gated_checkpoint["main"]])


# ------------------------------------------------------------------------------ model.trainable


def test_trainable_trains_only_the_named_head_and_keeps_the_calibrations(tmp_path, capsys):
    import dataclasses

    from train_helpers import TinyRegressor, tiny_task
    from xecreco.train.api import train

    class WithPileup(TinyRegressor):
        def __init__(self, hidden):
            super().__init__(hidden=hidden)
            self.heads["pileup"] = torch.nn.Linear(hidden, 1)

    def build(config):
        hidden = int(config.get("hidden", 16))
        return WithPileup(hidden) if config.get("pileup") else TinyRegressor(hidden=hidden)

    task = dataclasses.replace(tiny_task(), build_model=build)
    first = train(tiny_config(epochs=1), run_dir=tmp_path / "a", task=task)
    start = load_checkpoint(first["best_checkpoint"])
    start["energy_calibration"] = {"kind": "marker"}  # what xecreco calibrate would add
    init = tmp_path / "start.pt"
    save_checkpoint(init, start)
    cfg = tiny_config(max_steps=6)
    cfg["model"]["overrides"]["pileup"] = True
    cfg["model"]["init_from"] = str(init)
    cfg["model"]["trainable"] = ["heads.pileup"]
    train(cfg, run_dir=tmp_path / "b", task=task)
    assert "2 tensors train, the rest are frozen; keeping energy_calibration" in \
        capsys.readouterr().out
    tuned = load_checkpoint(tmp_path / "b" / "last.pt")
    best_weights = load_checkpoint(tmp_path / "b" / "best.pt")["state_dict"]  # the EMA
    for name, value in start["state_dict"].items():  # frozen: exactly the start values
        torch.testing.assert_close(tuned["state_dict"][name], value, atol=0, rtol=0)
        torch.testing.assert_close(tuned["ema_state_dict"][name], value, atol=0, rtol=0)
        torch.testing.assert_close(best_weights[name], value, atol=0, rtol=0)
    assert tuned["energy_calibration"] == {"kind": "marker"}
    assert load_checkpoint(tmp_path / "b" / "best.pt")["energy_calibration"] == {"kind": "marker"}
    cfg["optim"]["lr"] = 1e-12  # the same start, barely a step: the head's initial values
    train(cfg, run_dir=tmp_path / "b0", task=task)
    initial = load_checkpoint(tmp_path / "b0" / "last.pt")["state_dict"]
    assert not torch.allclose(tuned["state_dict"]["heads.pileup.weight"],
                              initial["heads.pileup.weight"])  # the head trained
    cfg["optim"]["lr"] = 1e-2
    # when a loaded tensor trains too, the calibrations no longer hold and are dropped
    cfg["model"]["trainable"] = ["heads.pileup", "body"]
    train(cfg, run_dir=tmp_path / "c", task=task)
    assert "energy_calibration" not in load_checkpoint(tmp_path / "c" / "last.pt")


def test_trainable_needs_init_from_and_known_prefixes(tmp_path):
    from train_helpers import tiny_task
    from xecreco.train.api import train
    from xecreco.train.config import load_config

    with pytest.raises(UserError, match="'model.trainable'.*set model.init_from"):
        load_config({"model": {"trainable": ["heads.pileup"]}})
    with pytest.raises(UserError, match="'model.trainable': a non-empty list"):
        load_config({"model": {"trainable": [], "init_from": "x.pt"}})
    first = train(tiny_config(epochs=1), run_dir=tmp_path / "a", task=tiny_task())
    cfg = tiny_config(max_steps=1)
    cfg["model"]["init_from"] = first["best_checkpoint"]
    cfg["model"]["trainable"] = ["heads.pilup"]
    with pytest.raises(UserError, match="'heads.pilup' names no parameter"):
        train(cfg, run_dir=tmp_path / "b", task=tiny_task())


def test_explain_of_a_gated_checkpoint_says_what_it_shows(gated_checkpoint, sim_file_small,
                                                          tmp_path):
    from xecreco.validation.explain import explain

    summary = explain([sim_file_small], str(gated_checkpoint["gated"]), tmp_path / "page",
                      events=60, gradient_events=8, progress=False)
    notes = " ".join(summary["notes"])
    gate = gated_checkpoint["gate"]
    assert f"pileup_prob >= {gate.use_threshold:g}" in notes and "main network's" in notes
