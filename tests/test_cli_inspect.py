"""``xecreco inspect``: report on a good file, one line and a non-zero exit on bad ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xecreco.cli.main import main
from xecreco.io.batch import N_SENSORS
from xecreco.io.provenance import make_provenance
from xecreco.io.schema import SENTINEL
from xecreco.io.writer import RootWriter


def _run(capsys, *args):
    code = main(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_on_good_file(tmp_path, capsys):
    npho = np.full((10, N_SENSORS), 500.0, np.float32)
    time = np.full((10, N_SENSORS), 1e-7, np.float32)
    npho[:, :10] = SENTINEL  # 10 dead sensors per event
    time[:, 10:30] = SENTINEL  # 20 sensors without a time
    path = tmp_path / "good.root"
    with RootWriter(path, tree="tree", provenance=make_provenance(tag="unit")) as writer:
        writer.write({"npho": npho, "time": time, "run": np.zeros(10, np.int32),
                      "event": np.arange(10, dtype=np.int32),
                      "energyTruth": np.full(10, 0.0528, np.float32), "custom": np.ones(10)})
    code, out, err = _run(capsys, path, "--max-events", 4)
    assert code == 0 and err == ""
    assert "tree: 10 entries" in out
    assert "npho (float[4760])" in out
    assert "energyTruth (float)" in out and "missing: timeTruth" in out
    assert "custom (double)" in out
    assert "first 4 events" in out
    assert f"invalid npho {100 * 10 / N_SENSORS:.3g}%" in out
    assert f"invalid time {100 * 30 / N_SENSORS:.3g}%" in out

    code, out, _ = _run(capsys, path, "--json")
    report = json.loads(out)
    assert code == 0
    assert report["entries"] == 10 and report["validity"]["events"] == 10
    assert report["validity"]["npho_sentinel"] == 100 and report["validity"]["time_sentinel"] == 200
    assert report["groups"]["truth"]["found"] == {"energyTruth": "float"}
    assert json.loads(report["provenance"])["tag"] == "unit"
    code, out, _ = _run(capsys, path)
    assert "records: tag" in out


def test_custom_tree_name(input_file_factory, capsys):
    path, _ = input_file_factory(3, tree="events")
    code, out, _ = _run(capsys, path, "--tree", "events")
    assert code == 0 and "events: 3 entries" in out


def _bad_files(tmp_path, input_file_factory):
    text = tmp_path / "notes.txt"
    text.write_text("not root\n" * 100)
    good, _ = input_file_factory(20)
    truncated = tmp_path / "truncated.root"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    no_time, _ = input_file_factory(2, name="no_time.root", rename={"time": "tsensor"})
    empty, _ = input_file_factory(0, name="empty.root")
    return {
        "missing": (tmp_path / "missing.root", "file not found"),
        "text": (text, "not a ROOT file"),
        "truncated": (truncated, "truncated"),
        "missing branch": (no_time, "no required branch 'time'"),
        "empty tree": (empty, "0 entries"),
        "missing tree": (good, "no tree 'nosuchtree'"),
    }


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "missing branch", "empty tree",
                                  "missing tree"])
def test_bad_input_one_line(tmp_path, input_file_factory, capsys, case):
    path, expected = _bad_files(tmp_path, input_file_factory)[case]
    extra = ["--tree", "nosuchtree"] if case == "missing tree" else []
    code, out, err = _run(capsys, path, *extra)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xecreco: error: ") and expected in lines[0]
    assert "Traceback" not in err
