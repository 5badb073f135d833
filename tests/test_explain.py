"""xecreco explain: occlusion, gradients and attention of a reconstruction, and the page."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from xecreco.cli.main import main
from xecreco.geometry import Face, face_ids
from xecreco.io.reader import iterate_batches
from xecreco.models.regressor.reconstructor import CheckpointReconstructor, Member
from xecreco.models.regressor.network import build_model
from xecreco.normalization import NormalizationSpec
from xecreco.validation.explain import REQUIRED_TRUTH, explain
from xecreco.validation.explain.attention import capture_attention, fusion_attention, token_labels
from xecreco.validation.explain.gradients import face_sums, gradients, member_gradients
from xecreco.validation.explain.occlusion import mask_face, occlusion

from _nn_helpers import SCALING, make_checkpoint, randomise, tiny_config


def _blind_to_top(seed: int = 1) -> CheckpointReconstructor:
    """A tiny regressor (no light summary) whose top-face tokens do not depend on the input:
    the top pooler's output projection is zero, so nothing reads the top PMTs."""
    torch.manual_seed(seed)
    model = randomise(build_model(tiny_config(summary=None)), seed)
    with torch.no_grad():
        for pooler in model.encoder.poolers["top"]:
            pooler.proj.weight.zero_()
    model.eval()
    return CheckpointReconstructor([Member(model, NormalizationSpec(), SCALING, "blind")],
                                   "blind")


@pytest.fixture(scope="module")
def batch(sim_file_small):
    return next(iterate_batches([sim_file_small], truth=list(REQUIRED_TRUTH), step_events=120))


def test_mask_face_marks_exactly_that_face_like_dead_sensors(batch):
    masked = mask_face(batch, Face.US)
    ids = face_ids(Face.US)
    others = np.setdiff1d(np.arange(4760), ids)
    assert not masked.valid_npho[:, ids].any() and not masked.valid_time[:, ids].any()
    assert np.array_equal(masked.valid_npho[:, others], batch.valid_npho[:, others])
    assert batch.valid_npho[:, ids].any()  # the input itself is untouched
    spec = NormalizationSpec()
    features = spec.features(masked)
    assert np.all(features[:, ids, 0] == spec.npho_sentinel)
    assert np.all(features[:, ids, 1] == spec.time_sentinel)


def test_occluding_a_face_the_model_ignores_changes_nothing(batch):
    occ = occlusion(_blind_to_top(), batch, replicas=5)
    assert occ.changed["top"] == 0.0
    for q in occ.outputs:
        assert occ.faces["top"][q]["ratio"] == pytest.approx(1.0, abs=0.0)
    assert occ.changed["inner"] > 0.0 and occ.changed["bottom"] > 0.0
    assert occ.outputs == ("energy", "u", "v", "w", "time")
    assert all(occ.baseline[q]["n"] == len(batch) for q in occ.outputs)


def test_gradient_x_input_face_sums_add_up_and_ignore_the_unused_face(batch):
    reco = _blind_to_top()
    sub = batch.select(slice(0, 24))
    grad = gradients(reco, sub)
    top = face_ids(Face.TOP)
    for q in ("energy", "u", "v", "w", "time"):
        assert np.all(grad.saliency[q][top] == 0.0)
        assert grad.saliency[q].shape == (4760, 2) and grad.saliency[q].sum() > 0
        sums = face_sums(grad.grad_x_input[q])
        assert np.all(sums["top"] == 0.0)
        total = grad.grad_x_input[q].sum(axis=1, dtype=np.float64)
        np.testing.assert_allclose(sum(sums.values()), total, rtol=1e-9, atol=1e-9)
        table = grad.face_table()[q]
        assert table["total"]["mean"] == pytest.approx(
            sum(table[f]["mean"] for f in ("inner", "outer", "us", "ds", "top", "bottom")))


def test_gradient_matches_a_finite_difference(batch):
    reco = _blind_to_top()
    member = reco.members[0]
    sub = batch.select(slice(0, 2))
    grad, _ = member_gradients(member, sub, outputs=("w",))["w"]
    sensor = int(np.argmax(np.abs(grad[0, :, 0])))
    x = torch.from_numpy(member.normalization.features(sub))
    ref = torch.from_numpy(np.asarray(member.normalization.time_reference_ns(sub)))

    def w_mm(features):
        with torch.no_grad():
            return float(member.physics.member(member.model(features), ref, None)["w"][0]) * 10

    h = 1e-2
    plus, minus = x.clone(), x.clone()
    plus[0, sensor, 0] += h
    minus[0, sensor, 0] -= h
    numeric = (w_mm(plus) - w_mm(minus)) / (2 * h)
    assert numeric == pytest.approx(float(grad[0, sensor, 0]), rel=0.05)


def _hooked_record(member, batch, capture, n: int):
    """What ``capture(model)`` records over the first ``n`` events, asserting that the hooks
    change no output."""
    model = member.model
    x = torch.from_numpy(member.normalization.features(batch.select(slice(0, n))))
    with torch.no_grad():
        plain = model(x)
        with capture(model) as record:
            hooked = model(x)
    assert all(torch.equal(plain[k], hooked[k]) for k in plain)
    return record


def test_attention_rows_sum_to_one_and_capture_changes_no_output(batch):
    member = _blind_to_top().members[0]
    model = member.model
    record = _hooked_record(member, batch, capture_attention, 16)
    assert len(record) == len(model.fusion)
    labels = token_labels(model)
    assert len(labels) == 1 + model.encoder.total_tokens
    assert labels[:3] == ["CLS", "inner s1", "inner 1"]
    assert record[0].shape == (16, model.fusion[0].attn.heads, len(labels), len(labels))
    w = batch.truth["uvwTruth"][:, 2]
    att = fusion_attention(member, batch, w)
    assert sum(att.counts) == len(batch)
    filled = [c for c, n in enumerate(att.counts) if n > 0]
    assert len(filled) >= 2
    np.testing.assert_allclose(att.weights[:, filled].sum(axis=-1), 1.0, atol=1e-5)
    cls = att.cls_by_face()["layer 1"]
    for c in filled:
        assert sum(cls[att.classes[c]].values()) == pytest.approx(1.0, abs=1e-5)


def test_perceiver_attention_is_its_cross_attention_per_face(batch):
    """The Perceiver has no token fusion layers: explain shows its latents' cross-attention
    summed per face's cells and tokens: rows sum to 1, and the grouped weights are the hooked
    context weights summed over each face's keys."""
    from xecreco.validation.explain.attention import capture_cross_attention

    torch.manual_seed(3)
    config = tiny_config(summary=None, fusion={"heads": 2, "type": "perceiver", "latents": 4})
    model = randomise(build_model(config), 3).eval()
    member = Member(model, NormalizationSpec(), SCALING, "perceiver")
    record = _hooked_record(member, batch, capture_cross_attention, 8)
    (weights,) = record["weights"]
    cells = record["cells"]
    tokens = model.encoder.total_tokens
    assert weights.shape == (8, 2, 4, sum(cells.values()) + tokens)
    att = fusion_attention(member, batch, batch.truth["uvwTruth"][:, 2])
    assert att.kind == "perceiver" and att.weights.shape[:3] == (1, 3, 4)
    assert att.labels == ["latent 1", "latent 2", "latent 3", "latent 4"]
    assert att.columns[0] == "inner cells" and att.columns[-1] == "bottom tokens"
    filled = [c for c, n in enumerate(att.counts) if n > 0]
    np.testing.assert_allclose(att.weights[:, filled].sum(axis=-1), 1.0, atol=1e-5)
    # the per-face sums are the context weights grouped by face: compare one event by hand
    one = fusion_attention(member, batch.select(slice(0, 1)), batch.truth["uvwTruth"][:1, 2])
    c = int(np.flatnonzero(one.counts)[0])
    first = weights[0].mean(dim=0).double().numpy()  # (latents, context) of event 0
    n_inner = cells["inner"]
    np.testing.assert_allclose(one.weights[0, c, :, 0], first[:, :n_inner].sum(axis=1),
                               rtol=1e-5)
    shares = att.cls_by_face()["cross-attention"][att.classes[filled[0]]]
    assert sum(shares.values()) == pytest.approx(1.0, abs=1e-5) and shares["CLS"] == 0.0


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


@pytest.mark.parametrize("fusion", ["transformer", "perceiver", "dead_flag"])
def test_explain_page_of_a_checkpoint(sim_file_small, tmp_path, fusion):
    ckpt = tmp_path / "tiny.pt"
    changes = {"fusion": {"heads": 2, "type": "perceiver", "latents": 4}} \
        if fusion == "perceiver" else {"dead_flag": True} if fusion == "dead_flag" else {}
    make_checkpoint(ckpt, tiny_config(**changes))
    out = tmp_path / "page"
    summary = explain([sim_file_small], str(ckpt), out, events=60, gradient_events=12,
                      progress=False)
    html = (out / "index.html").read_text()
    images = _images(html)
    # occlusion, grad x input, 5 saliency maps, 1 fusion layer (or the Perceiver's cross-attention)
    assert len(images) == 1 + 1 + 5 + 1
    assert all((out / src).is_file() and (out / src).stat().st_size > 5000 for src in images)
    on_disk = json.loads((out / "explain.json").read_text())
    assert on_disk["neural"] and on_disk["n_gradient_events"] == 12
    assert set(on_disk["occlusion"]["faces"]) == {"inner", "outer", "us", "ds", "top", "bottom"}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary folder left
    assert "Saliency" in html
    if fusion == "perceiver":
        assert summary["attention"]["labels"][0] == "latent 1"
        assert "Perceiver cross-attention" in html and "cross-attention" in on_disk[
            "attention"]["cls_by_face"]
    else:
        assert summary["attention"]["labels"][0] == "CLS"
        assert "Fusion attention" in html
    # gradients and saliency cover the npho and time features (also with the dead flag's third)
    assert all(len(v) == 6 + 1 for v in on_disk["grad_x_input"].values())


def test_explain_classical_gives_occlusion_only(sim_file_small, tmp_path, capsys):
    out = tmp_path / "classical"
    rc = main(["explain", str(sim_file_small), "-r", "classical", "-o", str(out), "--events",
               "60", "--no-progress"])
    assert rc == 0 and str(out / "index.html") in capsys.readouterr().out
    html = (out / "index.html").read_text()
    assert "occlusion study only" in html
    assert _images(html) == ["plots/explain_occlusion.png"]
    summary = json.loads((out / "explain.json").read_text())
    assert not summary["neural"] and "grad_x_input" not in summary
    # masking the inner face must hurt the classical position fit
    inner = summary["occlusion"]["faces"]["inner"]["u"]
    assert inner["efficiency"] < 0.5 or inner["ratio"] > 1.5
    assert summary["occlusion"]["baseline_efficiency"] > 0.9
    # its position fit reads the inner face only: masking a PMT face leaves u, v, w unchanged
    for face in ("outer", "us", "ds", "top", "bottom"):
        for q in ("u", "v", "w"):
            assert summary["occlusion"]["faces"][face][q]["ratio"] == pytest.approx(1.0, abs=1e-9)


def test_explain_writes_every_plot_format(sim_file_small, tmp_path, capsys):
    out = tmp_path / "formats"
    (out / "plots").mkdir(parents=True)
    (out / "plots" / "explain_old.pdf").write_text("an earlier page's plot")
    (out / "plots" / "energy_resolution.pdf").write_text("a validation report's plot")
    rc = main(["explain", str(sim_file_small), "-r", "classical", "-o", str(out), "--events",
               "60", "--no-progress", "--format", "svg", "--format", "pdf"])
    assert rc == 0
    html = (out / "index.html").read_text()
    assert _images(html) == ["plots/explain_occlusion.svg"]
    assert '<a href="plots/explain_occlusion.pdf">PDF</a>' in html
    assert (out / "plots" / "explain_occlusion.pdf").stat().st_size > 1000
    assert not (out / "plots" / "explain_occlusion.png").exists()
    assert not (out / "plots" / "explain_old.pdf").exists()  # replaced with the page
    assert (out / "plots" / "energy_resolution.pdf").exists()  # not an explain file


def test_explain_user_errors_are_one_line(input_file_factory, tmp_path, capsys):
    from xecreco.sim import SimConfig, simulate_file

    no_truth, _ = input_file_factory(60, name="notruth.root", truth=False)
    rc = main(["explain", str(no_truth), "-r", "classical", "-o", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "notruth.root" in err and "energyTruth" in err and "timeTruth" in err
    few = tmp_path / "few.root"
    simulate_file(few, 20, config=SimConfig(), seed=3, progress=False)
    rc = main(["explain", str(few), "-r", "classical", "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "only 20 events" in err and "few.root" in err
    rc = main(["explain", str(tmp_path / "missing.root"), "-r", "classical", "-o",
               str(tmp_path / "c")])
    assert rc == 2 and "no such input file" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
