"""Streaming, shuffled training data from ROOT files.

Each DDP rank takes a contiguous entry range of the training entries and each DataLoader worker a
contiguous sub-range of it. A worker reads its range in chunks of ``step_events`` (chunk order
shuffled per epoch), augments the raw batch, turns it into normalised features
(:class:`xecreco.normalization.NormalizationSpec`) and standardised targets
(:class:`xecreco.normalization.TargetScaling`), and mixes events across chunks through a shuffle
buffer; memory stays bounded by ``shuffle_buffer + step_events`` events per worker.
Every random choice comes from a generator seeded by (seed, epoch, rank, worker), so an epoch is
reproducible and a resumed run replays the same batches.

A batch is a dict: ``features`` (B, 4760, C) float32 tensor, ``targets`` {name: (B,) or (B, 3)
float32 tensor, standardised except the unit ``direction``}, optional ``vertex`` (B, 3) cm, and in
validation batches ``truth`` {name: physical numpy array}.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xecreco.errors import UserError
from xecreco.io.batch import EventBatch
from xecreco.train.augment import augment_batch
from xecreco.train.config import AugmentConfig, DataConfig, expand_files
from xecreco.train.targets import compute_targets, fit_target_scaling, truth_branches

#: Targets that are standardised (the direction stays a unit vector).
STANDARDISED = ("energy", "time", "u", "v", "w", "npileup", "pileup_energy")


def split_range(start: int, stop: int, parts: int, index: int) -> tuple[int, int]:
    """The ``index``-th of ``parts`` contiguous, near-equal sub-ranges of [start, stop)."""
    n = stop - start
    return start + n * index // parts, start + n * (index + 1) // parts


def _take(pool: dict, index) -> dict:
    return {k: (_take(v, index) if isinstance(v, dict) else v[index]) for k, v in pool.items()}


class _Pool:
    """The shuffle buffer: preallocated arrays (nested like an encoded part) holding ``size``
    events; appending a part copies it in place and compaction gathers into a second set of
    arrays, so no event is copied more than once per append and once per compaction (no
    concatenation of the whole buffer per chunk). ``features_slot(n)`` lets the encoder write
    the normalised features of the next part straight into the buffer."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.size = 0
        self.arrays: dict | None = None
        self.spare: dict | None = None
        self._slot: np.ndarray | None = None

    @staticmethod
    def _allocate(like: dict, capacity: int) -> dict:
        return {k: (_Pool._allocate(v, capacity) if isinstance(v, dict)
                    else np.empty((capacity,) + np.shape(v)[1:], dtype=np.asarray(v).dtype))
                for k, v in like.items()}

    def features_slot(self, n: int) -> np.ndarray | None:
        """A view of the buffer's next ``n`` feature rows (None before the first append, or when
        they would not fit)."""
        self._slot = None
        if self.arrays is not None and self.size + n <= self.capacity:
            self._slot = self.arrays["features"][self.size:self.size + n]
        return self._slot

    def append(self, part: dict) -> None:
        n = _size(part)
        in_place = part["features"] is self._slot and self._slot is not None
        self._slot = None
        if self.arrays is None:
            self.capacity = max(self.capacity, n)
            self.arrays = self._allocate(part, self.capacity)
        if self.size + n > self.capacity:
            self._grow(self.size + n)
        if in_place:
            part = {k: v for k, v in part.items() if k != "features"}
        self._copy_in(self.arrays, part, self.size, n)
        self.size += n

    def _copy_in(self, dest: dict, part: dict, start: int, n: int) -> None:
        for key, value in part.items():
            if isinstance(value, dict):
                self._copy_in(dest[key], value, start, n)
            else:
                dest[key][start:start + n] = value

    def _grow(self, needed: int) -> None:
        bigger = self._allocate(self.arrays, needed)
        self._copy_in(bigger, self.view(), 0, self.size)
        self.arrays, self.spare, self.capacity = bigger, None, needed

    def view(self, rows=None) -> dict:
        rows = slice(0, self.size) if rows is None else rows

        def cut(arrays):
            return {k: (cut(v) if isinstance(v, dict) else v[rows]) for k, v in arrays.items()}

        return cut(self.arrays)

    def take(self, index) -> dict:
        """Fresh arrays of the events at ``index`` (positions in the buffer)."""
        return _take(self.view(), index)

    def keep_only(self, index) -> None:
        """Keep the events at ``index``, in that order, at the start of the buffer."""
        if self.spare is None:
            self.spare = self._allocate(self.arrays, self.capacity)

        def gather(src, dest):
            for key, value in src.items():
                if isinstance(value, dict):
                    gather(value, dest[key])
                else:
                    np.take(value, index, axis=0, out=dest[key][:len(index)])

        gather(self.view(), self.spare)
        self.arrays, self.spare = self.spare, self.arrays
        self.size = len(index)


def _size(pool: dict) -> int:
    return len(pool["features"])


def _to_torch(pool: dict) -> dict:
    out = {"features": torch.from_numpy(np.ascontiguousarray(pool["features"]))}
    out["targets"] = {k: torch.from_numpy(np.ascontiguousarray(v))
                      for k, v in pool["targets"].items()}
    if "vertex" in pool:
        out["vertex"] = torch.from_numpy(np.ascontiguousarray(pool["vertex"]))
    if "truth" in pool:
        out["truth"] = pool["truth"]
    return out


class EventEncoder:
    """EventBatch -> arrays of features and standardised targets (the per-chunk work)."""

    def __init__(self, spec, scaling, targets, need_vertex=False, truth_names=None,
                 dead_flag=False):
        self.spec = spec
        self.dead_flag = bool(dead_flag)  # features with the dead-flag channel (C = 3)
        self.scaling = scaling
        self.targets = list(targets)
        self.need_vertex = need_vertex
        self.truth_names = truth_names or {}

    def physical_targets(self, batch, reference_ns=None) -> dict:
        if reference_ns is None and "time" in self.targets:
            reference_ns = self.spec.time_reference_ns(batch)
        return compute_targets(batch, self.targets, reference_ns, self.truth_names)

    def encode(self, batch, keep_truth=False, energy_factor=None, features_out=None) -> dict:
        """Features and standardised targets of ``batch`` (numpy, float32).

        The event time reference is found once for the features and the time target;
        ``features_out`` (optional (N, 4760, C) float32) receives the features in place.
        """
        reference = self.spec.time_reference_ns(batch)
        truth = self.physical_targets(batch, reference)
        if energy_factor is not None and "energy" in truth:
            truth["energy"] = truth["energy"] * energy_factor
        pool = {"features": self.spec.features(batch, out=features_out, reference_ns=reference,
                                               flag=self.dead_flag)}
        pool["targets"] = {
            name: np.asarray(
                self.scaling.standardize(name, value) if name in STANDARDISED else value,
                dtype=np.float32)
            for name, value in truth.items()
        }
        if self.need_vertex:
            pool["vertex"] = np.asarray(batch.vertex, dtype=np.float32)
        if keep_truth:
            pool["truth"] = truth
        return pool


class ShuffledStream(IterableDataset):
    """One rank's training stream for one epoch (see the module docstring).

    Args:
        files, tree, branches: input (``branches`` a BranchNames or None).
        entry_range: (start, stop) global entries of this rank.
        epoch, rank, seed: seed the chunk order, the buffer and the augmentations.
        batch_size, shuffle_buffer, step_events: sizes in events.
        encoder: :class:`EventEncoder`. augment: :class:`AugmentConfig`.
        truth, extras: what the reader must load. fill: the ``augment.dead_fill`` inpainter.
    """

    def __init__(self, files, tree, branches, entry_range, epoch, rank, seed, batch_size,
                 shuffle_buffer, step_events, encoder, augment, truth, extras=(), fill=None):
        super().__init__()
        self.files, self.tree, self.branches = files, tree, branches
        self.entry_range = entry_range
        self.epoch, self.rank, self.seed = epoch, rank, seed
        self.batch_size, self.shuffle_buffer = batch_size, shuffle_buffer
        self.step_events = step_events
        self.encoder, self.augment = encoder, augment
        self.truth, self.extras = truth, tuple(extras)
        self.fill = fill

    def chunks(self, rng: np.random.Generator, worker: int, workers: int):
        """This worker's chunks of raw events for the epoch, in shuffled order: an iterable of
        iterables of :class:`~xecreco.io.batch.EventBatch` (one per ``step_events`` range)."""
        from xecreco.io.reader import iterate_batches

        start, stop = split_range(*self.entry_range, workers, worker)
        step = self.step_events
        ranges = [(s, min(s + step, stop)) for s in range(start, stop, step)]
        for chunk_index in rng.permutation(len(ranges)):
            c_start, c_stop = ranges[chunk_index]
            yield iterate_batches(self.files, tree=self.tree, branches=self.branches,
                                  truth=self.truth, extras=self.extras,
                                  step_events=self.step_events, entry_start=c_start,
                                  entry_stop=c_stop)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker])
        pool = _Pool(self.shuffle_buffer + self.step_events)
        for chunk in self.chunks(rng, worker, workers):
            for batch in chunk:
                batch, factor = augment_batch(batch, self.augment, rng, self.fill)
                slot = pool.features_slot(len(batch))
                pool.append(self.encoder.encode(batch, energy_factor=factor, features_out=slot))
            if pool.size >= self.shuffle_buffer:
                # Emit random batches until half a buffer is left; the rest mixes with later chunks.
                perm = rng.permutation(pool.size)
                keep = self.shuffle_buffer // 2
                n_out = (pool.size - keep) // self.batch_size * self.batch_size
                for b in range(0, n_out, self.batch_size):
                    yield _to_torch(pool.take(perm[b:b + self.batch_size]))
                pool.keep_only(perm[n_out:])
        if pool.size:
            perm = rng.permutation(pool.size)
            for b in range(0, pool.size - self.batch_size + 1, self.batch_size):
                yield _to_torch(pool.take(perm[b:b + self.batch_size]))


def _worker_init(_):
    torch.set_num_threads(1)


class RootSource:
    """Training and validation batches from ROOT files, for the training loop.

    Fits the target standardisation on the first ``data.scaling_events`` training entries
    (unless ``target_scaling`` is given, e.g. on resume) and exposes ``normalization`` and
    ``target_scaling`` dicts for checkpoints. ``dead_flag``: features with the dead-flag
    channel; ``fill``: the inpainter of ``augment.dead_fill`` (required unless sentinel).
    """

    def __init__(self, data: DataConfig, augment: AugmentConfig, targets, normalization: dict,
                 seed: int = 0, need_vertex: bool = False, target_scaling: dict | None = None,
                 dead_flag: bool = False, fill=None):
        from xecreco.io.rootfile import count_entries

        self._setup(data, augment, targets, seed, fill, need_vertex)
        self.train_files = expand_files(data.train_files, "data.train_files")
        if not self.train_files:
            raise UserError("config key 'data.train_files' is empty: list the training ROOT files")
        n_train = count_entries(self.train_files, tree=data.tree)
        if need_vertex:
            _require_vertex(self.train_files + expand_files(data.val_files, "data.val_files"),
                            data.tree, self.branches)
        if data.val_files:
            self.val_files = expand_files(data.val_files, "data.val_files")
            self.val_range = (0, count_entries(self.val_files, tree=data.tree))
            self.train_range = (0, n_train)
        else:
            self.val_files = self.train_files
            n_val = int(round(n_train * data.val_fraction))
            self.train_range, self.val_range = (0, n_train - n_val), (n_train - n_val, n_train)
        if data.max_val_events is not None:
            first, last = self.val_range
            self.val_range = (first, min(last, first + data.max_val_events))
        if self.train_range[1] - self.train_range[0] < data.batch_size:
            raise UserError(
                f"only {self.train_range[1] - self.train_range[0]} training events in "
                f"{', '.join(self.train_files)}; data.batch_size is {data.batch_size}"
            )
        self._setup_encoding(normalization, target_scaling, need_vertex, dead_flag)

    def _setup(self, data, augment, targets, seed, fill, need_vertex) -> None:
        """What every source keeps: configs, seed, the dead-fill inpainter, targets, branches."""
        self.data, self.augment, self.seed = data, augment, seed
        if augment.dead_fill != "sentinel" and fill is None:
            raise UserError(f"config key 'augment.dead_fill': {augment.dead_fill} is for the "
                            "regressor task (it repairs sensors before the regressor); use "
                            "sentinel")
        self.fill = fill
        self.targets = list(targets)
        self.branches = _branch_names(data.branches)
        self.truth = truth_branches(self.targets) + (["xyzVTX"] if need_vertex else [])

    def _setup_encoding(self, normalization, target_scaling, need_vertex, dead_flag) -> None:
        """Normalisation, target standardisation (given or fitted) and the event encoder."""
        from xecreco.normalization import NormalizationSpec

        try:
            self.spec = NormalizationSpec.from_dict(normalization)
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(f"config section 'normalization' is invalid: {exc}") from None
        self.scaling = self._load_scaling(target_scaling) if target_scaling else self._fit_scaling()
        self.scaling_fitted = not target_scaling  # False when given (resume, init_from)
        self.encoder = EventEncoder(self.spec, self.scaling, self.targets, need_vertex,
                                    dead_flag=dead_flag)

    # -- standardisation ------------------------------------------------------------------
    def _load_scaling(self, values: dict):
        from xecreco.normalization import TargetScaling

        return TargetScaling.from_dict(values)

    def first_training_batches(self, events: int, step_events: int):
        """The first ``events`` training events (unaugmented), in batches of ``step_events``;
        also returns a description of them for messages: (iterable, description)."""
        from xecreco.io.reader import iterate_batches

        stop = min(self.train_range[1], self.train_range[0] + events)
        batches = iterate_batches(self.train_files, tree=self.data.tree, branches=self.branches,
                                  truth=self.truth, step_events=step_events,
                                  entry_start=self.train_range[0], entry_stop=stop)
        return batches, (f"the first {stop - self.train_range[0]} training events of "
                         f"{', '.join(map(str, self.train_files))}")

    def _fit_scaling(self):
        batches, description = self.first_training_batches(self.data.scaling_events,
                                                           self.data.step_events)
        collected: dict[str, list] = {}
        for batch in batches:
            ref = self.spec.time_reference_ns(batch) if "time" in self.targets else None
            for name, value in compute_targets(batch, self.targets, ref).items():
                collected.setdefault(name, []).append(value)
        values = {k: np.concatenate(v) for k, v in collected.items() if k in STANDARDISED}
        return fit_target_scaling(values, description)

    @property
    def normalization(self) -> dict:
        return self.spec.to_dict()

    @property
    def target_scaling(self) -> dict:
        return self.scaling.to_dict()

    def affine(self, name: str) -> tuple[float, float]:
        """(mean, scale) with physical = standardised * scale + mean for target ``name``."""
        zero, one = self.scaling.destandardize(name, np.array([0.0, 1.0]))
        return float(zero), float(one - zero)

    def to_physical(self, name: str, values: np.ndarray) -> np.ndarray:
        """Model output (standardised) -> physical units."""
        if name in STANDARDISED:
            return np.asarray(self.scaling.destandardize(name, values))
        return np.asarray(values)

    def calibration_batch(self, events: int | None = None) -> dict:
        """The first ``events`` (default ``data.batch_size``) training events, unaugmented, with
        physical ``truth`` (the same on every rank; used to calibrate model references before
        training)."""
        n = events or self.data.batch_size
        batches, _ = self.first_training_batches(n, n)
        batch = EventBatch.concatenate(list(batches))
        return _to_torch(self.encoder.encode(batch, keep_truth=True))

    # -- streams --------------------------------------------------------------------------
    def _rank_range(self, rank: int, world: int) -> tuple[int, int]:
        return split_range(*self.train_range, world, rank)

    def steps_per_epoch(self, world: int) -> int:
        """Micro-batches every rank yields per epoch (the minimum over ranks)."""
        workers = max(1, self.data.workers)
        counts = []
        for rank in range(world):
            r = self._rank_range(rank, world)
            counts.append(sum((b - a) // self.data.batch_size
                              for a, b in (split_range(*r, workers, w) for w in range(workers))))
        return min(counts)

    def train_stream(self, epoch: int, rank: int, world: int) -> ShuffledStream:
        """This rank's :class:`ShuffledStream` of ``epoch`` (sources override it)."""
        return ShuffledStream(self.train_files, self.data.tree, self.branches,
                              self._rank_range(rank, world), epoch, rank, self.seed,
                              self.data.batch_size, self.data.shuffle_buffer,
                              self.data.step_events,
                              self.encoder, self.augment, self.truth, fill=self.fill)

    def train_batches(self, epoch: int, rank: int, world: int):
        """Iterable over this rank's shuffled, augmented training batches of ``epoch``: the
        :meth:`train_stream`, in ``data.workers`` DataLoader workers when > 0."""
        stream = self.train_stream(epoch, rank, world)
        if self.data.workers == 0:
            return stream
        # An own generator: creating the loader must not consume the global torch RNG (resume).
        generator = torch.Generator().manual_seed(self.seed * 1000003 + epoch * 101 + rank)
        return DataLoader(stream, batch_size=None, num_workers=self.data.workers,
                          worker_init_fn=_worker_init, generator=generator)

    def val_batches(self, rank: int, world: int) -> Iterator[dict]:
        """This rank's validation batches (in order, no augmentation, with physical ``truth``)."""
        from xecreco.io.reader import iterate_batches

        start, stop = split_range(*self.val_range, world, rank)
        if stop <= start:
            return
        for batch in iterate_batches(self.val_files, tree=self.data.tree, branches=self.branches,
                                     truth=self.truth, step_events=self.data.batch_size,
                                     entry_start=start, entry_stop=stop):
            yield _to_torch(self.encoder.encode(batch, keep_truth=True))


def _require_vertex(files: list[str], tree: str, names) -> None:
    """UserError (one line, before any training) unless every file has the vertex branch."""
    from xecreco.io.rootfile import list_branches

    branch = names.xyzVTX if names is not None else "xyzVTX"
    for path in files:
        if branch not in list_branches(path, tree):
            raise UserError(f"{path}: tree '{tree}' has no vertex branch '{branch}', which "
                            "loss.consistency and the light summary's vertex input need; map it "
                            "with data.branches, or set loss.consistency=0 and "
                            "model.overrides.summary.vertex=false")


def _branch_names(overrides: dict):
    """A :class:`xecreco.io.schema.BranchNames` with ``overrides`` (None when there are none)."""
    if not overrides:
        return None
    from xecreco.io.schema import BranchNames

    return BranchNames.from_dict(overrides)
