"""``model.init_from`` widening the input layers: a flag-off checkpoint (2 input channels per
sensor) fine-tuned into a ``model.dead_flag`` network (3 channels) keeps its stems and hexagonal
embeddings, with zero weights on the new flag channel (xecreco/train/init_from.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _nn_helpers import make_checkpoint, sim_batch, tiny_config
from torch import nn

from xecreco.errors import UserError
from xecreco.models.regressor.network import build_model
from xecreco.normalization import NormalizationSpec
from xecreco.train.checkpoint import load_checkpoint
from xecreco.train.init_from import describe, load_matching_weights, widen_input_channels

torch.set_num_threads(1)


def _outputs(model, features: np.ndarray) -> dict[str, torch.Tensor]:
    """Standardised outputs of ``model`` in eval mode on (N, 4760, C) features."""
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(features))


def test_flag_off_checkpoint_widens_into_a_dead_flag_network(tmp_path):
    make_checkpoint(tmp_path / "old.pt", seed=4)
    ckpt = load_checkpoint(tmp_path / "old.pt")
    old = build_model(ckpt["model_config"])
    old.load_state_dict(ckpt["state_dict"])
    torch.manual_seed(7)
    new = build_model(tiny_config(dead_flag=True))
    torch.manual_seed(7)
    fresh = build_model(tiny_config(dead_flag=True))
    report = load_matching_weights(new, ckpt, "old.pt")

    # the widened tensors are exactly those whose input dimension differs (found by shape)
    own = new.state_dict()
    differing = sorted(n for n, t in own.items() if tuple(t.shape) != tuple(ckpt["state_dict"][n]
                                                                            .shape))
    assert differing and report["widened"] == differing
    assert any(".stem." in n for n in differing) and any("embed.weight" in n for n in differing)
    assert report["fresh"] == [] and report["skipped"] == []
    for name in differing:
        theirs = ckpt["state_dict"][name]
        assert own[name].shape[1] == theirs.shape[1] // 2 * 3

    spec = NormalizationSpec()
    batch = sim_batch(3, seed=5)
    flagged = spec.features(batch, flag=True)
    plain = spec.features(batch)
    unflagged = flagged.copy()
    unflagged[..., 2] = 0.0
    want = _outputs(old, plain)
    got = _outputs(new, unflagged)
    start = _outputs(fresh, unflagged)
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=1e-6, rtol=0)
        assert not torch.allclose(start[key], want[key], atol=1e-3, rtol=0), key
    # the flag starts without effect: a flagged sensor changes nothing yet ...
    some = unflagged.copy()
    some[:, ::7, 2] = 1.0
    for key, value in _outputs(new, some).items():
        torch.testing.assert_close(value, want[key], atol=1e-6, rtol=0)
    # ... but its weights get a gradient, so it can be learned
    new.train()
    out = new(torch.from_numpy(some))
    sum(v.float().sum() for v in out.values()).backward()
    params = dict(new.named_parameters())
    hex_embed = [n for n in differing if n.endswith("embed.weight")][0]
    assert float(params[hex_embed].grad[:, 2].abs().sum()) > 0

    line = describe(report, "old.pt")
    assert f"{len(differing)} widened to more input channels, new channels zero (" in line
    assert hex_embed.removesuffix(".weight") in line and ", 0 fresh" in line


class _Toy(nn.Module):
    """Layers named like the ones init_from meets: a strided stem (k cells x C channels), a
    per-sensor embedding, a hidden layer, a head; ``config`` like a regressor's."""

    def __init__(self, channels: int, cells: int = 4, embed_out: int = 5, hidden: int = 6,
                 head_in: int = 6):
        super().__init__()
        self.config = {"encoder": {"in_channels": channels}}
        self.stem = nn.Linear(cells * channels, 6)
        self.embed = nn.Linear(channels, embed_out)
        self.hidden = nn.Linear(6, hidden)
        self.head = nn.Linear(head_in, 3)
        self.norm = nn.LayerNorm(6)


def _ckpt(model: nn.Module) -> dict:
    return {"task": "regressor", "model_config": model.config,
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}


def test_widening_places_the_old_channels_cell_by_cell():
    theirs = torch.arange(2 * 8, dtype=torch.float32).reshape(2, 8)  # 4 cells x 2 channels
    wide = widen_input_channels(theirs, (2, 12), (2, 3))
    cells = wide.reshape(2, 4, 3)
    assert torch.equal(cells[..., :2], theirs.reshape(2, 4, 2))
    assert torch.equal(cells[..., 2], torch.zeros(2, 4))
    # a convolution's input channels (dim 1) widen the same way
    conv = torch.randn(4, 2, 3, 3)
    assert torch.equal(widen_input_channels(conv, (4, 3, 3, 3), (2, 3))[:, :2], conv)
    # not unambiguous: other dims differ, smaller, not the channel ratio, another rank, dim 0
    assert widen_input_channels(theirs, (3, 12), (2, 3)) is None
    assert widen_input_channels(theirs, (2, 4), (2, 3)) is None
    assert widen_input_channels(theirs, (2, 10), (2, 3)) is None
    assert widen_input_channels(theirs, (2, 12, 1), (2, 3)) is None
    assert widen_input_channels(torch.zeros(8), (12,), (2, 3)) is None
    assert widen_input_channels(torch.zeros(2, 8), (3, 8), (2, 3)) is None
    assert widen_input_channels(theirs, (2, 12), (3, 2)) is None


def test_only_input_layers_widen_the_rest_stays_fresh():
    torch.manual_seed(0)
    source = _Toy(2, cells=40)  # the stem holds most of the values (coverage)
    # the embedding also grows in its output dim (two dims differ), the hidden layer is wider
    # (dim 0) and the head reads it (dim 1 larger, but not by the channel ratio 3/2)
    torch.manual_seed(1)
    target = _Toy(3, cells=40, embed_out=7, hidden=8, head_in=8)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    report = load_matching_weights(target, _ckpt(source), "x.pt")
    assert report["widened"] == ["stem.weight"]
    assert report["loaded"] == ["head.bias", "norm.bias", "norm.weight", "stem.bias"]
    assert report["fresh"] == ["embed.bias", "embed.weight", "head.weight", "hidden.bias",
                               "hidden.weight"]
    assert report["skipped"] == report["fresh"]
    state = target.state_dict()
    for name in report["fresh"]:
        assert torch.equal(state[name], before[name]), name
    x = torch.randn(5, 40, 2)
    padded = torch.cat([x, torch.zeros(5, 40, 1)], dim=2)
    torch.testing.assert_close(target.stem(padded.reshape(5, 120)),
                               source.stem(x.reshape(5, 80)), atol=1e-6, rtol=0)

    # a smaller new network is not widened (3 -> 2 channels): stem and embedding stay fresh
    torch.manual_seed(2)
    narrow = _Toy(2)
    wide_source = _Toy(3)
    before = {k: v.clone() for k, v in narrow.state_dict().items()}
    report = load_matching_weights(narrow, _ckpt(wide_source), "y.pt")
    assert report["widened"] == []
    assert {"stem.weight", "embed.weight"} <= set(report["fresh"])
    assert torch.equal(narrow.stem.weight, before["stem.weight"])


def test_widening_needs_the_channel_counts_and_counts_toward_coverage():
    torch.manual_seed(0)
    source = _Toy(2, cells=40)  # the stem holds most of the values
    ckpt = _ckpt(source)
    target = _Toy(3, cells=40)
    report = load_matching_weights(target, ckpt, "x.pt")
    assert report["widened"] == ["embed.weight", "stem.weight"]
    # without the checkpoint's channel count nothing is widened: too little left to copy
    ckpt.pop("model_config")
    with pytest.raises(UserError, match=r"model.init_from.*x.pt .*does not match"):
        load_matching_weights(_Toy(3, cells=40), ckpt, "x.pt")
