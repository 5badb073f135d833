"""Faster model ops of issue 13 compute exactly what the plain ops computed (bit for bit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xecreco.geometry import Face, face_image_index
from xecreco.models.nn.light_summary import box_mean_3x3
from xecreco.models.nn.encoder import RectFaceBackbone

torch.set_num_threads(1)


def test_box_mean_is_bit_identical_to_avg_pool():
    torch.manual_seed(0)
    image = torch.rand(16, 1, 93, 44) * torch.rand(16, 1, 1, 1) * 50
    image[image < 5] = 0.0
    expected = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=True)
    assert torch.equal(box_mean_3x3(image), expected)
    assert torch.equal(box_mean_3x3(image[:, :, :5, :4]),
                       F.avg_pool2d(image[:, :, :5, :4], 3, 1, 1, count_include_pad=True))


@pytest.mark.parametrize("face, stride", [(Face.OUTER, (5, 3)), (Face.OUTER, (2, 2)),
                                          (Face.INNER, (4, 4)), (Face.US, (2, 1))])
def test_stem_patch_gather_equals_patchifying_the_image(face, stride):
    torch.manual_seed(1)
    backbone = RectFaceBackbone(face_image_index(face), 2, [8], [1], list(stride), 7, 2.0, True)
    features = torch.randn(3, 4760, 2)
    patches = backbone.stem_patches(features)
    image = backbone.image(features)
    assert torch.equal(backbone.stem.project(patches), backbone.stem(image))
    assert patches.shape[1:3] == backbone.stem_size
    assert backbone.patch_gather == (face == Face.OUTER)
    fast = backbone(features)
    backbone.patch_gather = not backbone.patch_gather
    for a, b in zip(fast, backbone(features)):
        assert torch.equal(a, b)
