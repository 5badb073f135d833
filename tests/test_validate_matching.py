"""validate --label: each label is scored against its own truth; samples that only share
(run, event) numbers are refused (issue 18 item 1)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from tests.validation_helpers import BAD, GOOD
from xecreco.cli.main import cli
from xecreco.errors import UserError
from xecreco.validation.data import load_predictions
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file


def _sample(path, n, seed, start_event=0):
    return write_prediction_file(path, synthetic_predictions(n, {"reco": GOOD}, seed=seed,
                                                             start_event=start_event))


def test_independent_samples_with_the_same_ids_are_refused(tmp_path):
    # two independent samples, both run 1 and events from 0: the old matching scored B's
    # reconstruction against A's truth
    a = _sample(tmp_path / "pa.root", 300, seed=1)
    b = _sample(tmp_path / "pb.root", 600, seed=11)
    with pytest.raises(UserError) as info:
        load_predictions([a, b], labels=["A", "B"])
    message = str(info.value)
    assert "\n" not in message
    assert "pa.root" in message and "pb.root" in message
    assert "energyTruth" in message and "300 of 300" in message
    assert "validate each sample on its own" in message


def test_cli_refuses_and_writes_no_report(tmp_path):
    a = _sample(tmp_path / "pa.root", 300, seed=1)
    b = _sample(tmp_path / "pb.root", 600, seed=11)
    result = CliRunner().invoke(cli, ["validate", str(a), str(b), "--label", "A", "--label", "B",
                                      "-o", str(tmp_path / "report"), "--no-progress",
                                      "--study", "energy", "--bootstrap", "2"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UserError)
    assert not (tmp_path / "report" / "summary.json").exists()


def test_variants_of_the_same_events_keep_their_own_truth(tmp_path):
    # raw vs "inpainted": same truth, different reconstruction quality and a shifted event order
    good = synthetic_predictions(200, {"reco": GOOD}, seed=3)
    bad = synthetic_predictions(200, {"reco": BAD}, seed=3)
    order = np.random.default_rng(0).permutation(200)
    shuffled = {k: v[order] for k, v in bad.items()}
    shuffled["nDead"] = shuffled["nDead"] + 5  # per-event counts may differ between variants
    a = write_prediction_file(tmp_path / "raw.root", good)
    b = write_prediction_file(tmp_path / "inp.root", shuffled)
    data = load_predictions([a, b], labels=["raw", "inp"])
    assert len(data) == 200
    truth_e = data.truth["energyTruth"]
    for series in data.series:
        residual = series.values["energy"] / truth_e - 1
        ok = series.ok("energy")
        # scored against the right truth: the width is the resolution, not the spread of energies
        assert np.percentile(np.abs(residual[ok]), 68) < 0.06


def test_the_offending_file_of_a_concatenated_label_is_named(tmp_path):
    a1 = _sample(tmp_path / "a1.root", 100, seed=1)
    a2 = _sample(tmp_path / "a2.root", 100, seed=2, start_event=100)
    b1 = write_prediction_file(tmp_path / "b1.root",
                               synthetic_predictions(100, {"reco": BAD}, seed=1))
    b2 = _sample(tmp_path / "b2.root", 100, seed=7, start_event=100)
    with pytest.raises(UserError, match="a2.root .*b2.root"):
        load_predictions([a1, a2, b1, b2], labels=["A", "A", "B", "B"])
