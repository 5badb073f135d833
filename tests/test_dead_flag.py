"""The regressor's dead flag (``model.dead_flag``, issue 14 item 3) and ``augment.dead_fill``.

With the flag the network gets a third input channel per sensor, 1 where the sensor was not
measured (invalid npho, or filled by an inpainter: ``extras["inpainted"]``, the ``inpainted``
branch of a repaired file), so it can tell repaired values from measured ones. Training can
repair its augmented dead sensors the way inference does (``augment.dead_fill: neighbours``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import TINY, make_checkpoint, randomise, sim_batch, tiny_config

from xecreco.errors import UserError
from xecreco.io.schema import INPAINTED_BRANCH
from xecreco.models.pipelines.inpaint import apply_dead_mask
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.presets import resolve_model_config
from xecreco.models.regressor.reconstructor import reconstructor_from_checkpoint
from xecreco.normalization import NormalizationSpec, batch_not_measured, not_measured

torch.set_num_threads(1)


def _dead(n: int, seed: int) -> np.ndarray:
    """(n, 4760) bool: 2 % scattered dead sensors plus one 8 x 4 inner block per event."""
    rng = np.random.default_rng(seed)
    dead = rng.random((n, 4760)) < 0.02
    block = (np.arange(8)[:, None] * 44 + np.arange(4)[None, :]).ravel() + 30 * 44 + 20
    dead[:, block] = True
    return dead


def _repaired(n: int = 6, seed: int = 3):
    """(reader batch, the same with dead sensors, repaired by the neighbour average)."""
    from xecreco.models.registry import create_inpainter

    batch = sim_batch(n, seed)
    broken = apply_dead_mask(batch, _dead(n, seed))
    return batch, broken, create_inpainter("neighbour-average").inpaint(broken)


# ------------------------------------------------------------------ config
def test_config_switch_sets_the_input_channels_and_old_configs_resolve_off():
    assert resolve_model_config("cpu")["dead_flag"] is False
    assert resolve_model_config("cpu")["encoder"]["in_channels"] == 2
    on = resolve_model_config({"preset": "cpu", "dead_flag": True})
    assert on["encoder"]["in_channels"] == 3
    assert resolve_model_config(on) == on  # a stored config resolves to itself
    old = resolve_model_config("upstream")
    del old["dead_flag"]  # a checkpoint written before the switch existed
    assert resolve_model_config(old) == resolve_model_config("upstream")
    with pytest.raises(UserError, match="in_channels.*dead_flag"):
        resolve_model_config({"preset": "cpu", "encoder": {"in_channels": 3}})
    with pytest.raises(UserError, match="dead_flag"):
        resolve_model_config({"preset": "cpu", "dead_flag": "yes"})


# ------------------------------------------------------------------ the flag
def test_flag_is_one_exactly_at_invalid_or_inpainted_sensors():
    clean, broken, repaired = _repaired()
    spec = NormalizationSpec()
    inpainted = repaired.extras[INPAINTED_BRANCH]
    assert inpainted.any()
    want = ~repaired.valid_npho | inpainted
    assert np.array_equal(want, ~broken.valid_npho)  # what was dead is flagged, nothing else
    features = spec.features(repaired, flag=True)
    assert features.shape == (len(repaired), 4760, 3) and features.dtype == np.float32
    assert set(np.unique(features[..., 2])) == {0.0, 1.0}
    assert np.array_equal(features[..., 2] == 1.0, want)
    # npho and time keep the repaired values (the light summary's input)
    assert np.array_equal(features[..., :2], spec.features(repaired))
    # without an inpainter the flag is the invalid sensors (a reader batch: the file's dead ones)
    assert np.array_equal(spec.features(broken, flag=True)[..., 2] == 1.0, ~broken.valid_npho)
    assert np.array_equal(batch_not_measured(clean), ~clean.valid_npho)
    # the torch path (ONNX graphs) gives the same channel
    t = torch.from_numpy
    got, _ = spec.raw_features(t(repaired.npho), t(repaired.time), t(repaired.valid_npho),
                               t(repaired.valid_time),
                               not_measured(t(repaired.valid_npho), t(inpainted)))
    assert np.array_equal(got[..., 2].numpy(), features[..., 2])
    np.testing.assert_allclose(got.numpy(), features, rtol=1e-5, atol=1e-5)


def test_a_wrong_inpainted_mask_is_one_clear_error():
    batch = sim_batch(2, 1)
    batch.extras[INPAINTED_BRANCH] = np.zeros((2, 100), dtype=bool)
    with pytest.raises(UserError, match="inpainted"):
        NormalizationSpec().features(batch, flag=True)


def test_network_with_the_flag_has_gradients_and_uses_the_flag():
    torch.manual_seed(0)
    model = randomise(build_model(tiny_config(dead_flag=True)), 1)
    _, _, repaired = _repaired(4)
    features = torch.from_numpy(NormalizationSpec().features(repaired, flag=True))
    features.requires_grad_(True)
    out = model(features, torch.from_numpy(np.zeros((4, 3), np.float32)))
    assert out["energy"].shape == (4,) and out["direction"].shape == (4, 3)
    sum(v.float().sum() for v in out.values()).backward()
    assert features.grad.shape == (4, 4760, 3)
    assert float(features.grad[..., 2].abs().sum()) > 0  # the flag reaches the outputs
    stem = [p for n, p in model.named_parameters() if "stem" in n or n.endswith("embed.weight")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in stem)
    with torch.no_grad():
        unflagged = features.detach().clone()
        unflagged[..., 2] = 0.0
        assert not torch.equal(model(unflagged)["energy"], model(features.detach())["energy"])


# ------------------------------------------------------------------ inference paths
def test_old_checkpoint_ignores_the_mask_and_matches_the_direct_network(tmp_path):
    """A checkpoint without the key (flag off) gives the same outputs, bit for bit, with and
    without an inpainted mask, and the same as its network on the unflagged features."""
    payload = make_checkpoint(tmp_path / "old.pt")
    payload["model_config"].pop("dead_flag")
    torch.save(payload, tmp_path / "old.pt")
    reco = reconstructor_from_checkpoint(tmp_path / "old.pt")
    assert reco.input_extras == () and not reco.members[0].dead_flag
    _, _, repaired = _repaired()
    plain = repaired.replace(extras={})
    got = reco.reconstruct(repaired)
    want = reco.reconstruct(plain)
    for key in want:
        assert np.array_equal(got[key], want[key]), key
    member = reco.members[0]
    features = member.normalization.features(plain)
    with torch.inference_mode():
        raw = member.model(torch.from_numpy(features), torch.from_numpy(plain.vertex)
                           if plain.vertex is not None else None)
    direct = reco._forward(member, features, plain.vertex)
    for key, value in raw.items():
        assert np.array_equal(direct[key], value.double().numpy()), key


def test_dead_flag_checkpoint_sees_the_inpainted_mask(tmp_path):
    make_checkpoint(tmp_path / "flag.pt", {**TINY, "dead_flag": True}, seed=2)
    reco = reconstructor_from_checkpoint(tmp_path / "flag.pt")
    assert reco.input_extras == (INPAINTED_BRANCH,)
    _, _, repaired = _repaired()
    with_mask = reco.reconstruct(repaired)
    without = reco.reconstruct(repaired.replace(extras={}))
    assert not np.array_equal(with_mask["energy"], without["energy"])
    key = reco.members[0].inputs_key
    features = reco.prepare(repaired)[key][0]
    assert np.array_equal(features[..., 2] == 1, batch_not_measured(repaired))


def test_dead_patterns_repair_reaches_the_flag():
    """validate --dead-patterns: the pattern's repaired batch carries the inpainter's mask."""
    from xecreco.models.registry import create_inpainter
    from xecreco.validation.deadpatterns import RepairedReconstructor, _Repair

    seen = []

    class Spy:
        name, outputs = "spy", ("energy",)

        def reconstruct(self, batch):
            seen.append(batch_not_measured(batch))
            return {"energy": np.zeros(len(batch), np.float32)}

    mask = _dead(1, 4)[0]
    batch = sim_batch(3, 5)
    RepairedReconstructor(Spy(), _Repair(mask, create_inpainter("neighbour-average"))
                          ).reconstruct(batch)
    assert np.array_equal(seen[0], ~batch.valid_npho | mask[None, :])


def test_onnx_export_takes_the_inpainted_mask_and_agrees_with_torch(tmp_path):
    import onnxruntime as ort

    from xecreco.models.export.onnx import batch_from_raw, sim_like_inpainted, sim_like_inputs
    from xecreco.models.export.regressor import export_onnx, sim_like_vertices

    make_checkpoint(tmp_path / "flag.pt", {**TINY, "dead_flag": True}, seed=4)
    result = export_onnx(tmp_path / "flag.pt", tmp_path / "flag.onnx", check_events=8)
    assert result["tolerance_ratio"] <= 1.0
    session = ort.InferenceSession(str(tmp_path / "flag.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["npho", "sensor_time", "vertex", "inpainted"]
    npho, time = sim_like_inputs(6, seed=9)
    vertex, inpainted = sim_like_vertices(6, 9), sim_like_inpainted(npho, 9)
    got = dict(zip([o.name for o in session.get_outputs()],
                   session.run(None, {"npho": npho, "sensor_time": time, "vertex": vertex,
                                      "inpainted": inpainted})))
    batch = batch_from_raw(npho, time, vertex=vertex, inpainted=inpainted)
    want = reconstructor_from_checkpoint(tmp_path / "flag.pt").reconstruct(batch)
    good = want["status"] == 0
    np.testing.assert_allclose(got["energy"][good], want["energy"][good], rtol=1e-4)
    np.testing.assert_allclose(got["u"][good], want["u"][good], rtol=1e-4, atol=1e-3)
    unflagged = dict(zip([o.name for o in session.get_outputs()], session.run(None, {
        "npho": npho, "sensor_time": time, "vertex": vertex,
        "inpainted": np.zeros_like(inpainted)})))
    assert not np.allclose(unflagged["energy"], got["energy"])  # the mask is an input


# ------------------------------------------------------------------ training
def test_dead_fill_neighbours_repairs_and_marks_the_augmented_sensors():
    from xecreco.models.tasks.regressor import dead_fill_inpainter
    from xecreco.train.augment import augment_batch
    from xecreco.train.config import AugmentConfig

    batch = sim_batch(5, 6)
    cfg = AugmentConfig(dead_fraction=0.02, dead_groups=2, dead_fill="neighbours")
    sentinel, _ = augment_batch(batch, AugmentConfig(dead_fraction=0.02, dead_groups=2),
                                np.random.default_rng(1))
    filled, _ = augment_batch(batch, cfg, np.random.default_rng(1),
                              dead_fill_inpainter("neighbours"))
    dead = ~sentinel.valid_npho  # same generator: the same augmented sensors
    assert dead.sum() > 5 * 60
    assert np.array_equal(batch_not_measured(filled), dead)
    assert filled.valid_npho.mean() > sentinel.valid_npho.mean()  # values filled in
    # the values are the neighbour-average inpainter's repair of the augmented batch
    want = dead_fill_inpainter("neighbours").inpaint(sentinel)
    assert np.array_equal(filled.npho, want.npho) and np.array_equal(filled.time, want.time)
    assert dead_fill_inpainter("sentinel") is None


def test_dead_fill_is_checked_and_is_for_the_regressor(tmp_path):
    from train_helpers import write_training_file

    from xecreco.train.api import train
    from xecreco.train.config import config_from_dict

    with pytest.raises(UserError, match="augment.dead_fill"):
        config_from_dict({"augment": {"dead_fill": "zeros"}})
    assert config_from_dict({}).augment.dead_fill == "sentinel"
    path = tmp_path / "train.root"
    write_training_file(path, 40)
    cfg = {"task": {"name": "inpainter"}, "augment": {"dead_fill": "neighbours"},
           "data": {"train_files": [str(path)], "batch_size": 8, "scaling_events": 16},
           "run": {"max_steps": 1, "progress": False}}
    with pytest.raises(UserError, match="augment.dead_fill.*regressor"):
        train(cfg, run_dir=tmp_path / "run")


def test_tiny_training_with_the_flag_and_neighbour_fill_predicts(tmp_path):
    from train_helpers import write_training_file

    from xecreco.models.pipelines.inpaint import inpaint_file
    from xecreco.models.pipelines.predict import predict_files
    from xecreco.train.api import train

    path = tmp_path / "train.root"
    write_training_file(path, 120)
    cfg = {
        "data": {"train_files": [str(path)], "val_fraction": 0.25, "batch_size": 16,
                 "step_events": 48, "shuffle_buffer": 48, "scaling_events": 90},
        "augment": {"dead_fraction": 0.02, "dead_groups": 1, "dead_fill": "neighbours"},
        "model": {"overrides": {**TINY, "dead_flag": True}},
        "optim": {"warmup_steps": 1},
        "run": {"max_steps": 2, "progress": False, "threads": 1, "log_every": 1},
        "checkpoint": {"best_metric": "weighted", "eval_every_steps": 2},
    }
    result = train(cfg, run_dir=tmp_path / "run")
    assert result["step"] == 2 and result["finished"]
    best = tmp_path / "run" / "best.pt"
    reco = reconstructor_from_checkpoint(best)
    assert reco.members[0].dead_flag and reco.input_extras == (INPAINTED_BRANCH,)
    repaired = tmp_path / "repaired.root"
    dead_list = tmp_path / "dead.txt"
    dead_list.write_text("\n".join(str(i) for i in range(100, 4760, 97)) + "\n")
    inpaint_file(str(path), str(repaired), inpainter="neighbour-average", dead_file=str(dead_list),
                 progress=False)
    out = predict_files([str(repaired)], tmp_path / "pred.root", [str(best)], names=["nn"],
                        progress=False)
    assert out["events"] == 120
    import uproot

    with uproot.open(tmp_path / "pred.root") as handle:
        energy = handle["reco"]["nn_energy"].array(library="np")
    assert np.all(np.isfinite(energy))
    with pytest.raises(UserError, match="inpainted"):
        predict_files([str(repaired), str(path)], tmp_path / "mixed.root", [str(best)],
                      progress=False)


def test_dead_fill_inpainter_uses_the_bundled_inpainter():
    from xecreco.models import bundled
    from xecreco.models.tasks.regressor import dead_fill_inpainter
    from xecreco.train.augment import augment_batch
    from xecreco.train.config import AugmentConfig

    if not bundled.BUNDLED_INPAINTER.is_file():
        pytest.skip("this install ships no bundled inpainter")
    fill = dead_fill_inpainter("inpainter")
    batch = sim_batch(2, 8)
    filled, _ = augment_batch(batch, AugmentConfig(dead_groups=2, dead_fill="inpainter"),
                              np.random.default_rng(2), fill)
    assert filled.valid_npho.all()  # the neural inpainter fills every dead sensor
    assert filled.extras[INPAINTED_BRANCH].sum() >= 2 * 20 + (~batch.valid_npho).sum()
    assert np.array_equal(batch_not_measured(filled), filled.extras[INPAINTED_BRANCH])


def test_predict_says_when_a_dead_flag_model_gets_unrepaired_dead_channels(
        sim_file_pileup_dead, tmp_path, capsys):
    """The bundled regressor expects inpainter-repaired input: on a file with dead sensors and
    no `inpainted` branch `xecreco predict` says so in one line; on repaired input it does not."""
    from xecreco.cli.main import main

    out = tmp_path / "pred.root"
    assert main(["predict", str(sim_file_pileup_dead), "-r", "default", "-o", str(out),
                 "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "note:" in line]
    assert len(notes) == 1 and "xecreco inpaint" in notes[0] and "default" in notes[0], notes
    repaired = tmp_path / "repaired.root"
    assert main(["inpaint", str(sim_file_pileup_dead), "-o", str(repaired), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", str(repaired), "-r", "default", "-r", "classical", "-o",
                 str(tmp_path / "pred2.root"), "--no-progress"]) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(["predict", str(sim_file_pileup_dead), "-r", "classical", "-o",
                 str(tmp_path / "pred3.root"), "--no-progress"]) == 0
    assert "note:" not in capsys.readouterr().err  # classical recovers dead channels itself
