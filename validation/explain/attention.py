"""The fusion attention of the neural regressor: which face tokens each token reads from.

Every fusion layer's :class:`~xecreco.models.nn.attention.MultiHeadAttention` applies its
softmax through a child module; a forward hook on it records the weights (N, heads, L, L) without
changing any output. Tokens, in the regressor's order: the CLS token (whose fused value feeds the
heads), then the face tokens in :data:`~xecreco.models.nn.encoder.FACE_ORDER`; with a multi-scale
encoder each rectangular face first has one token per earlier stage ("inner s1"), then its K
last-stage tokens ("inner 1" .. "inner K"). Weights are averaged over heads and over the events
of each depth class of the true first-interaction depth w.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from xecreco.models.nn.encoder import FACE_ORDER

__all__ = ["DEPTH_CLASSES", "token_labels", "token_faces", "capture_attention",
           "AttentionResult", "fusion_attention"]

#: Depth classes (label, w_min cm, w_max cm) of the attention averages.
DEPTH_CLASSES = (("w < 2 cm", -np.inf, 2.0), ("2 <= w < 10 cm", 2.0, 10.0),
                 ("w >= 10 cm", 10.0, np.inf))


def token_labels(model) -> list[str]:
    """Names of the L = 1 + total_tokens fused tokens of a regressor, in order."""
    encoder = model.encoder
    labels = ["CLS"]
    for name in FACE_ORDER:
        k_last = int(encoder.config["tokens"][name])
        extra = encoder.num_tokens[name] - k_last
        labels += [f"{name} s{i + 1}" for i in range(extra)]
        labels += [name] if k_last == 1 else [f"{name} {i + 1}" for i in range(k_last)]
    return labels


def token_faces(model) -> list[str]:
    """The face of every fused token ("CLS" for the CLS token)."""
    faces = ["CLS"]
    for name in FACE_ORDER:
        faces += [name] * model.encoder.num_tokens[name]
    return faces


@contextmanager
def capture_attention(model):
    """Inside the block, the yielded list receives the attention weights of every fusion layer
    at every forward pass, in call order: (N, heads, L, L) float32 CPU tensors."""
    record: list[torch.Tensor] = []
    handles = [layer.attn.softmax.register_forward_hook(
        lambda _module, _inputs, output: record.append(output.detach().float().cpu()))
        for layer in model.fusion]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


@dataclass
class AttentionResult:
    """Mean fusion attention.

    Attributes:
        labels: token names (L).
        faces: face of every token (L).
        classes: depth-class labels.
        weights: (layers, classes, L, L) mean weights (row = query token, columns sum to 1 per
            row); NaN for a class without events.
        counts: events per depth class.
    """

    labels: list
    faces: list
    classes: list
    weights: np.ndarray
    counts: list

    def cls_by_face(self) -> dict:
        """layer -> class -> {face: attention of the CLS token on that face's tokens}."""
        out = {}
        faces = np.array(self.faces)
        for layer in range(self.weights.shape[0]):
            per_class = {}
            for c, label in enumerate(self.classes):
                row = self.weights[layer, c, 0]
                per_class[label] = {f: float(np.sum(row[faces == f])) for f in ("CLS",) +
                                    FACE_ORDER}
            out[f"layer {layer + 1}"] = per_class
        return out


def fusion_attention(member, batch, w_true_cm, chunk: int = 256) -> AttentionResult:
    """Mean attention of every fusion layer of one member network over ``batch``, per depth
    class of ``w_true_cm`` (N,) cm."""
    model = member.model
    features = member.normalization.features(batch)
    uses_vertex = bool(getattr(model, "uses_vertex", False))
    n_layers = len(model.fusion)
    labels = token_labels(model)
    length = len(labels)
    sums = np.zeros((n_layers, len(DEPTH_CLASSES), length, length))
    w_true_cm = np.asarray(w_true_cm, dtype=np.float64)
    classes = np.full(len(w_true_cm), -1)
    for c, (_, lo, hi) in enumerate(DEPTH_CLASSES):
        classes[(w_true_cm >= lo) & (w_true_cm < hi)] = c
    device = next(model.parameters()).device
    with torch.inference_mode(), capture_attention(model) as record:
        for start in range(0, len(batch), chunk):
            rows = slice(start, start + chunk)
            x = torch.from_numpy(features[rows]).to(device)
            if uses_vertex:
                vertex = None if batch.vertex is None else torch.as_tensor(
                    np.asarray(batch.vertex[rows], dtype=np.float32)).to(device)
                model(x, vertex)
            else:
                model(x)
            per_event = [w.mean(dim=1).double().numpy() for w in record]  # (n, L, L) per layer
            record.clear()
            cls = classes[rows]
            for layer, weights in enumerate(per_event):
                for c in range(len(DEPTH_CLASSES)):
                    sums[layer, c] += weights[cls == c].sum(axis=0)
    counts = [int(np.sum(classes == c)) for c in range(len(DEPTH_CLASSES))]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / np.array(counts, dtype=np.float64)[None, :, None, None]
    mean[:, np.array(counts) == 0] = np.nan
    return AttentionResult(labels, token_faces(model), [c[0] for c in DEPTH_CLASSES], mean,
                           counts)
