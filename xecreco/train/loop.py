"""The training loop: optimisation, validation, logging, checkpoints and exact resume.

Run directory contents: ``config.yaml`` (resolved config), ``train.csv`` (step, epoch, lr, loss
and its parts, events/s every ``run.log_every`` steps), ``val.csv`` (validation loss and physics
metrics), ``last.pt`` (everything needed to resume), ``best.pt`` (lowest ``checkpoint.best_metric``;
its ``state_dict`` holds the evaluated weights, i.e. the EMA weights when EMA is on),
``result.json`` and, with ``run.tensorboard``, a ``tb/`` folder.

Resume restores model, optimizer, learned loss weights, EMA, step, epoch, the position inside the
epoch (micro-batches consumed; the deterministic stream is replayed up to it) and every rank's
torch RNG state, so a resumed run reaches the same weights as an uninterrupted one.

The pieces around the loop: :mod:`xecreco.train.runtime` (device, threads, parameter groups, the
model-plus-loss module) and :mod:`xecreco.train.runlog` (CSV logs, TensorBoard, the stop flag).
"""

from __future__ import annotations

import copy
import json
import math
import time
import warnings
from itertools import islice
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xecreco.errors import UserError
from xecreco.io.paths import temp_path
from xecreco.train import curriculum, ddp, fsdp
from xecreco.train.checkpoint import load_checkpoint, save_checkpoint
from xecreco.train.config import TrainConfig, write_config
from xecreco.train.ema import ModelEma
from xecreco.train.init_from import CALIBRATION_KEYS
from xecreco.train.runlog import CsvLog, StopFlag, tensorboard_writer
from xecreco.train.runtime import (
    TrainModule,
    adamw_options,
    choose_device,
    intra_op_threads,
    param_groups,
    to_device,
)
from xecreco.train.schedule import lr_factor, set_lr
from xecreco.train.tasks import TaskSpec, get_task, model_outputs


def run_training(cfg: TrainConfig, run_dir, resume: bool = False, task: TaskSpec | None = None,
                 source=None, callbacks=()) -> dict:
    """Train according to ``cfg`` in ``run_dir``; returns the summary of
    :func:`xecreco.train.api.train`.

    ``task`` overrides the registered task of ``cfg.task.name`` and ``source`` the task's data
    source (Python API, tests). ``callbacks`` are called as ``cb(step, trainer_state)`` after
    every optimizer step.
    """
    task = task or get_task(cfg.task.name)
    run_dir = Path(run_dir)
    info = ddp.env_info()
    torch.set_num_threads(intra_op_threads(cfg, info))
    device = choose_device(cfg, info.local_rank)
    info = ddp.init_distributed(device)
    try:
        return _Trainer(cfg, run_dir, resume, task, source, callbacks, info, device).run()
    finally:
        ddp.shutdown(info)


def write_result(run_dir: Path, result: dict) -> Path:
    """Write ``result`` as ``run_dir/result.json`` atomically: a fresh temporary name of
    :func:`xecreco.io.paths.temp_path`, renamed on success and removed on failure."""
    path = Path(run_dir) / "result.json"
    tmp = temp_path(path)
    try:
        tmp.write_text(json.dumps(result, indent=2, default=float))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class _Trainer:
    def __init__(self, cfg, run_dir, resume, task, source, callbacks, info, device):
        self.cfg, self.run_dir, self.task, self.info, self.device = cfg, run_dir, task, info, device
        self.callbacks = list(callbacks)
        main = info.is_main
        ckpt = None
        if resume:
            last = run_dir / "last.pt"
            if not last.is_file():
                raise UserError(f"cannot resume: {last} does not exist "
                                "(train without --resume first)")
            ckpt = load_checkpoint(last)
            if ckpt["task"] != task.name:
                raise UserError(f"cannot resume: {last} is a '{ckpt['task']}' checkpoint, "
                                f"config task is '{task.name}'")
            if ckpt["model_config"] != task.resolved_model_config(cfg):
                raise UserError(f"cannot resume: the model config in {last} differs from the "
                                "config's model section; resume with the run's config.yaml")
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if not resume and (run_dir / "last.pt").exists():
                raise UserError(f"run directory {run_dir} already holds a run (last.pt); use "
                                "--resume to continue it or choose another -o RUN_DIR")
        ddp.barrier(info)

        init = None  # model.init_from: weights, target scaling, normalisation (not on resume)
        if cfg.model.init_from and not ckpt:
            from xecreco.train import init_from

            init = init_from.load_init_checkpoint(cfg.model.init_from)
            cfg = self.cfg = init_from.with_normalization(cfg, init)
        if source is None and init is not None:
            source = init_from.build_source(task, cfg, init)
        self.source = source if source is not None else task.build_source(
            cfg, target_scaling=ckpt["target_scaling"] if ckpt else None)
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model_config = task.resolved_model_config(cfg)
        self.model = task.build_model(self.model_config).to(device)
        if task.prepare_model is not None and not ckpt:
            task.prepare_model(self.model, self.source)
        #: calibrations of the init_from checkpoint that stay valid (frozen fine-tuning)
        self.kept_calibrations: dict = {} if not ckpt else {  # resumed: the run's own
            key: ckpt[key] for key in CALIBRATION_KEYS if ckpt.get(key)}
        if init is not None:
            report = init_from.load_matching_weights(self.model, init, cfg.model.init_from)
            if main:
                print(init_from.describe(report, cfg.model.init_from), flush=True)
            if cfg.model.trainable:
                trainable = init_from.freeze_except(self.model, cfg.model.trainable)
                self.kept_calibrations = init_from.kept_calibrations(init, report, trainable)
                if main:
                    print(f"xecreco train: model.trainable: {len(trainable)} tensors train, the "
                          "rest are frozen" + (f"; keeping {', '.join(self.kept_calibrations)} "
                                               "of model.init_from"
                                               if self.kept_calibrations else ""), flush=True)
        self.loss = task.build_loss(cfg, self.source).to(device)
        self.module = TrainModule(self.model, self.loss)
        # run.parallel fsdp: validation runs on an unsharded copy (rank-local batches)
        self.sharded = info.distributed and cfg.run.parallel == "fsdp"
        if self.sharded:
            self.eval_model = copy.deepcopy(self.model)
            self.eval_loss = copy.deepcopy(self.loss)
            fsdp.shard(self.module, self.model, device)
        self.optimizer = torch.optim.AdamW(param_groups(self.module, cfg.optim.weight_decay),
                                           lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           **adamw_options(device, self.sharded))
        self.ema = ModelEma(self.model, cfg.ema.decay, cfg.ema.warmup) if cfg.ema.enabled else None
        if not self.sharded:
            self.eval_model = copy.deepcopy(self.model) if self.ema is not None else self.model
            self.eval_loss = self.loss

        self.curriculum = curriculum.from_config(cfg)  # easy events first (None: all events)
        micro = self.source.steps_per_epoch(info.world)
        self.steps_per_epoch = micro // cfg.optim.accumulation
        if self.steps_per_epoch < 1:
            raise UserError(
                f"an epoch has {micro} batches per rank, fewer than optim.accumulation="
                f"{cfg.optim.accumulation}: lower data.batch_size or use more training events")
        self.total_steps = cfg.run.max_steps or cfg.run.epochs * self.steps_per_epoch
        self.step, self.epoch, self.consumed = 0, 0, 0
        self.best = math.inf
        self.best_metrics: dict = {}
        torch.manual_seed(cfg.run.seed + 7919 * (info.rank + 1))  # per-rank stream (dropout, ...)
        if ckpt:
            self._restore(ckpt)
        if main:  # after a successful restore: a refused resume leaves the run untouched
            write_config(cfg, run_dir / "config.yaml")
        self.train_log = CsvLog(run_dir / "train.csv", main)
        self.val_log = CsvLog(run_dir / "val.csv", main)
        if ckpt:
            self.train_log.truncate_after(self.step)
            self.val_log.truncate_after(self.step)
        self.tb = tensorboard_writer(run_dir, cfg.run.tensorboard and main)
        if info.distributed and not self.sharded:
            kwargs = {"device_ids": [device.index]} if device.type == "cuda" else {}
            # Size-1 kernel dims give harmless stride mismatches between grads and DDP buckets.
            warnings.filterwarnings("ignore",
                                    message="Grad strides do not match bucket view strides")
            self.wrapped = nn.parallel.DistributedDataParallel(self.module, **kwargs)
        else:
            self.wrapped = self.module
        if cfg.run.compile:
            from xecreco.train.acceleration import compile_module

            self.wrapped = compile_module(self.wrapped)

    # -- state ----------------------------------------------------------------------------
    def _cpu_state(self, state: dict, clone: bool = False) -> dict:
        """A state dict on the CPU; FSDP shards gathered into full tensors (collective)."""
        if self.sharded:
            return fsdp.full_state(state)
        if clone:
            return {k: v.detach().cpu().clone() for k, v in state.items()}
        return {k: v.detach().cpu() for k, v in state.items()}

    def _payload(self, for_best: bool, metrics: dict) -> dict:
        cfg = self.cfg
        payload = {
            "task": self.task.name,
            "model_config": self.model_config,
            "normalization": self.source.normalization,
            "target_scaling": self.source.target_scaling,
            "metrics": dict(metrics),
            "config": cfg.to_dict(),
            **self.kept_calibrations,
        }
        if for_best:
            weights = self.ema.state_dict() if self.ema is not None else self.model.state_dict()
            payload.update(state_dict=self._cpu_state(weights, clone=True),
                           ema_state_dict=None,
                           train_state={"step": self.step, "epoch": self.epoch})
        else:
            payload.update(
                state_dict=self._cpu_state(self.model.state_dict()),
                ema_state_dict=(self._cpu_state(self.ema.state_dict())
                                if self.ema is not None else None),
                train_state=self._train_state(),
            )
        return payload

    def _train_state(self) -> dict:
        rng = ddp.gather_objects(torch.get_rng_state(), self.info)
        cuda_rng = (ddp.gather_objects(torch.cuda.get_rng_state(self.device), self.info)
                    if self.device.type == "cuda" else None)
        return {
            "step": self.step, "epoch": self.epoch, "consumed": self.consumed,
            "total_steps": self.total_steps, "world": self.info.world,
            "optimizer": (fsdp.optimizer_state(self.module, self.optimizer) if self.sharded
                          else self.optimizer.state_dict()),
            "loss": self._cpu_state(self.loss.state_dict()),
            "ema": self.ema.train_state() if self.ema is not None else None,
            "torch_rng": rng, "cuda_rng": cuda_rng,
            "best": self.best, "best_metrics": self.best_metrics,
            "layout": self._layout(),
        }

    def _layout(self) -> dict:
        """Settings that fix the order of the batches; resuming exactly needs them unchanged."""
        d = self.cfg.data
        return {"data.batch_size": d.batch_size, "data.workers": d.workers,
                "data.step_events": d.step_events, "data.shuffle_buffer": d.shuffle_buffer,
                "optim.accumulation": self.cfg.optim.accumulation, "run.seed": self.cfg.run.seed,
                "run.parallel": self.cfg.run.parallel if self.info.distributed else "ddp"}

    def _restore(self, ckpt: dict) -> None:
        state = ckpt["train_state"]
        if state.get("world") != self.info.world:
            raise UserError(f"cannot resume exactly: last.pt was written by {state.get('world')} "
                            f"process(es), this run has {self.info.world}; use the same --nproc")
        changed = [k for k, v in state.get("layout", {}).items() if self._layout().get(k) != v]
        if changed:
            raise UserError(f"cannot resume exactly: {', '.join(changed)} differ from the run in "
                            "last.pt; resume with the run's config.yaml")
        if self.sharded:
            fsdp.load_full_state(self.model, ckpt["state_dict"])
            fsdp.load_full_state(self.loss, state["loss"])
            fsdp.load_optimizer_state(self.module, self.optimizer, state["optimizer"])
        else:
            self.model.load_state_dict(ckpt["state_dict"])
            self.loss.load_state_dict(state["loss"])
            self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            if ckpt.get("ema_state_dict") is None:
                raise UserError("cannot resume: last.pt has no EMA weights but ema.enabled is true")
            shadow = ckpt["ema_state_dict"]
            if self.sharded:
                shadow = fsdp.shard_like(shadow, self.ema.state_dict())
            self.ema.load(shadow, state["ema"])
        self.step, self.epoch, self.consumed = state["step"], state["epoch"], state["consumed"]
        self.total_steps = self.cfg.run.max_steps or state["total_steps"]
        self.best, self.best_metrics = float(state["best"]), dict(state["best_metrics"])
        torch.set_rng_state(state["torch_rng"][self.info.rank])
        if state.get("cuda_rng") and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"][self.info.rank], self.device)

    def _save_last(self) -> None:
        payload = self._payload(False, self.best_metrics)  # collective (RNG gather): all ranks
        if self.info.is_main:
            save_checkpoint(self.run_dir / "last.pt", payload)

    # -- evaluation -------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> dict:
        model = self.eval_model
        if self.sharded:  # the current (or EMA) weights into the unsharded copy; collective
            weights = self.ema.state_dict() if self.ema is not None else self.model.state_dict()
            model.load_state_dict(fsdp.full_state(weights))
            self.eval_loss.load_state_dict(fsdp.full_state(self.loss.state_dict()))
        elif self.ema is not None:
            model.load_state_dict(self.ema.state_dict())
        model.eval()
        collected: dict[str, list] = {}
        loss_sum, n_events = 0.0, 0
        for batch in self.source.val_batches(self.info.rank, self.info.world):
            batch = to_device(batch, self.device)
            with self._autocast():
                outputs = model_outputs(model, batch)
                loss, _ = self.eval_loss(outputs, batch)
            n = len(batch["features"])
            loss_sum += float(loss) * n
            n_events += n
            for key, value in self.task.eval_batch(outputs, batch, self.source).items():
                collected.setdefault(key, []).append(value)
        self.model.train()
        parts = ddp.gather_objects(({k: np.concatenate(v) for k, v in collected.items()},
                                    loss_sum, n_events), self.info)
        total_events = sum(p[2] for p in parts)
        if total_events == 0:
            return {}
        merged = {k: np.concatenate([p[0][k] for p in parts if k in p[0]])
                  for k in parts[0][0]} if parts[0][0] else {}
        metrics = {"val_loss": sum(p[1] for p in parts) / total_events, "val_events": total_events}
        metrics.update(self.task.metrics(merged, self.cfg))
        return metrics

    def _autocast(self):
        if self.cfg.run.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _validate_and_checkpoint(self) -> dict:
        metrics = self.evaluate()
        if not metrics:
            return metrics
        key = self.cfg.checkpoint.best_metric
        if key not in metrics:
            raise UserError(f"config key 'checkpoint.best_metric': '{key}' is not a validation "
                            "metric "
                            f"(available: {', '.join(sorted(metrics))})")
        value = float(metrics[key])
        if self.info.is_main:
            self.val_log.write({"step": self.step, "epoch": self.epoch, **metrics})
            if self.tb is not None:
                for k, v in metrics.items():
                    self.tb.add_scalar(f"val/{k}", v, self.step)
        if value < self.best:
            self.best, self.best_metrics = value, dict(metrics)
            if self.info.is_main or self.sharded:  # gathering FSDP shards takes every rank
                payload = self._payload(True, metrics)
                if self.info.is_main:
                    save_checkpoint(self.run_dir / "best.pt", payload)
        return metrics

    # -- training ---------------------------------------------------------------------------
    def _should_stop_now(self, flag: StopFlag) -> bool:
        stop = flag.raised
        if self.info.distributed:
            t = torch.tensor([1.0 if stop else 0.0])
            torch.distributed.all_reduce(t)
            stop = bool(t.item() > 0)
        return stop

    def run(self) -> dict:
        cfg, info = self.cfg, self.info
        accum = cfg.optim.accumulation
        stop_at = min(self.total_steps, cfg.run.stop_at_step or self.total_steps)
        bar = None
        if cfg.run.progress and info.is_main:
            from tqdm import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step")
        interrupted = False
        last_metrics: dict = {}
        tick, tick_events = time.perf_counter(), 0
        events_done, train_seconds = 0, 0.0
        running: dict[str, float] = {}
        steps_since_log = 0
        self.module.train()
        with StopFlag() as flag:
            while self.step < stop_at and not interrupted:
                micro_in_epoch = self.steps_per_epoch * accum
                loader = self.source.train_batches(self.epoch, info.rank, info.world)
                stream = islice(iter(loader), self.consumed, micro_in_epoch)
                micro = 0
                step_start = time.perf_counter()
                for batch in stream:
                    batch = to_device(batch, self.device)
                    if self.curriculum is not None:
                        batch = self.curriculum.select(batch, self.step)
                    sync = (micro + 1) % accum == 0
                    with ddp.maybe_no_sync(self.wrapped, sync):
                        with self._autocast():
                            loss, parts = self.wrapped(batch)
                        (loss / accum).backward()
                    micro += 1
                    self.consumed += 1
                    n_batch = len(batch["features"]) * info.world
                    tick_events += n_batch
                    events_done += n_batch
                    for k, v in {"loss": float(loss.detach()), **parts}.items():
                        running[k] = running.get(k, 0.0) + v / accum
                    if not sync:
                        continue
                    o = cfg.optim
                    lr = o.lr * lr_factor(self.step, self.total_steps, o.warmup_steps, o.schedule,
                                          o.min_lr_ratio)
                    set_lr(self.optimizer, lr)
                    if cfg.optim.clip_grad_norm > 0:
                        nn.utils.clip_grad_norm_(self.module.parameters(), cfg.optim.clip_grad_norm)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    if self.ema is not None:
                        self.ema.update(self.model)
                    self.step += 1
                    train_seconds += time.perf_counter() - step_start
                    step_start = time.perf_counter()
                    if bar is not None:
                        bar.update(1)
                    steps_since_log += 1
                    if self.step % cfg.run.log_every == 0 or self.step == self.total_steps:
                        self._log_train(running, steps_since_log, lr, tick, tick_events)
                        running, tick, tick_events, steps_since_log = {}, time.perf_counter(), 0, 0
                    for callback in self.callbacks:
                        callback(self.step, self)
                    end_of_epoch = self.consumed >= micro_in_epoch
                    if end_of_epoch:
                        self.epoch += 1
                        self.consumed = 0
                    eval_every = cfg.checkpoint.eval_every_steps
                    eval_now = (end_of_epoch and eval_every == 0) or (
                        eval_every and self.step % eval_every == 0)
                    if eval_now or self.step == self.total_steps:
                        last_metrics = self._validate_and_checkpoint() or last_metrics
                    every = cfg.checkpoint.every_steps
                    if end_of_epoch or (every and self.step % every == 0) or self.step == stop_at:
                        self._save_last()
                    if self._should_stop_now(flag):
                        if self.step != stop_at and not end_of_epoch:
                            self._save_last()
                        interrupted = True
                    if interrupted or self.step >= stop_at or end_of_epoch:
                        break
                    step_start = time.perf_counter()
                else:
                    # The stream ran dry before the epoch's step count (cannot happen with a source
                    # honouring steps_per_epoch); move on rather than loop forever.
                    self.epoch += 1
                    self.consumed = 0
        if bar is not None:
            bar.close()
        if self.step >= self.total_steps and math.isinf(self.best) and (
                info.is_main or self.sharded):
            # No validation events: best.pt holds the final weights, so `predict -r best.pt` works.
            payload = self._payload(True, {})
            if info.is_main:
                save_checkpoint(self.run_dir / "best.pt", payload)
        if self.tb is not None:
            self.tb.close()
        result = {
            "run_dir": str(self.run_dir),
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "finished": self.step >= self.total_steps,
            "interrupted": interrupted,
            "best_metric": cfg.checkpoint.best_metric,
            "best_value": None if math.isinf(self.best) else self.best,
            "best_metrics": self.best_metrics,
            "last_metrics": last_metrics,
            "train_events": events_done,
            "train_events_per_s": events_done / train_seconds if train_seconds > 0 else None,
            "best_checkpoint": (str(self.run_dir / "best.pt")
                                if (self.run_dir / "best.pt").exists() else None),
            "last_checkpoint": str(self.run_dir / "last.pt"),
            "world": info.world,
        }
        if info.is_main:
            write_result(self.run_dir, result)
        return result

    def _log_train(self, running: dict, n: int, lr: float, tick: float, tick_events: int) -> None:
        n = max(1, n)
        reduced = ddp.all_reduce_mean({k: v / n for k, v in running.items()}, self.info)
        averaged = {k: reduced[k] for k in running}  # keep the loss, then target order
        seconds = time.perf_counter() - tick
        row = {"step": self.step, "epoch": self.epoch, "lr": lr,
               **{(k if k == "loss" else f"loss_{k}"): v for k, v in averaged.items()},
               "events_per_s": tick_events / seconds if seconds > 0 else 0.0}
        if self.info.is_main:
            self.train_log.write(row)
            if self.tb is not None:
                for k, v in row.items():
                    if k not in ("step", "epoch"):
                        self.tb.add_scalar(f"train/{k}", v, self.step)
