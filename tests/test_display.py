"""The event display: the unrolled layout follows the geometry, cells carry the right sensor's
value, dead/invalid sensors and markers are drawn where they belong, and ``xecreco display``
reads the right events, refuses mismatched predictions and writes PDF pages / PNG files."""

from __future__ import annotations

import re

import awkward as ak
import numpy as np
import pytest
from matplotlib.colors import LogNorm

from xecreco.errors import UserError
from xecreco.geometry import Face, design_geometry, face_ids, uvw_to_xyz
from xecreco.geometry import constants as C
from xecreco.validation import display as D

N = C.N_SENSORS


def _centroids(collection) -> np.ndarray:
    return np.array([p.vertices[:4 if len(p.vertices) <= 5 else 6].mean(axis=0)
                     for p in collection.get_paths()])


def _collection(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, f"expected one collection '{gid}'"
    return found[0]


# --- layout -------------------------------------------------------------------------------------


def test_layout_puts_every_sensor_at_its_geometry_position():
    geo = design_geometry()
    lay = D.unrolled_layout()
    assert lay.centre.shape == (N, 2) and len(lay.polygons) == N
    inner = face_ids(Face.INNER)
    np.testing.assert_allclose(lay.centre[inner], geo.uvw[inner, :2], atol=1e-9)
    # the inner cell of id 44 r + c is row r (top first), column c (upstream first)
    assert lay.centre[0, 1] > lay.centre[44, 1] and lay.centre[1, 0] > lay.centre[0, 0]
    # outer and side faces keep the sensor's azimuth on the inner-face scale
    for face in (Face.OUTER, Face.US, Face.DS):
        ids = face_ids(face)
        np.testing.assert_allclose(lay.centre[ids, 1], geo.uvw[ids, 1], atol=1e-9)
    # top/bottom at their z, further out for larger radius
    for face, sign in ((Face.TOP, 1), (Face.BOTTOM, -1)):
        ids = face_ids(face)
        np.testing.assert_allclose(lay.centre[ids, 0], geo.position[ids, 2], atol=1e-9)
        r = np.hypot(geo.position[ids, 0], geo.position[ids, 1])
        np.testing.assert_allclose(sign * lay.centre[ids, 1] - r, D.INNER_HALF_V - C.R_INNER)
    # outer: z to the right, centred on outer_u0; US left of inner, DS right of it
    ids = face_ids(Face.OUTER)
    np.testing.assert_allclose(lay.centre[ids, 0] - lay.outer_u0, geo.position[ids, 2])
    assert lay.face_boxes[Face.US][1] < lay.face_boxes[Face.INNER][0]
    assert lay.face_boxes[Face.DS][0] > lay.face_boxes[Face.INNER][1]
    assert lay.face_boxes[Face.OUTER][0] > lay.face_boxes[Face.DS][1]


def test_cells_of_different_sensors_do_not_overlap():
    lay = D.unrolled_layout()
    # faces occupy disjoint boxes
    boxes = list(lay.face_boxes.values())
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            overlap = min(a[1], b[1]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[2], b[2])
            assert not overlap, (list(lay.face_boxes)[i], list(lay.face_boxes)[j])
    # within a face, each cell centre lies in its own cell only (the dense outer patch included)
    from matplotlib.path import Path

    for face in Face:
        ids = face_ids(face)
        for i in ids:
            inside = Path(lay.polygons[i]).contains_points(lay.centre[ids])
            assert inside.sum() == 1 and inside[np.flatnonzero(ids == i)[0]]


# --- drawing ------------------------------------------------------------------------------------


def test_draw_unrolled_gives_each_cell_its_sensor_value_and_marks_dead_and_invalid():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(1)
    values = rng.uniform(1.0, 1000.0, N)
    dead = np.zeros(N, bool)
    dead[[5, 4100, 4320, 4600, 4750]] = True
    invalid = np.zeros(N, bool)
    invalid[[7, 5, 4500]] = True  # 5 is also dead: drawn as dead only
    fig, ax = plt.subplots()
    D.draw_unrolled(values, ax=ax, log=True, dead=dead, invalid=invalid,
                    markers=[D.Marker(3.0, -12.5, "truth", "truth"),
                             D.Marker(-8.0, 20.0, "classical")], cbar_label="npho")
    cells = _collection(ax, "sensors")
    lay = D.unrolled_layout()
    np.testing.assert_allclose(_centroids(cells), lay.centre, atol=1e-9)
    shown = np.asarray(cells.get_array().filled(np.nan) if np.ma.isMaskedArray(cells.get_array())
                       else cells.get_array())
    masked = dead | invalid
    np.testing.assert_allclose(shown[~masked], values[~masked])
    assert np.all(np.isnan(shown[masked]))
    np.testing.assert_allclose(_centroids(_collection(ax, "dead")),
                               lay.centre[np.flatnonzero(dead)])
    np.testing.assert_allclose(_centroids(_collection(ax, "invalid")), lay.centre[[7, 4500]])
    assert isinstance(cells.norm, LogNorm)
    markers = [ln for ln in ax.lines if ln.get_gid() == "marker"]
    assert [(ln.get_xdata()[0], ln.get_ydata()[0]) for ln in markers] == [(3.0, -12.5),
                                                                          (-8.0, 20.0)]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == ["truth", "classical"] and "dead sensor (5)" in labels
    plt.close(fig)


def test_draw_unrolled_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="4760"):
        D.draw_unrolled(np.zeros(100))
    with pytest.raises(ValueError, match="dead"):
        D.draw_unrolled(np.zeros(N), dead=np.zeros(10, bool))


def test_inner_face_entry_lies_on_the_flight_line_at_the_inner_radius():
    uvw = np.array([5.0, 12.0, 7.0])
    u, v = D.inner_face_entry(uvw_to_xyz(uvw), np.zeros(3))
    # from the origin the line keeps its azimuth and reaches r = R at z scaled by R / r
    assert v == pytest.approx(12.0)
    assert u == pytest.approx(5.0 * C.R_INNER / (C.R_INNER + 7.0))
    # from an offset vertex the crossing is on the segment and on the cylinder
    vertex = np.array([1.0, -2.0, 3.0])
    point = uvw_to_xyz(uvw)
    hit = D.inner_face_entry(point, vertex)
    hit_xyz = uvw_to_xyz(np.array([hit[0], hit[1], 0.0]))
    t = (hit_xyz - vertex) / (point - vertex)
    assert np.allclose(t, t[0]) and 0 < t[0] < 1
    assert D.inner_face_entry(np.array([-10.0, 0, 0]), np.zeros(3)) is None  # never reaches R


# --- events from files ----------------------------------------------------------------------------


def _write(path, arrays, tree):
    from xecreco.io.writer import RootWriter

    with RootWriter(path, tree=tree) as w:
        w.write(arrays)
    return path


@pytest.fixture
def event_files(tmp_path):
    """An input file of 4 events (run 5, events 10-13, one dead sensor per event, pile-up) and
    a prediction file of it with reconstructions 'classical' and 'default'."""
    n = 4
    rng = np.random.default_rng(3)
    npho = rng.exponential(300.0, (n, N)).astype(np.float32)
    time = (1e-8 + rng.normal(0, 1e-9, (n, N))).astype(np.float32)
    dead = np.zeros((n, N), bool)
    dead[np.arange(n), [11, 222, 4400, 4700]] = True
    npho[dead] = 1e10
    time[dead] = 1e10
    time[:, 300] = 1e10  # no valid time there
    uvw = np.array([[1.0, 2.0, 3.0], [-10.0, 30.0, 1.0], [20.0, -40.0, 6.0], [0.0, 0.0, 2.0]])
    counts = np.array([0, 2, 1, 0])
    inp = {
        "npho": npho, "time": time, "dead": dead,
        "run": np.full(n, 5, np.int32), "event": np.arange(10, 10 + n, dtype=np.int64),
        "energyTruth": np.array([0.0528, 0.040, 0.030, 0.050]),
        "timeTruth": np.zeros(n), "uvwTruth": uvw, "xyzTruth": uvw_to_xyz(uvw),
        "xyzVTX": np.zeros((n, 3)), "nPileup": counts.astype(np.int32),
        "pileupEnergy": ak.unflatten(np.array([0.01, 0.02, 0.005]), counts),
        "pileupU": ak.unflatten(np.array([5.0, 80.0, -3.0]), counts),  # 80 cm: off the face
        "pileupV": ak.unflatten(np.array([-20.0, 0.0, 15.0]), counts),
        "pileupW": ak.unflatten(np.array([2.0, 2.0, 4.0]), counts),
    }
    pred = {"run": inp["run"], "event": inp["event"], "entry": np.arange(n, dtype=np.int64)}
    for name, shift in (("classical", 0.5), ("default", -1.0)):
        pred[f"{name}_energy"] = (inp["energyTruth"] * 1.01).astype(np.float32)
        for k, q in enumerate("uvw"):
            pred[f"{name}_{q}"] = (uvw[:, k] + shift).astype(np.float32)
        pred[f"{name}_status"] = np.zeros(n, np.int32)
    return (_write(tmp_path / "in.root", inp, "tree"), _write(tmp_path / "pred.root", pred, "reco"),
            inp)


def test_display_event_marks_truth_pileup_and_each_reconstruction(event_files):
    import matplotlib.pyplot as plt

    path, pred, inp = event_files
    fig = D.display_event(path, 1, predictions=[pred])
    titles = {ax.get_title().split(" ")[0]: ax for ax in fig.axes}
    ax_npho, ax_time = titles["npho"], titles["sensor"]
    for ax in (ax_npho, ax_time):
        points = {ln.get_label(): (ln.get_xdata()[0], ln.get_ydata()[0])
                  for ln in ax.lines if ln.get_gid() == "marker"}
        assert points["classical: w = 1.5 cm"] == pytest.approx((-9.5, 30.5))
        assert points["default: w = 0.0 cm"] == pytest.approx((-11.0, 29.0))
        truth = [k for k in points if k.startswith("truth")][0]
        assert points[truth] == pytest.approx((-10.0, 30.0)) and "40.0 MeV" in truth
        pile = [ln for ln in ax.lines if ln.get_gid() == "marker"
                and ln.get_marker() == D.MARKER_STYLES["pileup"]["marker"]]
        assert [(p.get_xdata()[0], p.get_ydata()[0]) for p in pile] == [(5.0, -20.0)]
        assert "1 on the inner face, 1 elsewhere" in pile[0].get_label()
        dead = _centroids(_collection(ax, "dead"))
        np.testing.assert_allclose(dead, D.unrolled_layout().centre[[222]])
    # the time panel greys the sensors without a valid time (sentinel or under 50 photons), the
    # npho panel has no invalid non-dead sensor
    lay = D.unrolled_layout()
    no_time = (inp["time"][1] > 9e9) | (inp["npho"][1] < 50.0)
    no_time &= ~inp["dead"][1]
    assert no_time[300] and no_time.sum() > 1
    np.testing.assert_allclose(_centroids(_collection(ax_time, "invalid")),
                               lay.centre[np.flatnonzero(no_time)])
    assert len(_collection(ax_npho, "invalid").get_paths()) == 0
    title = fig._suptitle.get_text()
    assert "run 5  event 11" in title and "E true 40.00 MeV" in title
    assert "classical 40.40 MeV" in title and "default 40.40 MeV" in title
    plt.close(fig)


def test_display_writes_pdf_pages_and_numbered_pngs_atomically(event_files, tmp_path):
    path, pred, _ = event_files
    out = tmp_path / "out" / "ev.pdf"
    out.parent.mkdir()
    assert D.display_event(path, [0, 2, 3], predictions=[pred], out=out) == [out]
    assert len(re.findall(rb"/Type\s*/Page[^s]", out.read_bytes())) == 3  # one page per entry
    png = tmp_path / "out" / "ev.png"
    written = D.display_event(path, [0, 3], out=png)
    assert [p.name for p in written] == ["ev_0.png", "ev_3.png"]
    assert D.display_event(path, 2, out=png) == [png]
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["ev.pdf", "ev.png", "ev_0.png", "ev_3.png"]  # no temporary file left
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_display_errors_are_one_clear_line(event_files, tmp_path):
    from xecreco.cli.main import main

    path, pred, inp = event_files
    with pytest.raises(UserError, match="entry 4 is out of range.*4 entries"):
        D.display_event(path, 4)
    with pytest.raises(UserError, match="not found"):
        D.display_event(tmp_path / "missing.root", 0)
    # a prediction file of other events: same entries, other (run, event)
    arrays = {"run": np.full(4, 6, np.int32), "event": np.arange(10, 14, dtype=np.int64),
              "entry": np.arange(4, dtype=np.int64), "classical_u": np.zeros(4, np.float32),
              "classical_status": np.zeros(4, np.int32)}
    bad = _write(tmp_path / "other.root", arrays, "reco")
    with pytest.raises(UserError, match=r"\(run, event\) = \(6, 11\).*\(5, 11\).*not made from"):
        D.display_event(path, 1, predictions=[bad])
    short = _write(tmp_path / "short.root", {k: v[:2] for k, v in arrays.items()}, "reco")
    with pytest.raises(UserError, match="no prediction for input entry 3"):
        D.display_event(path, 3, predictions=[short])
    with pytest.raises(UserError, match=r"\.png or \.pdf"):
        D.display_event(path, 0, out=tmp_path / "a.jpg")
    assert main(["display", str(path), "--entry", "9", "-o", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_cli_display_writes_each_entry(event_files, tmp_path, capsys):
    from xecreco.cli.main import main

    path, pred, _ = event_files
    out = tmp_path / "cli.png"
    rc = main(["display", str(path), "--entry", "1", "--entry", "2", "-p", str(pred),
               "-o", str(out)])
    assert rc == 0
    assert (tmp_path / "cli_1.png").is_file() and (tmp_path / "cli_2.png").is_file()
    assert "cli_1.png" in capsys.readouterr().out
