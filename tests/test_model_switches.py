"""Research switches of the regressor (docs/models.md): token position encodings (sinusoidal,
RoPE), Perceiver latent fusion, dropout with MC-dropout uncertainties, quantile heads. Shapes,
gradients, the physics of the encodings, `<q>_err` in predict, ONNX export; defaults unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import SCALING, make_checkpoint, sim_batch, tiny_config
from xecreco.errors import UserError
from xecreco.models.nn.positional import apply_rope, rope_angles, sinusoidal_table
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
from xecreco.train.losses import RegressionLoss, pinball, quantile_loss

torch.set_num_threads(1)

SWITCHES = {
    "sinusoidal": {"fusion": {"position": "sinusoidal"}},
    "rope": {"fusion": {"position": "rope"}},
    "no_position": {"fusion": {"position": "none"}},
    "perceiver": {"fusion": {"type": "perceiver", "latents": 4}},
    "dropout": {"dropout": 0.2, "mc_samples": 3},
    "quantiles": {"quantiles": True},
}


def _config(changes):
    merged = dict(changes)
    if "fusion" in merged:
        merged["fusion"] = {"heads": 2, **merged["fusion"]}
    return tiny_config(**merged)


@pytest.mark.parametrize("name", list(SWITCHES))
def test_switch_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = build_model(_config(SWITCHES[name]))
    x = torch.randn(3, 4760, 2)
    out = model(x)
    for q in ("energy", "time", "u", "v", "w"):
        assert out[q].shape == (3,), q
    assert out["direction"].shape == (3, 3)
    if name == "quantiles":
        for q in ("energy", "time", "u", "v", "w"):
            assert out[q + "_lo"].shape == (3,)
            assert bool((out[q + "_lo"] <= out[q]).all() and (out[q] <= out[q + "_hi"]).all())
        assert "direction_lo" not in out
    total = sum(v.float().sum() for v in out.values())
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_switches_change_the_network_and_defaults_do_not():
    default = build_model(tiny_config())
    explicit = build_model(_config({"fusion": {"position": "geometric", "type": "transformer"},
                                    "dropout": 0.0, "quantiles": False}))
    assert default.state_dict().keys() == explicit.state_dict().keys()
    keys = default.state_dict().keys()
    assert any(k.startswith("geometry_embed") for k in keys)
    sinus = build_model(_config(SWITCHES["sinusoidal"]))
    assert not any(k.startswith("geometry_embed") for k in sinus.state_dict())
    perceiver = build_model(_config(SWITCHES["perceiver"]))
    assert any(k.startswith("perceiver.") for k in perceiver.state_dict())
    assert "cls_token" not in perceiver.state_dict()


def test_sinusoidal_table_and_rope_relative_positions():
    table = sinusoidal_table(np.array([0, 1, 5]), 8)
    torch.testing.assert_close(table[:, 0], torch.sin(torch.tensor([0.0, 1.0, 5.0])))
    torch.testing.assert_close(table[:, 1], torch.cos(torch.tensor([0.0, 1.0, 5.0])))
    torch.testing.assert_close(table[:, 2], torch.sin(torch.tensor([0.0, 1.0, 5.0]) / 10.0))
    # RoPE: q.k depends on the displacement only (a common shift of both faces changes nothing)
    gen = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 1, 1, 12, generator=gen), torch.randn(1, 1, 1, 12, generator=gen)
    a, b = np.array([[60.0, 10.0, -20.0]]), np.array([[-100.0, 5.0, 30.0]])
    shift = np.array([[13.0, -7.0, 42.0]])

    def score(pa, pb):
        qa, kb = apply_rope(q, *rope_angles(pa, 12)), apply_rope(k, *rope_angles(pb, 12))
        return float((qa * kb).sum())

    assert score(a, b) == pytest.approx(score(a + shift, b + shift), rel=1e-5)
    assert abs(score(a, b) - score(a, a)) > 1e-3  # but the distance matters
    # rotation keeps the norm; tokens of the same face (same position) keep their dot product
    rotated = apply_rope(q, *rope_angles(a, 12))
    assert float(rotated.norm()) == pytest.approx(float(q.norm()), rel=1e-6)
    assert score(a, a) == pytest.approx(float((q * k).sum()), rel=1e-5)


def test_bad_switch_combinations_are_one_line_errors():
    with pytest.raises(UserError, match="rope needs fusion.type transformer"):
        _config({"fusion": {"type": "perceiver", "position": "rope"}})
    with pytest.raises(UserError, match="mc_samples' needs 'dropout'"):
        _config({"mc_samples": 4})
    with pytest.raises(UserError, match="choose one"):
        _config({"quantiles": True, "uncertainty": True})
    with pytest.raises(UserError, match="fusion.position"):
        _config({"fusion": {"position": "learned"}})


def test_pinball_and_quantile_loss():
    true = torch.tensor([0.0, 1.0, 2.0, 3.0])
    pred = torch.tensor([1.0, 1.0, 1.0, 1.0], requires_grad=True)
    value = pinball(pred, true, 0.25)
    # residuals t - p: -1, 0, 1, 2 -> 0.75, 0, 0.25, 0.5
    assert float(value.detach()) == pytest.approx(1.5 / 4)
    value.backward()
    assert float(pred.grad[0]) == pytest.approx(0.75 / 4)
    # the minimiser of the pinball loss is the quantile (68 % interval of a unit Gaussian)
    sample = torch.randn(20000, generator=torch.Generator().manual_seed(1))
    lo = torch.zeros((), requires_grad=True)
    hi = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([lo, hi], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        quantile_loss(lo.expand_as(sample), hi.expand_as(sample), sample).backward()
        opt.step()
    assert float(lo) == pytest.approx(-1.0, abs=0.05) and float(hi) == pytest.approx(1.0, abs=0.05)
    # in the regression loss: one term per target with quantile outputs
    out = {"energy": torch.zeros(4), "energy_lo": pred.detach() - 2, "energy_hi": pred.detach()}
    _, parts = RegressionLoss(["energy"])(out, {"energy": true})
    assert parts["energy_quantile"] == pytest.approx(float(quantile_loss(
        out["energy_lo"], out["energy_hi"], true)))


def test_mc_dropout_and_quantile_errors_in_predict(tmp_path):
    batch = sim_batch(12, seed=4)
    mc = tmp_path / "mc.pt"
    make_checkpoint(mc, _config(SWITCHES["dropout"]), seed=3)
    reco = reconstructor_from_checkpoint(mc, name="mc")
    first, again = reco.reconstruct(batch), reco.reconstruct(batch)
    for q in ("energy", "time", "u", "theta", "phi"):
        assert q + "_err" in reco.error_outputs
        assert np.all(first[q + "_err"][first["status"] == 0] > 0), q
        np.testing.assert_array_equal(first[q + "_err"], again[q + "_err"])  # seeded passes
    # the MC mean differs from the deterministic (dropout off) prediction, the spread is the err
    plain_cfg = dict(_config(SWITCHES["dropout"]), mc_samples=0)
    plain = tmp_path / "plain.pt"
    payload = make_checkpoint(plain, plain_cfg, seed=3)
    assert "energy_err" not in reconstructor_from_checkpoint(plain).reconstruct(batch)
    assert payload["model_config"]["dropout"] == 0.2
    q = tmp_path / "q.pt"
    make_checkpoint(q, _config(SWITCHES["quantiles"]), seed=5)
    reco_q = reconstructor_from_checkpoint(q, name="q")
    out = reco_q.reconstruct(batch)
    assert "energy_err" in out and "theta_err" not in out
    # energy_err = half the interval, destandardised
    member = reco_q.members[0]
    features, _ = member.normalization.features_and_reference(batch)
    with torch.no_grad():
        raw = member.model(torch.from_numpy(features))
    expected = 0.5 * (raw["energy_hi"] - raw["energy_lo"]).numpy() * SCALING.scale["energy"]
    ok = out["status"] == 0
    np.testing.assert_allclose(out["energy_err"][ok], expected[ok], rtol=1e-5)


@pytest.mark.parametrize("name,changes", [
    ("fusion", {"fusion": {"type": "perceiver", "latents": 4, "position": "sinusoidal"},
                "quantiles": True}),
    ("rope", {"fusion": {"position": "rope"}, "dropout": 0.1, "mc_samples": 4}),
])
def test_switches_export_to_onnx(tmp_path, name, changes):
    pytest.importorskip("onnxruntime")
    from xecreco.models.export.regressor import export_onnx

    ckpt = tmp_path / f"{name}.pt"
    make_checkpoint(ckpt, _config(changes), seed=7)
    result = export_onnx(ckpt, tmp_path / f"{name}.onnx", check_events=8)
    assert result["max_rel_diff"] < 1e-4
    if changes.get("quantiles"):
        assert "energy_err" in result["outputs"] and "theta_err" not in result["outputs"]
    if changes.get("mc_samples"):  # the graph is the deterministic network: no MC error
        assert "energy_err" not in result["outputs"]
