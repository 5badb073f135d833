"""Validation inputs: missing truth, bad files, labelled (raw vs recovered) comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from xecreco.errors import UserError
from xecreco.validation import validate
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file

from validation_helpers import BAD, GOOD, close


@pytest.fixture(scope="module")
def pred_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pred") / "pred.root"
    write_prediction_file(path, synthetic_predictions(800, {"good": GOOD, "bad": BAD}, seed=3))
    return path


def test_missing_truth_skips_studies_with_a_note(tmp_path):
    arrays = synthetic_predictions(500, {"good": GOOD}, seed=5)
    for name in ("timeTruth", "nPileup", "pileupEnergy", "pileupTime", "emiAng"):
        del arrays[name]
    path = write_prediction_file(tmp_path / "p.root", arrays)
    summary = validate([path], tmp_path / "rep",
                       studies=["timing", "pileup", "angle", "deadchannels"],
                       progress=False, bootstrap_replicas=5)
    assert "timeTruth" in summary["skipped"]["timing"]
    assert "nPileup" in summary["skipped"]["pileup"]
    assert "emiAng" in summary["skipped"]["angle"]
    assert "deadchannels" in summary["studies"]
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "Skipped: missing truth branch(es): timeTruth" in html


def test_no_runnable_study_is_a_user_error(tmp_path):
    arrays = synthetic_predictions(200, {"good": GOOD}, seed=5)
    del arrays["timeTruth"]
    path = write_prediction_file(tmp_path / "p.root", arrays)
    with pytest.raises(UserError, match="no validation study can run.*timeTruth"):
        validate([path], tmp_path / "rep", studies=["timing"], progress=False)
    assert not (tmp_path / "rep" / "index.html").exists()


def test_bad_inputs_are_user_errors(tmp_path, pred_file):
    with pytest.raises(UserError, match="no such prediction file"):
        validate([tmp_path / "nope.root"], tmp_path / "r", progress=False)
    junk = tmp_path / "junk.root"
    junk.write_bytes(b"not a root file at all")
    with pytest.raises(UserError, match="not a readable ROOT file"):
        validate([junk], tmp_path / "r", progress=False)
    with pytest.raises(UserError, match="no tree 'other'"):
        validate([pred_file], tmp_path / "r", tree="other", progress=False)
    with pytest.raises(UserError, match="not found; available: bad, good"):
        validate([pred_file], tmp_path / "r", recos=["cnn"], progress=False)
    with pytest.raises(UserError, match="unknown study"):
        validate([pred_file], tmp_path / "r", studies=["magic"], progress=False)
    with pytest.raises(UserError, match="one label per file"):
        validate([pred_file], tmp_path / "r", labels=["a", "b"], progress=False)


def test_labelled_files_are_matched_by_run_event(tmp_path):
    raw = synthetic_predictions(3000, {"classical": BAD}, seed=11)
    fixed = synthetic_predictions(3000, {"classical": GOOD}, seed=11)  # same truth, same events
    # shuffle the second file and drop some events: matching must use (run, event)
    order = np.random.default_rng(0).permutation(3000)[:2500]
    fixed = {k: v[order] for k, v in fixed.items()}
    p1 = write_prediction_file(tmp_path / "raw.root", raw)
    p2 = write_prediction_file(tmp_path / "fixed.root", fixed)
    summary = validate([p1, p2], tmp_path / "rep", labels=["raw", "inpainted"],
                       studies=["deadchannels", "timing"], progress=False, bootstrap_replicas=10)
    assert summary["n_events"] == 2500
    dead = summary["studies"]["deadchannels"]["series"]
    ratio = dead["classical (inpainted)"]["time"]["ratio_to_first_label"]
    assert 0.4 < ratio < 0.6  # 60 ps vs 120 ps
    assert dead["classical (raw)"]["time"]["ratio_to_first_label"] == 1.0
    timing = summary["studies"]["timing"]["series"]
    assert close(timing["classical (inpainted)"]["sigma_ps"], 60.0, rel=0.05)
    assert any("without a match" in n for n in summary["notes"])


def test_labelled_files_with_a_dead_count_keep_label_reco_efficiency(tmp_path):
    # a per-event dead count that varies: the scan vs the count fills the summary entries first;
    # the entries must still carry the label, reconstruction and efficiency of their series
    n_dead = np.random.default_rng(5).integers(0, 20, 1000).astype(np.int32)
    paths = []
    for label, model, seed in (("raw", BAD, 21), ("inpainted", GOOD, 21)):
        arrays = synthetic_predictions(1000, {"classical": model}, seed=seed)
        arrays["nDead"] = n_dead
        paths.append(write_prediction_file(tmp_path / f"{label}.root", arrays))
    summary = validate(paths, tmp_path / "rep", labels=["raw", "inpainted"],
                       studies=["deadchannels"], progress=False, bootstrap_replicas=10)
    series = summary["studies"]["deadchannels"]["series"]
    for label in ("raw", "inpainted"):
        entry = series[f"classical ({label})"]
        assert "energy_vs_dead_count" in entry
        assert entry["label"] == label
        assert entry["reco"] == "classical"
        assert entry["efficiency"] is not None


def test_predicted_uncertainties_give_pulls(tmp_path):
    from dataclasses import replace

    arrays = synthetic_predictions(1500, {"nn": replace(GOOD, with_errors=True)}, seed=9)
    path = write_prediction_file(tmp_path / "p.root", arrays)
    summary = validate([path], tmp_path / "rep", studies=["energy"], progress=False,
                       bootstrap_replicas=10, formats=("png",))
    pull = summary["studies"]["energy"]["series"]["nn"]["pull"]
    # Gaussian core of unit width plus the low-side tail: sigma68 slightly above 1
    assert 1.0 < pull["sigma68"]["value"] < 1.3
    assert abs(pull["median"]["value"]) < 0.2


def test_all_failed_reconstruction_and_tiny_sample_do_not_crash(tmp_path):
    """A reconstruction whose every event failed, on a sample too small for most bins: every
    study still runs, failed fits and empty bins are null in summary.json, never NaN."""
    import json
    from dataclasses import replace

    arrays = synthetic_predictions(300, {"ok": GOOD, "broken": replace(GOOD, failure_fraction=1.0)},
                                   seed=4)
    path = write_prediction_file(tmp_path / "p.root", arrays)
    summary = validate([path], tmp_path / "rep", progress=False, bootstrap_replicas=5,
                       formats=("png",))
    assert summary["efficiency"]["broken"]["efficiency"] == 0.0
    assert summary["efficiency"]["broken"]["status_counts"] == {"3": 300}
    broken = summary["studies"]["energy"]["series"]["broken"]["by_depth"]["all"]
    assert broken["status"] == "failed" and broken["sigma_upper_percent"]["value"] is None
    scan = summary["studies"]["position"]["series"]["ok"]["u"]["vs_w_cm"]
    assert any(b["status"] == "empty" and b["sigma"]["value"] is None for b in scan)
    text = (tmp_path / "rep" / "summary.json").read_text()
    assert "NaN" not in text
    json.loads(text)


def test_unlabelled_files_are_concatenated(tmp_path):
    a = write_prediction_file(tmp_path / "a.root",
                              synthetic_predictions(700, {"good": GOOD}, seed=1))
    b = write_prediction_file(tmp_path / "b.root",
                              synthetic_predictions(500, {"good": GOOD}, seed=2, start_event=700))
    summary = validate([a, b], tmp_path / "rep", studies=["timing"], progress=False,
                       bootstrap_replicas=5, formats=("png",))
    assert summary["n_events"] == 1200
    assert summary["efficiency"]["good"]["n_ok"] == \
        summary["studies"]["timing"]["series"]["good"]["n_used"]
