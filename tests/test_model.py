"""The neural regressor: presets, shapes, heads, encoder maps and blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _nn_helpers import TINY, randomise, tiny_config
from xecreco.errors import UserError
from xecreco.geometry import Face, face_image_index, hex_graph
from xecreco.models.nn.hexnext import HexNeXtBlock
from xecreco.models.nn.encoder import FACE_ORDER, RectFaceBackbone
from xecreco.models.nn.flops import count_parameters, flops_per_event
from xecreco.models.regressor.network import build_model
from xecreco.models.regressor.presets import PRESETS, resolve_model_config

torch.set_num_threads(1)


def _features(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4760, 2, generator=generator)


@pytest.mark.parametrize("preset", ["cpu", "tiny"])
def test_output_shapes_and_unit_direction(preset):
    model = build_model(TINY if preset == "tiny" else preset).eval()
    with torch.inference_mode():
        out = model(_features(5))
    assert set(out) == {"energy", "time", "u", "v", "w", "direction"}
    for name in ("energy", "time", "u", "v", "w"):
        assert out[name].shape == (5,)
        assert torch.isfinite(out[name]).all()
    assert out["direction"].shape == (5, 3)
    np.testing.assert_allclose(out["direction"].norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_upstream_preset_scale():
    """~35 M parameters, ~1 GFLOP per event, token width 1024, 2 fusion layers."""
    model = build_model("upstream")
    params = count_parameters(model)
    assert 25e6 < params < 40e6
    assert model.encoder.token_dim == 1024 and len(model.fusion) == 2
    flops = flops_per_event(model, events=1)
    assert 0.7e9 < flops < 1.5e9
    with torch.inference_mode():
        out = model.eval()(_features(2))
    assert out["direction"].shape == (2, 3) and out["energy"].shape == (2,)


def test_cpu_preset_is_small():
    model = build_model("cpu")
    assert count_parameters(model) < 500_000
    assert flops_per_event(model) < 20e6


def test_batch_permutation_permutes_outputs():
    model = randomise(build_model(TINY), 1).eval()
    x = _features(6, seed=3)
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    with torch.inference_mode():
        out = model(x)
        out_perm = model(x[perm])
    for name in out:
        torch.testing.assert_close(out_perm[name], out[name][perm], rtol=1e-5, atol=1e-5)


def test_only_enabled_heads_are_built_and_uncertainties():
    model = build_model({**TINY, "heads": ["energy", "direction"], "uncertainty": True}).eval()
    assert set(model.heads) == {"energy", "direction"}
    assert not any(k.startswith(("heads.u.", "heads.time.")) for k in model.state_dict())
    with torch.inference_mode():
        out = model(_features(3))
    assert set(out) == {"energy", "energy_logvar", "direction", "direction_logvar"}
    assert out["energy_logvar"].shape == (3,) and out["direction_logvar"].shape == (3,)
    with_pileup = build_model({**TINY, "heads": ["npileup"]})
    assert set(with_pileup.heads) == {"npileup"}


def test_token_counts_and_multiscale():
    model = build_model(TINY)
    tokens = model.encoder(_features(2))
    assert list(tokens) == list(FACE_ORDER)
    # tiny: inner 4 + 1 multi-scale, outer 2 + 1, US/DS 1 + 1, hex faces 1
    expected = {"inner": 5, "outer": 3, "us": 2, "ds": 2, "top": 1, "bottom": 1}
    assert {k: v.shape[1] for k, v in tokens.items()} == expected
    assert all(v.shape[2] == 16 for v in tokens.values())
    single = build_model({**TINY, "encoder": {"multiscale": False, "tokens": {"inner": 2}}})
    assert single.encoder.num_tokens == {"inner": 2, "outer": 2, "us": 1, "ds": 1, "top": 1,
                                         "bottom": 1}


def test_config_errors_are_one_line_user_errors():
    with pytest.raises(UserError, match="did you mean 'token_dim'"):
        resolve_model_config({"encoder": {"token_dims": 8}})
    with pytest.raises(UserError, match="unknown model preset"):
        resolve_model_config("gpu-giant")
    with pytest.raises(UserError, match="heads"):
        resolve_model_config({"heads": ["energy", "mass"]})
    with pytest.raises(UserError, match="divide"):
        resolve_model_config({"encoder": {"token_dim": 30}, "fusion": {"heads": 4}})
    assert resolve_model_config("cpu") == resolve_model_config(PRESETS["cpu"])


@pytest.mark.parametrize("face", [Face.INNER, Face.OUTER, Face.US, Face.DS])
def test_face_images_gather_the_contract_maps(face):
    """Cell (r, c) of the gathered image holds the feature of sensor face_image_index[r, c]."""
    index = face_image_index(face)
    backbone = RectFaceBackbone(index, 2, [4], [1], 1, 7, 2.0, False)
    features = torch.arange(4760, dtype=torch.float32).reshape(1, 4760, 1).repeat(1, 1, 2)
    image = backbone.image(features)
    assert image.shape == (1,) + index.shape + (2,)
    expected = np.where(index >= 0, index, 0)
    np.testing.assert_array_equal(image[0, :, :, 1].numpy(), expected)
    if face == Face.OUTER:  # refined grid, not a 9 x 24 reshape
        assert index.shape == (45, 72)
        assert len(np.unique(index)) == 234


def test_hexnext_attends_only_to_geometric_neighbours():
    graph = hex_graph(Face.TOP)
    torch.manual_seed(0)
    block = randomise(HexNeXtBlock(8, 2, graph.neighbours, graph.direction, 2.0), 2)
    # GRN mixes all nodes through one per-channel norm: switch it off to test locality
    block.grn.gamma.data.zero_()
    block.eval()
    x = torch.randn(1, graph.n_nodes, 8)
    node = 30
    neighbour = int(graph.neighbours[node, 1:][graph.neighbours[node, 1:] >= 0][0])
    distances = np.linalg.norm(graph.position - graph.position[node], axis=1)
    far = int(np.argmax(distances))
    assert distances[far] > 40 and distances[neighbour] < 8
    with torch.no_grad():
        base = block(x)[0, node]
        x_far = x.clone()
        x_far[0, far] += torch.randn(8)  # not a constant: LayerNorm would remove it
        x_near = x.clone()
        x_near[0, neighbour] += torch.randn(8)
        assert torch.allclose(block(x_far)[0, node], base, atol=1e-6)
        assert not torch.allclose(block(x_near)[0, node], base, atol=1e-3)


def test_hexnext_direction_terms_matter():
    """Same neighbours, different direction labels -> different outputs (typed terms are used)."""
    graph = hex_graph(Face.BOTTOM)
    torch.manual_seed(0)
    block = randomise(HexNeXtBlock(8, 2, graph.neighbours, graph.direction, 2.0), 3).eval()
    shuffled = np.where(graph.direction > 0, (graph.direction % 6) + 1, 0)
    other = HexNeXtBlock(8, 2, graph.neighbours, shuffled, 2.0).eval()
    other.load_state_dict(block.state_dict())
    x = torch.randn(2, graph.n_nodes, 8)
    with torch.no_grad():
        assert not torch.allclose(block(x), other(x), atol=1e-4)


def test_positional_encoding_breaks_translation_symmetry():
    """With the geometric encoding, the same light pattern at two places gives different tokens."""
    config = tiny_config()
    model = randomise(build_model(config), 4).eval()
    x1 = torch.zeros(1, 4760, 2)
    x2 = torch.zeros(1, 4760, 2)
    x1[0, 44 * 20 + 10, 0] = 3.0
    x2[0, 44 * 60 + 30, 0] = 3.0
    with torch.inference_mode():
        t1 = model.encoder(x1)["inner"]
        t2 = model.encoder(x2)["inner"]
    assert not torch.allclose(t1, t2, atol=1e-4)


def test_flops_and_parameters_are_consistent():
    model = build_model(TINY)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    small = flops_per_event(model)
    wider = flops_per_event(build_model({**TINY, "encoder": {"rect": {"dims": [16, 32]}}}))
    assert 0 < small < wider


@pytest.mark.gpu
def test_presets_run_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    for preset in ("cpu", "upstream"):
        model = build_model(preset).cuda().eval()
        x = _features(8).cuda()
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        assert out["energy"].shape == (8,) and torch.isfinite(out["energy"].float()).all()
        cpu_out = build_model(preset).eval()
        cpu_out.load_state_dict(model.state_dict())
        with torch.inference_mode():
            ref = cpu_out(_features(8))["direction"]
            got = model.float()(x)["direction"].cpu()
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-3)
