"""The fusion attention of the neural regressor: which face tokens each token reads from.

Every fusion layer's :class:`~xecreco.models.nn.attention.MultiHeadAttention` applies its
softmax through a child module; a forward hook on it records the weights (N, heads, L, L) without
changing any output. Tokens, in the regressor's order: the CLS token (whose fused value feeds the
heads), then the face tokens in :data:`~xecreco.models.nn.encoder.FACE_ORDER`; with a multi-scale
encoder each rectangular face first has one token per earlier stage ("inner s1"), then its K
last-stage tokens ("inner 1" .. "inner K"). Weights are averaged over heads and over the events
of each depth class of the true first-interaction depth w.

With the Perceiver fusion (``fusion.type: perceiver``) there is no token-to-token fusion; what
the network reads is its cross-attention: K latents (queries) over every cell of every face's last
feature map and every face token (keys). Its weights are summed per face into two key columns,
"<face> cells" and "<face> tokens", so one row (a latent) still sums to 1.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from xecreco.models.nn.encoder import FACE_ORDER

__all__ = ["DEPTH_CLASSES", "token_labels", "token_faces", "capture_attention",
           "capture_cross_attention", "perceiver_columns", "AttentionResult",
           "fusion_attention"]

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


@contextmanager
def capture_cross_attention(model):
    """Perceiver fusion: inside the block the yielded dict receives ``weights``, a list of the
    cross-attention weights of every forward pass ((N, heads, K, L) float32 CPU tensors), and
    ``cells``, {face: cells or nodes of its last feature map} of the latest pass."""
    record: dict = {"weights": [], "cells": {}}
    perceiver = model.perceiver

    def cells(_module, args):
        maps = args[0]
        record["cells"] = {name: int(maps[name].shape[1] * maps[name].shape[2])
                           if maps[name].dim() == 4 else int(maps[name].shape[1])
                           for name in perceiver.faces}

    handles = [perceiver.register_forward_pre_hook(cells),
               perceiver.cross.softmax.register_forward_hook(
                   lambda _m, _i, output: record["weights"].append(output.detach().float().cpu()))]
    try:
        yield record
    finally:
        for handle in handles:
            handle.remove()


def perceiver_columns(model, cells: dict) -> tuple[list[str], list[str], np.ndarray]:
    """Key columns of the Perceiver cross-attention: (labels, their faces, (L,) column index of
    every context element), the context being every face's cells then the face tokens."""
    labels = [f"{name} cells" for name in FACE_ORDER] + [f"{name} tokens" for name in FACE_ORDER]
    faces = list(FACE_ORDER) * 2
    index = [FACE_ORDER.index(name) for name in model.perceiver.faces
             for _ in range(cells[name])]
    index += [len(FACE_ORDER) + FACE_ORDER.index(face) for face in token_faces(model)[1:]]
    return labels, faces, np.asarray(index)


@dataclass
class AttentionResult:
    """Mean fusion attention.

    Attributes:
        labels: query names (rows): the fused tokens, or the Perceiver latents.
        faces: face of every key column ("CLS" for the CLS token).
        classes: depth-class labels.
        weights: (layers, classes, rows, columns) mean weights (each row sums to 1); NaN for a
            class without events.
        counts: events per depth class.
        columns: key names (columns); the same as ``labels`` for the transformer fusion.
        kind: "transformer" (token-to-token self-attention per fusion layer) or "perceiver"
            (one cross-attention of the latents over the cells and tokens of every face).
    """

    labels: list
    faces: list
    classes: list
    weights: np.ndarray
    counts: list
    columns: list = None
    kind: str = "transformer"

    def __post_init__(self):
        if self.columns is None:
            self.columns = list(self.labels)

    def event_row(self, layer: int, c: int) -> np.ndarray:
        """Attention of what feeds the output heads on every key column: the CLS token's row,
        or for the Perceiver the mean of the first latent's row and of the other latents'
        mean row (the event embedding is the first latent and the mean of the others)."""
        rows = self.weights[layer, c]
        if self.kind == "perceiver":
            return 0.5 * (rows[0] + rows[1:].mean(axis=0))
        return rows[0]

    def cls_by_face(self) -> dict:
        """layer -> class -> {face: attention of the event row (:meth:`event_row`) on that
        face's keys}."""
        out = {}
        faces = np.array(self.faces)
        for layer in range(self.weights.shape[0]):
            per_class = {}
            for c, label in enumerate(self.classes):
                row = self.event_row(layer, c)
                per_class[label] = {f: float(np.sum(row[faces == f])) for f in ("CLS",) +
                                    FACE_ORDER}
            name = "cross-attention" if self.kind == "perceiver" else f"layer {layer + 1}"
            out[name] = per_class
        return out


def _depth_classes(w_true_cm) -> np.ndarray:
    """Depth-class index (:data:`DEPTH_CLASSES`) of every event, -1 outside all."""
    w_true_cm = np.asarray(w_true_cm, dtype=np.float64)
    classes = np.full(len(w_true_cm), -1)
    for c, (_, lo, hi) in enumerate(DEPTH_CLASSES):
        classes[(w_true_cm >= lo) & (w_true_cm < hi)] = c
    return classes


def _forward_chunks(member, batch, chunk: int):
    """Run the member network over ``batch`` in chunks; yields each chunk's row slice after
    its forward pass (inference mode)."""
    model = member.model
    features = member.normalization.features(batch, flag=member.dead_flag)
    uses_vertex = bool(getattr(model, "uses_vertex", False))
    device = next(model.parameters()).device
    for start in range(0, len(batch), chunk):
        rows = slice(start, start + chunk)
        x = torch.from_numpy(features[rows]).to(device)
        if uses_vertex:
            vertex = None if batch.vertex is None else torch.as_tensor(
                np.asarray(batch.vertex[rows], dtype=np.float32)).to(device)
            model(x, vertex)
        else:
            model(x)
        yield rows


def _class_means(sums: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, list]:
    counts = [int(np.sum(classes == c)) for c in range(len(DEPTH_CLASSES))]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sums / np.array(counts, dtype=np.float64)[None, :, None, None]
    mean[:, np.array(counts) == 0] = np.nan
    return mean, counts


def fusion_attention(member, batch, w_true_cm, chunk: int = 256) -> AttentionResult:
    """Mean attention of every fusion layer of one member network over ``batch``, per depth
    class of ``w_true_cm`` (N,) cm; for the Perceiver fusion its cross-attention per face
    (module doc)."""
    model = member.model
    classes = _depth_classes(w_true_cm)
    if getattr(model, "perceiver", None) is not None:
        return _perceiver_attention(member, batch, classes, chunk)
    labels = token_labels(model)
    length = len(labels)
    sums = np.zeros((len(model.fusion), len(DEPTH_CLASSES), length, length))
    with torch.inference_mode(), capture_attention(model) as record:
        for rows in _forward_chunks(member, batch, chunk):
            per_event = [w.mean(dim=1).double().numpy() for w in record]  # (n, L, L) per layer
            record.clear()
            cls = classes[rows]
            for layer, weights in enumerate(per_event):
                for c in range(len(DEPTH_CLASSES)):
                    sums[layer, c] += weights[cls == c].sum(axis=0)
    mean, counts = _class_means(sums, classes)
    return AttentionResult(labels, token_faces(model), [c[0] for c in DEPTH_CLASSES], mean,
                           counts)


def _perceiver_attention(member, batch, classes: np.ndarray, chunk: int) -> AttentionResult:
    model = member.model
    latents = int(model.perceiver.latents.shape[0])
    labels = [f"latent {k + 1}" for k in range(latents)]
    columns = faces = None
    sums = None
    with torch.inference_mode(), capture_cross_attention(model) as record:
        for rows in _forward_chunks(member, batch, chunk):
            if columns is None:
                columns, faces, index = perceiver_columns(model, record["cells"])
                onehot = np.zeros((len(index), len(columns)))
                onehot[np.arange(len(index)), index] = 1.0
                sums = np.zeros((1, len(DEPTH_CLASSES), latents, len(columns)))
            weights = torch.cat(record["weights"]).mean(dim=1).double().numpy()  # (n, K, L)
            record["weights"].clear()
            grouped = weights @ onehot  # (n, K, columns): summed per face and kind
            cls = classes[rows]
            for c in range(len(DEPTH_CLASSES)):
                sums[0, c] += grouped[cls == c].sum(axis=0)
    mean, counts = _class_means(sums, classes)
    return AttentionResult(labels, faces, [c[0] for c in DEPTH_CLASSES], mean, counts,
                           columns=columns, kind="perceiver")
