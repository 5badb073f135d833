"""Dead-channel study per pattern (issue 14 item 3): the file's dead mask split into whole
readout groups and scattered channels, each pattern repaired and reconstructed on the same events
as the clean values, and the headline resolutions' losses against the clean label."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.geometry.constants import N_MPPC
from xecreco.sim import SimConfig, simulate_file
from xecreco.sim.dead import dead_group_ids, dead_mask, split_dead_mask
from xecreco.validation import validate
from xecreco.validation.deadpatterns import (
    file_dead_mask,
    pattern_masks,
    predict_patterns,
)
from xecreco.validation.headlines import HEADLINES
from xecreco.validation.studies.deadchannels import headline_losses
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file

from validation_helpers import GOOD


def test_split_dead_mask_into_groups_and_scattered_channels():
    config = SimConfig(dead_fraction=0.02, dead_groups=3, dead_seed=5)
    mask = dead_mask(config)
    grouped, scattered = split_dead_mask(mask)
    tiles = np.concatenate(dead_group_ids(config))
    expected = np.zeros_like(mask)
    expected[tiles] = True
    np.testing.assert_array_equal(grouped, expected)
    np.testing.assert_array_equal(scattered, mask & ~expected)
    # a tile with one live sensor is not a group: its dead sensors count as scattered
    partial = mask.copy()
    partial[tiles[0]] = False
    g2, s2 = split_dead_mask(partial)
    assert g2.sum() == grouped.sum() - len(dead_group_ids(config)[0])
    assert not np.any(g2 & s2) and np.array_equal(g2 | s2, partial)
    # per-event masks
    many = np.stack([mask, partial, np.zeros_like(mask)])
    g3, s3 = split_dead_mask(many)
    np.testing.assert_array_equal(g3[0], grouped)
    np.testing.assert_array_equal(g3[1], g2)
    assert not g3[2].any() and not s3[2].any()
    patterns = pattern_masks(mask)
    assert list(patterns) == ["clean", "scattered", "grouped", "grouped+scattered"]
    assert not patterns["clean"].any()
    np.testing.assert_array_equal(patterns["grouped+scattered"], mask)
    only_groups = pattern_masks(grouped)
    assert list(only_groups) == ["clean", "grouped"]
    assert not grouped[N_MPPC:].any()


def test_study_tables_headlines_of_earlier_studies(tmp_path):
    """The dead-channel study reads the headline numbers of the studies that ran before it
    (Context.results) and computes every label's loss against the first label."""
    from xecreco.validation.data import load_predictions
    from xecreco.validation.studies import deadchannels
    from xecreco.validation.studies.base import Context, StudyResult

    arrays = synthetic_predictions(300, {"nn": GOOD}, seed=2)
    files = [write_prediction_file(tmp_path / f"{k}.root", arrays) for k in ("a", "b")]
    data = load_predictions(files, labels=["clean", "grouped"])
    values = {"nn (clean)": 2.0, "nn (grouped)": 2.1}
    results = {}
    for key, study, path, _unit in HEADLINES:
        result = results.setdefault(study, StudyResult(study, study))
        for name, value in values.items():
            node = result.summary.setdefault(name, {})
            for part in path[:-1]:
                node = node.setdefault(part, {})
            # the energy of w < 2 cm is 3x worse in 'grouped'; the others 5 %
            factor = 3.0 if key == "energy_w_lt_2cm_percent" and "grouped" in name else 1.0
            node[path[-1]] = {"value": value * factor, "error": 0.01}
    ctx = Context(plot_dir=tmp_path / "plots", bootstrap_replicas=5, formats=("png",),
                  results=results)
    res = deadchannels.run(data, ctx)
    grouped = res.summary["nn (grouped)"]["headlines"]
    assert grouped["u_mm"] == {"value_mm": 2.1, "loss_percent": pytest.approx(5.0)}
    assert grouped["energy_w_lt_2cm_percent"]["loss_percent"] == pytest.approx(215.0)
    assert res.overall["headline_max_loss_percent"] == {"nn (grouped)": pytest.approx(215.0)}
    table = [t for t in res.tables if t.title.startswith("Headline resolutions")][0]
    assert table.rows[1][:3] == ["nn", "grouped", "6.3 (+215.0 %)"]
    assert table.rows[0][2] == "2"  # the reference label: its value, no loss


@pytest.mark.slow
def test_headline_losses_per_label(tmp_path):
    worse = replace(GOOD, position_sigma=(0.30, 0.20, 0.50), energy_sigma_deep=0.011)
    # same seed: the same events and the same noise draws, only the widths differ
    clean = synthetic_predictions(2000, {"nn": GOOD}, seed=21)
    grouped = synthetic_predictions(2000, {"nn": worse}, seed=21)
    files = [write_prediction_file(tmp_path / "clean.root", clean),
             write_prediction_file(tmp_path / "grouped.root", grouped)]
    summary = validate(files, tmp_path / "rep", labels=["clean", "grouped"], progress=False,
                       bootstrap_replicas=5, formats=("png",),
                       studies=["energy", "position", "timing", "angle", "deadchannels"])
    study = summary["studies"]["deadchannels"]
    heads = study["series"]["nn (grouped)"]["headlines"]
    assert heads["u_mm"]["loss_percent"] == pytest.approx(20.0, abs=2.0)
    assert heads["energy_w_ge_2cm_percent"]["loss_percent"] == pytest.approx(10.0, abs=2.5)
    for key in ("v_mm", "w_mm", "time_ps", "energy_w_lt_2cm_percent"):
        assert abs(heads[key]["loss_percent"]) < 1e-6  # identical residuals
    assert study["series"]["nn (grouped)"]["headlines_reference_label"] == "clean"
    assert all(v["loss_percent"] == 0.0 for v in study["series"]["nn (clean)"]["headlines"].values())
    assert study["overall"]["headline_max_loss_percent"]["nn (grouped)"] == pytest.approx(
        heads["u_mm"]["loss_percent"])
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Headline resolutions per label" in html and "(+" in html
    # without the headline studies: a note, no numbers
    alone = validate(files, tmp_path / "rep2", labels=["clean", "grouped"], progress=False,
                     bootstrap_replicas=5, formats=("png",), studies=["deadchannels"])
    dead = alone["studies"]["deadchannels"]
    assert any("run the energy, position, timing and angle studies" in n for n in dead["notes"])
    assert "headlines" not in dead["series"]["nn (grouped)"]


def test_headline_losses_function():
    keys = [k for k, *_ in HEADLINES]
    ref = dict.fromkeys(keys, 2.0)
    got = dict.fromkeys(keys, 2.1)
    got["u_mm"], ref["w_mm"] = None, 0.0
    loss = headline_losses(got, ref)
    assert loss["v_mm"] == pytest.approx(5.0)
    assert loss["u_mm"] is None and loss["w_mm"] is None


class _LightSum:
    """A cheap reconstructor for the pipeline test: energy = collected photons / 1e7."""

    name = "lightsum"
    outputs = ("energy",)

    def reconstruct(self, batch):
        npho = np.where(batch.valid_npho, batch.npho, 0.0).sum(axis=1)
        return {"energy": (npho / 1e7).astype(np.float32),
                "status": np.zeros(len(batch), dtype=np.int32)}


def _column(path, name="lightsum_energy") -> np.ndarray:
    import uproot

    with uproot.open(path) as handle:
        return handle["reco"][name].array(library="np")


@pytest.fixture(scope="module")
def sim_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("deadpat") / "sim.root"
    simulate_file(path, 120, config=SimConfig(dead_fraction=0.02, dead_groups=2, dead_seed=7),
                  seed=31, progress=False)
    return path


def test_patterns_are_the_file_pipeline_on_the_same_events(sim_file, tmp_path):
    """Every pattern is predicted on the same events; 'grouped+scattered' equals xecreco inpaint
    of the file followed by predict, 'clean' equals predict on nphoClean/timeClean."""
    from xecreco.models.pipelines.inpaint import inpaint_file
    from xecreco.models.pipelines.predict import predict_files

    mask = file_dead_mask(sim_file)
    np.testing.assert_array_equal(mask, dead_mask(SimConfig(dead_fraction=0.02, dead_groups=2,
                                                            dead_seed=7)))
    files, labels = predict_patterns([sim_file], [_LightSum()], tmp_path / "pat",
                                     inpainter="neighbour-average", progress=False)
    assert labels == ["clean", "scattered", "grouped", "grouped+scattered"]
    energy = {label: _column(path) for path, label in zip(files, labels)}
    repaired = tmp_path / "repaired.root"
    inpaint_file(sim_file, repaired, "neighbour-average", progress=False)
    predict_files([repaired], tmp_path / "ref.root", [_LightSum()], progress=False)
    predict_files([sim_file], tmp_path / "clean.root", [_LightSum()], progress=False,
                  branches={"npho": "nphoClean", "time": "timeClean"})
    for label, ref in (("grouped+scattered", "ref.root"), ("clean", "clean.root")):
        np.testing.assert_allclose(energy[label], _column(tmp_path / ref), rtol=1e-5)
    # the patterns differ from each other (fewer photons where groups were lost)
    assert not np.allclose(energy["grouped"], energy["clean"])
    assert not np.allclose(energy["scattered"], energy["grouped"])
    # the input summaries count each pattern's dead sensors, as predict on the damaged file does
    masks = pattern_masks(mask)
    for path, label in zip(files, labels):
        assert np.all(_column(path, "nDead") == masks[label].sum())
    predict_files([sim_file], tmp_path / "raw.root", [_LightSum()], progress=False)
    whole = files[labels.index("grouped+scattered")]
    np.testing.assert_array_equal(_column(whole, "nDead"), _column(tmp_path / "raw.root", "nDead"))
    np.testing.assert_allclose(_column(whole, "nphoSum"), _column(tmp_path / "raw.root", "nphoSum"),
                               rtol=1e-5)
    assert _column(whole, "nDead")[0] > 0


def test_dead_pattern_inputs_are_checked(sim_file, tmp_path):
    clean = tmp_path / "nodead.root"
    simulate_file(clean, 20, config=SimConfig(), seed=3, progress=False)
    with pytest.raises(UserError, match="has no nphoClean, timeClean branch: --dead-patterns needs"):
        file_dead_mask(clean)
    from xecreco.validation.api import validate_data

    with pytest.raises(UserError, match="--worst"):
        validate_data([sim_file], ["classical"], tmp_path / "r", dead_patterns=True, worst=3,
                      progress=False)
    with pytest.raises(UserError, match="--inpainter .* --dead-patterns"):
        validate_data([sim_file], ["classical"], tmp_path / "r", inpainter="local-fit",
                      progress=False)


def test_cli_dead_patterns_options_are_checked(tmp_path, capsys):
    from xecreco.cli.main import main

    rc = main(["validate", str(tmp_path / "p.root"), "-o", str(tmp_path / "r"),
               "--dead-patterns"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "use them with --data SIM.root" in err


@pytest.mark.slow
def test_cli_dead_patterns_report(sim_file, tmp_path, capsys):
    """validate --data SIM.root --dead-patterns end to end: the report's dead-channel study has
    the headline resolutions of every pattern, clean first with zero loss."""
    import json

    from xecreco.cli.main import main

    out = tmp_path / "rep"
    rc = main(["validate", "--data", str(sim_file), "-r", "classical", "--dead-patterns",
               "--inpainter", "neighbour-average", "-o", str(out), "--format", "png",
               "--bootstrap", "5", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"][0] == "clean" and len(summary["labels"]) == 4
    series = summary["studies"]["deadchannels"]["series"]
    assert list(series)[:1] == ["classical (clean)"]
    assert set(summary["studies"]["deadchannels"]["overall"]["headline_max_loss_percent"]) == {
        "classical (scattered)", "classical (grouped)", "classical (grouped+scattered)"}
    clean = series["classical (clean)"]["headlines"]
    assert clean["u_mm"]["value_mm"] > 0 and clean["u_mm"]["loss_percent"] == 0.0
    assert sorted((out / "dead_patterns").glob("*.root"))
