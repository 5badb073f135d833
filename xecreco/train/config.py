"""The training configuration: a typed schema of dataclasses, YAML loading and ``--set`` overrides.

A config file is YAML whose top-level sections map onto the dataclasses below, read by the one
typed-YAML loader (:mod:`xecreco.config`, shared with the simulation config). Unknown keys are
errors naming the file and the key and suggesting the closest valid one; values of the wrong type
are errors naming the key and the expected type. The user's file is never
rewritten: the resolved config (defaults filled in, overrides applied) is written to the run
directory as ``config.yaml``.

Units: times in ns, energies in GeV, lengths in cm, fractions dimensionless.
"""

from __future__ import annotations

import dataclasses
import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import yaml

from xecreco.config import apply_overrides, build_dataclass, read_yaml_mapping, with_origin
from xecreco.errors import UserError
from xecreco.io.paths import atomic_output

#: Regression targets known to the regressor task, with their units.
TARGET_UNITS = {
    "energy": "GeV",
    "time": "ns (relative to the per-event time reference)",
    "u": "cm",
    "v": "cm",
    "w": "cm",
    "direction": "unit vector",
    "npileup": "photons",
    "pileup": "0 or 1 (in-gate pile-up >= 5 MeV; BCE on a logit)",
    "pileup_energy": "GeV (summed in-gate pile-up energy; subtracted from the energy reference)",
}
LOSS_TYPES = ("smooth_l1", "huber", "mse", "gaussian_nll")
DIRECTION_LOSSES = ("angular", "cosine")


@dataclass
class DataConfig:
    """Where the events come from and how they are batched.

    train_files / val_files: ROOT files or glob patterns. Without val_files, ``val_fraction`` of
    the training entries (the last ones) are held out for validation.
    tree: input tree name. branches: overrides of :class:`xecreco.io.schema.BranchNames` fields.
    step_events: events read per chunk. shuffle_buffer: events held for shuffling across chunks
    (bounds memory: about shuffle_buffer x 38 kB). batch_size: events per optimizer micro-step.
    workers: DataLoader worker processes (0 = read in the training process).
    scaling_events: training events used to fit the target standardisation (mean, scale).
    max_val_events: cap on validation events (None = all).
    source: ``files`` (train_files) or ``simulation``: fresh events simulated as training runs
    (:mod:`xecreco.train.simsource`), never the same event twice. simulation: SimConfig keys
    (``configs/sim-default.yaml``) of that stream; simulation_seed: its event seed (validation
    without val_files: seed simulation_seed + 1, the first max_val_events events, default 4000);
    epoch_events: simulated training events per epoch (all ranks together).
    """

    train_files: list[str] = field(default_factory=list)
    val_files: list[str] = field(default_factory=list)
    val_fraction: float = 0.1
    tree: str = "tree"
    branches: dict = field(default_factory=dict)
    step_events: int = 2048
    shuffle_buffer: int = 4096
    batch_size: int = 128
    workers: int = 0
    scaling_events: int = 4096
    max_val_events: Union[int, None] = None
    source: str = "files"
    simulation: dict = field(default_factory=dict)
    simulation_seed: int = 1
    epoch_events: int = 131072


@dataclass
class ModelConfig:
    """The network: a preset name (:data:`xecreco.models.regressor.presets.PRESETS`) plus
    overrides.

    The dict ``{"preset": preset, **overrides}`` is passed to the task's model builder and stored
    in every checkpoint, so the model is rebuilt from the checkpoint alone.
    init_from: a checkpoint (.pt) whose matching tensors initialise the network, whose target
    scaling and normalisation are kept (fine-tuning; :mod:`xecreco.train.init_from`).
    trainable: parameter-name prefixes (e.g. ``heads.pileup``) of the only tensors that train;
    the rest stay frozen at the ``init_from`` values (null: all train). Needs ``init_from``.
    """

    preset: str = "cpu"
    overrides: dict = field(default_factory=dict)
    init_from: Union[str, None] = None
    trainable: Union[list, None] = None


@dataclass
class TaskConfig:
    """What is trained. name: a task of the registry (:mod:`xecreco.train.tasks`:
    ``regressor``, ``mae``, ``inpainter`` or a plugin's).

    targets: regressor outputs trained (subset of energy, time, u, v, w, direction, npileup).
    """

    name: str = "regressor"
    targets: list[str] = field(
        default_factory=lambda: ["energy", "time", "u", "v", "w", "direction"])


@dataclass
class LossConfig:
    """Per-target losses on standardised targets.

    types: target -> smooth_l1 | huber | mse | gaussian_nll (default smooth_l1; gaussian_nll needs
    a model with uncertainty outputs ``<name>_logvar``). beta: smooth-L1 beta / Huber delta, in
    standard deviations; target_beta: target -> beta for that target alone (a small value, say
    0.1, turns smooth-L1 into L1, whose minimum is the median of the target given the input).
    direction: ``angular`` (opening angle, rad) or ``cosine`` (1 - cos).
    weights: target -> manual weight (default 1). weighting: ``manual`` or ``learned``
    (homoscedastic uncertainty weighting, one learned log-variance per target).
    consistency: weight of the angle-position term (1 - cos between the predicted direction and
    the direction from the event vertex to the predicted (u, v, w) point; needs ``xyzVTX``).
    timing: weight of the timing-consistency term (ns^2; needs targets time, u, v, w): no valid
    sensor time may precede the predicted emission time + time of flight to the predicted
    first-interaction point + light propagation at the xenon light speed by more than
    ``timing_tolerance_ns``. energy_conservation: weight of the term keeping the predicted energy
    within ``energy_tolerance`` (relative) of ``light_gain`` x collected photons; light_gain in
    GeV per photon, None = the median energy / light of the first ``data.batch_size`` training
    events. Both 0 (off) by default (:class:`xecreco.train.losses.PhysicsTerms`).
    reference_scale: how the outputs built on a light-summary reference (energy, u, v) are
    standardised: ``target`` (the spread of the target over the sample) or ``residual`` (the
    robust spread of target - reference, so the network's corrections are of order 1 and each
    target weighs in the loss in units of its own resolution; fitted on the first
    ``data.scaling_events`` training events before the first step).
    """

    types: dict = field(default_factory=dict)
    beta: float = 1.0
    target_beta: dict = field(default_factory=dict)
    direction: str = "angular"
    weights: dict = field(default_factory=dict)
    weighting: str = "manual"
    consistency: float = 0.0
    timing: float = 0.0
    timing_tolerance_ns: float = 2.0
    energy_conservation: float = 0.0
    energy_tolerance: float = 0.1
    light_gain: Union[float, None] = None
    reference_scale: str = "target"


@dataclass
class OptimConfig:
    """AdamW with a per-step schedule.

    lr: peak learning rate. warmup_steps: linear warm-up from 0. schedule: cosine | linear |
    constant after warm-up, down to ``lr * min_lr_ratio`` at the last step. clip_grad_norm: max
    global gradient norm (0 = off). accumulation: micro-batches per optimizer step.
    """

    lr: float = 1.0e-3
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.01
    clip_grad_norm: float = 1.0
    accumulation: int = 1


@dataclass
class EmaConfig:
    """Exponential moving average of the weights (used for validation and in checkpoints).

    decay: per optimizer step; warmup: the effective decay is min(decay, (1+n)/(10+n)).
    """

    enabled: bool = True
    decay: float = 0.999
    warmup: bool = True


@dataclass
class CheckpointConfig:
    """Best-checkpoint choice and checkpoint cadence.

    best_metric: a validation metric to minimise (see :mod:`xecreco.train.metrics`), e.g.
    ``energy_sigma68_rel`` (sigma68 / E) or ``weighted`` = sum of metric_weights[m] * metric m.
    every_steps: write ``last.pt`` every N optimizer steps (0 = only at epoch ends and the end).
    eval_every_steps: validate every N steps (0 = at the end of each epoch).
    """

    best_metric: str = "energy_sigma68_rel"
    metric_weights: dict = field(
        default_factory=lambda: {
            "energy_sigma68_rel": 100.0,
            "u_sigma68": 1.0,
            "v_sigma68": 1.0,
            "w_sigma68": 1.0,
            "time_sigma68": 10.0,
            "angle_68": 0.5,
        }
    )
    every_steps: int = 0
    eval_every_steps: int = 0


@dataclass
class AugmentConfig:
    """Training-only augmentations, applied to the raw batch before normalisation.

    dead_fraction: fraction of sensors marked invalid per event (like dead channels: valid False,
    values zeroed as the reader does). dead_groups: whole readout groups (8 x 4 inner MPPCs, the
    simulation's tiles, xecreco.sim.dead) marked invalid per event, drawn anew for every event,
    in addition to dead_fraction. npho_noise: relative Gaussian noise on npho. time_jitter_ns:
    Gaussian jitter added to every valid sensor time (ns). energy_scale: sigma of a per-event
    multiplicative factor applied to npho and to the energy target together. dead_fill: what
    the invalid sensors hold, ``sentinel`` (as the reader marks them) or repaired as inference
    repairs them, by the ``neighbours`` average (the neighbour-average inpainter) or the bundled
    neural ``inpainter`` (regressor task only; with ``model.overrides.dead_flag: true`` the
    network sees which sensors were repaired, xecreco.train.augment).
    """

    dead_fraction: float = 0.0
    dead_groups: int = 0
    dead_fill: str = "sentinel"
    npho_noise: float = 0.0
    time_jitter_ns: float = 0.0
    energy_scale: float = 0.0


@dataclass
class CurriculumConfig:
    """Curriculum learning (:mod:`xecreco.train.curriculum`): easy events first.

    enabled: off by default. criteria: difficulty measures averaged per event, of ``energy``
    (low energy hard), ``edge`` (near the u/v acceptance edges hard), ``depth`` (deep hard).
    start: difficulty threshold at the first step, in (0, 1]; it rises linearly to 1 (all events)
    over ``steps`` optimizer steps.
    """

    enabled: bool = False
    criteria: list[str] = field(default_factory=lambda: ["energy", "edge"])
    start: float = 0.5
    steps: int = 1000


@dataclass
class RunConfig:
    """Length, seed and logging.

    epochs: passes over the training data, unless max_steps (optimizer steps) is set.
    stop_at_step: end this invocation after this many steps (saving ``last.pt``) without changing
    the schedule, for time-limited batch jobs; ``--resume`` continues. precision: fp32 | bf16
    (autocast). compile: run the training forward through torch.compile (eager with a note
    when no C++ compiler is found; off by default, see docs/performance.md). threads: torch
    intra-op threads per process (None = leave torch's default).
    log_every: steps between metric lines. tensorboard: also log to TensorBoard when installed.
    device: auto | cpu | cuda. parallel: how several processes share the work, ``ddp``
    (replicated weights, all-reduced gradients) or ``fsdp`` (weights, gradients and optimizer
    state sharded over the ranks, :mod:`xecreco.train.fsdp`); ignored with one process.
    """

    epochs: int = 1
    max_steps: Union[int, None] = None
    stop_at_step: Union[int, None] = None
    seed: int = 0
    precision: str = "fp32"
    compile: bool = False
    threads: Union[int, None] = None
    log_every: int = 50
    tensorboard: bool = False
    progress: bool = True
    device: str = "auto"
    parallel: str = "ddp"


@dataclass
class TrainConfig:
    """The whole training configuration (one attribute per YAML section)."""

    data: DataConfig = field(default_factory=DataConfig)
    normalization: dict = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML / checkpoint safe)."""
        return dataclasses.asdict(self)

    def model_config(self) -> dict:
        """The dict handed to the model builder and stored in checkpoints."""
        return {"preset": self.model.preset, **self.model.overrides}


# ---------------------------------------------------------------------------------------------
# Typed construction from plain dicts: xecreco.config (the one typed-YAML loader)


#: Spellings users reach for, per config key (matched like the key itself by
#: :func:`xecreco.config.closest_key`): ``optim.lerning_rate`` is one edit from ``learning_rate``, i.e. ``lr``.
KEY_ALIASES = {"lr": ("learning_rate", "lrate", "learn_rate"), "betas": ("beta",), "weight_decay": ("wd",),
               "warmup_steps": ("warmup",), "clip_grad_norm": ("grad_clip", "clip_grad"),
               "batch_size": ("batch",), "max_steps": ("steps",)}


def _check_values(cfg: TrainConfig) -> None:
    """Value checks that types alone cannot express; raise UserError naming the key."""

    def need(cond, key, what):
        if not cond:
            raise UserError(f"config key '{key}': {what}")

    d, o, r, lo = cfg.data, cfg.optim, cfg.run, cfg.loss
    need(0.0 <= d.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")
    for key in ("step_events", "shuffle_buffer", "batch_size", "scaling_events"):
        need(getattr(d, key) >= 1, f"data.{key}", "must be >= 1")
    need(d.workers >= 0, "data.workers", "must be >= 0")
    need(d.source in ("files", "simulation"), "data.source", "one of files, simulation")
    need(d.simulation_seed >= 0, "data.simulation_seed", "must be >= 0")
    need(d.source == "files" or not d.train_files, "data.train_files",
         "must be empty with data.source: simulation (the events are simulated); drop one")
    need(d.source == "simulation" or not d.simulation, "data.simulation",
         "is read only with data.source: simulation; set it or drop data.simulation")
    need(d.epoch_events >= d.batch_size, "data.epoch_events", "must be >= data.batch_size")
    need(o.lr > 0, "optim.lr", "must be > 0")
    need(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(len(o.betas) == 2 and all(0 <= b < 1 for b in o.betas), "optim.betas",
         "two numbers in [0, 1)")
    need(o.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    need(o.schedule in ("cosine", "linear", "constant"), "optim.schedule",
         "one of cosine, linear, constant")
    need(0 <= o.min_lr_ratio <= 1, "optim.min_lr_ratio", "must be in [0, 1]")
    need(o.clip_grad_norm >= 0, "optim.clip_grad_norm", "must be >= 0 (0 = off)")
    need(o.accumulation >= 1, "optim.accumulation", "must be >= 1")
    need(0 < cfg.ema.decay < 1, "ema.decay", "must be in (0, 1)")
    need(r.epochs >= 1, "run.epochs", "must be >= 1")
    need(r.max_steps is None or r.max_steps >= 1, "run.max_steps", "must be >= 1 or null")
    need(r.stop_at_step is None or r.stop_at_step >= 1, "run.stop_at_step", "must be >= 1 or null")
    need(r.precision in ("fp32", "bf16"), "run.precision", "one of fp32, bf16")
    need(r.device in ("auto", "cpu", "cuda"), "run.device", "one of auto, cpu, cuda")
    need(r.threads is None or r.threads >= 1, "run.threads", "must be >= 1 or null")
    need(r.parallel in ("ddp", "fsdp"), "run.parallel", "one of ddp, fsdp")
    cur = cfg.curriculum
    need(0 < cur.start <= 1, "curriculum.start", "must be in (0, 1]")
    need(cur.steps >= 1, "curriculum.steps", "must be >= 1")
    from xecreco.train.curriculum import CRITERIA

    need(bool(cur.criteria) and all(c in CRITERIA for c in cur.criteria),
         "curriculum.criteria", f"a non-empty list of {', '.join(CRITERIA)}")
    need(r.log_every >= 1, "run.log_every", "must be >= 1")
    if cfg.model.trainable is not None:
        need(bool(cfg.model.trainable) and all(isinstance(k, str) and k
                                               for k in cfg.model.trainable),
             "model.trainable", "a non-empty list of parameter-name prefixes, e.g. "
             "[heads.pileup], or null")
        need(bool(cfg.model.init_from), "model.trainable",
             "freezes every other tensor at the values of model.init_from; set model.init_from")
    need(lo.direction in DIRECTION_LOSSES, "loss.direction",
         f"one of {', '.join(DIRECTION_LOSSES)}")
    need(lo.weighting in ("manual", "learned"), "loss.weighting", "one of manual, learned")
    need(lo.reference_scale in ("target", "residual"), "loss.reference_scale",
         "one of target, residual")
    need(lo.beta > 0, "loss.beta", "must be > 0")
    for name, value in lo.target_beta.items():
        need(isinstance(value, (int, float)) and value > 0, f"loss.target_beta.{name}",
             "must be a number > 0")
    need(lo.consistency >= 0, "loss.consistency", "must be >= 0")
    for key in ("timing", "timing_tolerance_ns", "energy_conservation", "energy_tolerance"):
        need(getattr(lo, key) >= 0, f"loss.{key}", "must be >= 0")
    need(lo.light_gain is None or lo.light_gain > 0, "loss.light_gain",
         "must be > 0 (GeV per photon) or null (fitted on training events)")
    from xecreco.normalization import NormalizationSpec

    try:
        NormalizationSpec.from_dict(cfg.normalization)
    except UserError as exc:
        raise UserError(f"config section 'normalization': {exc}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"config section 'normalization' is invalid: {exc}") from None
    a = cfg.augment
    need(0 <= a.dead_fraction < 1, "augment.dead_fraction", "must be in [0, 1)")
    from xecreco.sim.dead import GROUP_COLS, GROUP_ROWS, check_group_count

    check_group_count(a.dead_groups, GROUP_ROWS, GROUP_COLS, "config key 'augment.dead_groups'")
    for key in ("npho_noise", "time_jitter_ns", "energy_scale"):
        need(getattr(a, key) >= 0, f"augment.{key}", "must be >= 0")
    from xecreco.train.augment import DEAD_FILLS

    need(a.dead_fill in DEAD_FILLS, "augment.dead_fill", f"one of {', '.join(DEAD_FILLS)}")
    from xecreco.train.tasks import check_task_config

    check_task_config(cfg)  # the task's own keys (TaskSpec.validate_config)


def config_from_dict(values: dict, origin: str | None = None) -> TrainConfig:
    """Validated :class:`TrainConfig` from a nested dict (raises UserError on any bad key/value;
    the message starts with ``origin``, e.g. ``config file c.yaml``, when given)."""
    cfg = build_dataclass(TrainConfig, values, origin=origin, aliases=KEY_ALIASES)
    try:
        _check_values(cfg)
    except UserError as exc:
        raise UserError(with_origin(origin, str(exc))) from None
    return cfg


def load_config(config, overrides=()) -> TrainConfig:
    """A validated config from a YAML path, a dict or a TrainConfig, with ``--set`` overrides.

    Relative file paths in ``data.train_files`` / ``data.val_files`` of a YAML file are taken
    relative to the file's folder.
    """
    base_dir, origin = None, None
    if isinstance(config, TrainConfig):
        values = config.to_dict()
    elif isinstance(config, dict):
        values = config
    else:
        values = read_yaml_mapping(config, "config file")
        base_dir = Path(config).resolve().parent
        origin = f"config file {config}"
    cfg = config_from_dict(apply_overrides(values, overrides), origin)
    if base_dir is not None:
        cfg.data.train_files = [_relative_to(p, base_dir) for p in cfg.data.train_files]
        cfg.data.val_files = [_relative_to(p, base_dir) for p in cfg.data.val_files]
        if cfg.model.init_from:
            cfg.model.init_from = _relative_to(cfg.model.init_from, base_dir)
    return cfg


def _relative_to(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or glob.glob(str(p)):
        return str(p)
    return str(base / p)


def expand_files(patterns: list[str], key: str) -> list[str]:
    """Expand globs in order (sorted within a pattern); UserError when a pattern matches nothing."""
    files: list[str] = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(Path(pattern).expanduser())))
        if not matches:
            raise UserError(f"config key '{key}': no file matches '{pattern}'")
        files.extend(matches)
    return files


def write_config(cfg: TrainConfig, path) -> None:
    """Write the resolved config as YAML (temporary name of :func:`xecreco.io.paths.atomic_output`,
    then rename)."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "w") as handle:
        yaml.safe_dump(cfg.to_dict(), handle, sort_keys=False)
