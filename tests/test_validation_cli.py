"""`xecreco validate` command line."""

from __future__ import annotations

import json
import sys
import types

import pytest

from xecreco.cli.main import main
from xecreco.validation.synthetic import synthetic_predictions, write_prediction_file

from validation_helpers import BAD, GOOD


@pytest.fixture(scope="module")
def pred_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "pred.root"
    write_prediction_file(path, synthetic_predictions(1500, {"good": GOOD, "bad": BAD}, seed=7))
    return path


def test_cli_validate_one_study_one_reco(pred_file, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["validate", str(pred_file), "-o", str(out), "--study", "timing", "--reco", "good",
               "--no-progress", "--bootstrap", "10"])
    assert rc == 0
    assert str(out / "index.html") in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["studies"]) == ["timing"]
    pngs = sorted(p.stem for p in (out / "plots").glob("*.png"))
    pdfs = sorted(p.stem for p in (out / "plots").glob("*.pdf"))
    assert pngs == pdfs == ["timing_residual", "timing_vs"]
    html = (out / "index.html").read_text()
    assert 'href="plots/timing_vs.pdf"' in html and 'src="plots/timing_vs.png"' in html
    assert list(summary["studies"]["timing"]["series"]) == ["good"]


def test_cli_user_errors_are_one_line(pred_file, tmp_path, capsys):
    rc = main(["validate", str(tmp_path / "missing.root"), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "no such prediction file" in err
    rc = main(["validate", "-o", str(tmp_path / "r")])
    assert rc == 2 and "no prediction files given" in capsys.readouterr().err
    rc = main(["validate", str(pred_file), "-o", str(tmp_path / "r"), "--reco", "nope"])
    assert rc == 2 and "available: bad, good" in capsys.readouterr().err
    rc = main(["validate", "--data", str(pred_file), "-o", str(tmp_path / "r")])
    assert rc == 2 and "-r/--reconstructor" in capsys.readouterr().err


def test_cli_data_mode_predicts_then_validates(pred_file, tmp_path, monkeypatch):
    """--data calls predict_files into DIR/predictions.root, then validates that file."""
    calls = {}

    def fake_predict_files(inputs, output, reconstructors, **kwargs):
        calls.update(inputs=inputs, output=output, reconstructors=reconstructors, **kwargs)
        import shutil

        shutil.copy(pred_file, output)
        return {"events": 1500}

    module = types.ModuleType("xecreco.models.pipelines.predict")
    module.predict_files = fake_predict_files
    monkeypatch.setitem(sys.modules, "xecreco.models.pipelines.predict", module)
    out = tmp_path / "rep"
    rc = main(["validate", "--data", "sim.root", "-r", "classical", "-o", str(out), "--study",
               "timing", "--no-progress"])
    assert rc == 0
    assert calls["inputs"] == ["sim.root"] and calls["reconstructors"] == ["classical"]
    assert calls["output"] == str(out / "predictions.root") and calls["out_tree"] == "reco"
    assert (out / "predictions.root").is_file() and (out / "index.html").is_file()
