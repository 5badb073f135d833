"""``train()``: the library function behind ``xecreco train``."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from xecreco.errors import UserError
from xecreco.train import ddp
from xecreco.train.config import TrainConfig, load_config
from xecreco.train.tasks import check_task_config, get_task


def _default_run_dir(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.task.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _spawned_entry(cfg_dict: dict, run_dir: str, resume: bool, task, callbacks) -> None:
    from xecreco.train.config import config_from_dict
    from xecreco.train.loop import run_training

    run_training(config_from_dict(cfg_dict), run_dir, resume=resume, task=task, callbacks=callbacks)


def train(config, overrides=(), run_dir=None, resume: bool = False, nproc: int = 1, task=None,
          source=None, callbacks=()) -> dict:
    """Train a model from a YAML config (path), a dict or a :class:`TrainConfig`.

    Args:
        config: the config; ``overrides`` are ``key.sub=value`` strings applied on top.
        run_dir: output folder (default ``runs/<task>-<date>-<time>``); with ``resume`` it must
            hold ``last.pt`` and training continues exactly where it stopped.
        nproc: local processes (DDP over gloo on CPU / nccl on GPU). Under ``torchrun`` leave it 1:
            the ranks come from the environment.
        task, source, callbacks: Python-API hooks (a custom :class:`~xecreco.train.tasks.TaskSpec`,
            a ready batch source, per-step callbacks ``cb(step, trainer)``); ``source`` works only
            with ``nproc=1``. Without ``task``, ``task.name`` is resolved through the task
            registry (:func:`xecreco.train.tasks.get_task`: entry points ``xecreco.tasks``).

    Returns the run summary (also written to ``RUN_DIR/result.json``): step, epoch, finished,
    best_metric / best_value / best_metrics, last_metrics, train_events_per_s, checkpoint paths.

    A run that fails (bad preset, no matching files, ...) removes the run folder it created
    when the folder holds no checkpoint yet; a folder that existed before is left as it was.
    """
    cfg = load_config(config, overrides)  # runs the registered task's config rules too
    if task is None:
        get_task(cfg.task.name)  # an unknown task name fails before any folder is made
    else:
        check_task_config(cfg, task)
    if run_dir is None:
        if resume:
            raise UserError("--resume needs the run directory: pass -o RUN_DIR")
        if ddp.env_info().world > 1:
            raise UserError("under torchrun pass the run directory with -o RUN_DIR "
                            "(every rank must use the same one)")
        run_dir = _default_run_dir(cfg)
    run_dir = Path(run_dir)
    created = _first_missing(run_dir)
    try:
        return _run(cfg, run_dir, resume, nproc, task, source, callbacks)
    except BaseException:
        if created is not None:
            _remove_if_unused(run_dir, created)
        raise


#: Files in a run folder that make it worth keeping after a failure (they allow --resume).
_KEEP = ("last.pt", "best.pt")


def _first_missing(run_dir: Path) -> Path | None:
    """The outermost folder of ``run_dir`` (itself or a parent, e.g. ``runs/``) that does not
    exist yet, i.e. the first one the run will create; None when ``run_dir`` exists."""
    if run_dir.exists():
        return None
    top = run_dir
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    return top


def _remove_if_unused(run_dir: Path, created: Path) -> None:
    """Delete a run folder that a failed run created and that holds no checkpoint, then the
    parents up to ``created`` (the outermost folder the run made) that are left empty.

    Only the main process (RANK 0) removes it; folders that existed before the run are never
    passed here, so a failed run never deletes anything it did not create.
    """
    if ddp.env_info().rank != 0 or not run_dir.is_dir():
        return
    if any((run_dir / name).exists() for name in _KEEP):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    parent = run_dir
    while parent != created:
        parent = parent.parent
        try:
            parent.rmdir()  # only when empty: never removes another run's folder
        except OSError:
            return


def _run(cfg: TrainConfig, run_dir: Path, resume: bool, nproc: int, task, source,
         callbacks) -> dict:
    """Checks and training once the config and the run folder are known."""
    if nproc < 1:
        raise UserError(f"--nproc must be >= 1, got {nproc}")
    if resume and not (run_dir / "last.pt").is_file():
        raise UserError(f"cannot resume: {run_dir / 'last.pt'} does not exist "
                        "(train without --resume first)")
    if not resume and (run_dir / "last.pt").exists():
        raise UserError(f"run directory {run_dir} already holds a run (last.pt); use --resume to "
                        "continue it or choose another -o RUN_DIR")
    if nproc > 1:
        if ddp.env_info().world > 1:
            raise UserError("--nproc cannot be combined with torchrun "
                            "(the ranks come from torchrun)")
        if source is not None:
            raise UserError("a ready data source cannot be shared by spawned processes; "
                            "pass a task instead")
        result_file = run_dir / "result.json"
        if result_file.exists():
            result_file.unlink()
        args = (cfg.to_dict(), str(run_dir), resume, task, tuple(callbacks))
        ddp.spawn(_spawned_entry, args, nproc)
        return json.loads(result_file.read_text())
    from xecreco.train.loop import run_training

    return run_training(cfg, run_dir, resume=resume, task=task, source=source, callbacks=callbacks)
