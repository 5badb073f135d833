"""``xecreco info`` and ``xecreco geometry`` through the CLI entry point."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from xecreco import __version__
from xecreco.cli.main import main
from xecreco.geometry import design_geometry


def _read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_info_lists_versions_reconstructors_and_faces(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"xecreco {__version__}" in out
    assert "python 3." in out and "numpy " in out and "uproot " in out
    assert "reconstructors:" in out
    assert "4760 sensors (4092 MPPC, 668 PMT)" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert lines["inner"].split()[1] == "4092" and "r = 64.97 cm" in lines["inner"]
    assert lines["outer"].split()[1] == "234" and "r = 106.27 cm" in lines["outer"]
    for face, count in (("us", "144"), ("ds", "144"), ("top", "73"), ("bottom", "73")):
        assert lines[face].split()[1] == count


def test_geometry_writes_design_table(tmp_path, capsys):
    out = tmp_path / "sensors.csv"
    assert main(["geometry", "-o", str(out)]) == 0
    assert "wrote 4760 sensors" in capsys.readouterr().out
    rows = _read_csv(out)
    assert list(rows[0]) == ["id", "face", "type", "x", "y", "z", "nx", "ny", "nz", "u", "v", "w"]
    assert len(rows) == 4760
    geo = design_geometry()
    xyz = np.array([[float(r[k]) for k in "xyz"] for r in rows])
    normal = np.array([[float(r[k]) for k in ("nx", "ny", "nz")] for r in rows])
    uvw = np.array([[float(r[k]) for k in "uvw"] for r in rows])
    assert np.allclose(xyz, geo.position, atol=1e-6)
    assert np.allclose(normal, geo.normal, atol=1e-8)
    assert np.allclose(uvw, geo.uvw, atol=1e-6)
    assert [int(r["id"]) for r in rows] == list(range(4760))
    faces = [r["face"] for r in rows]
    assert faces.count("inner") == 4092 and faces.count("outer") == 234
    assert faces.count("us") == 144 and faces.count("ds") == 144
    assert faces.count("top") == 73 and faces.count("bottom") == 73
    assert rows[4091]["type"] == "MPPC" and rows[4092]["type"] == "PMT"
    assert rows[4750]["face"] == "outer"
    assert not any("-0.000000," in line for line in out.read_text().splitlines())
    assert [p.name for p in tmp_path.iterdir()] == ["sensors.csv"]  # no temporary left


def test_geometry_asbuilt(tmp_path, reference_dir):
    out = tmp_path / "asbuilt.csv"
    source = reference_dir / "sensor_directions.txt"
    assert main(["geometry", "-o", str(out), "--asbuilt", str(source)]) == 0
    rows = _read_csv(out)
    ref = np.loadtxt(reference_dir / "sensor_directions.txt")
    xyz = np.array([[float(r[k]) for k in "xyz"] for r in rows])
    assert np.allclose(xyz, ref[:, 4:7], atol=1e-6)
    assert [r["face"] for r in rows][4596] == "top"


@pytest.mark.parametrize("bad", ["missing", "garbage"])
def test_geometry_bad_asbuilt_is_one_line_error(tmp_path, capsys, bad):
    source = tmp_path / "dump.txt"
    if bad == "garbage":
        source.write_text("1 2 3\n")
    out = tmp_path / "sensors.csv"
    assert main(["geometry", "-o", str(out), "--asbuilt", str(source)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xecreco: error:") and "dump.txt" in err and "\n" not in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == ([source] if bad == "garbage" else [])


def test_geometry_missing_output_folder(tmp_path, capsys):
    assert main(["geometry", "-o", str(tmp_path / "nope" / "s.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_geometry_requires_output(capsys):
    assert main(["geometry"]) == 2
    assert "--output" in capsys.readouterr().err
