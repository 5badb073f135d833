"""Distributed data parallel helpers: torchrun detection, process groups, local spawning.

Under ``torchrun`` (environment ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``) every process calls :func:`init_distributed`, which starts a gloo (CPU) or nccl
(CUDA) process group. ``xecreco train --nproc N`` starts N local processes itself through
:func:`spawn` (torch.multiprocessing, a free localhost port), with the same environment.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist

from xecreco.errors import UserError


@dataclass
class DistInfo:
    """This process's place: ``rank`` of ``world`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def env_info() -> DistInfo:
    """Rank/world from the torchrun environment (single process when absent)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return DistInfo(rank=rank, world=world, local_rank=local)


def init_distributed(device: torch.device) -> DistInfo:
    """Start the process group when the environment asks for several processes."""
    info = env_info()
    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)
        info.initialised_here = True
    return info


def shutdown(info: DistInfo) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if info.initialised_here and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """``obj`` from rank ``src`` on every rank."""
    if not info.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj, info: DistInfo) -> list:
    """List of every rank's ``obj`` (rank order), on every rank."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_mean(values: dict, info: DistInfo) -> dict:
    """Element-wise mean over ranks of a dict of floats (same keys everywhere)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t.tolist())}


def maybe_no_sync(model, sync: bool):
    """For accumulation micro-steps (``sync`` False): ``model.no_sync()`` of a DDP model, or no
    gradient reduce-scatter for an FSDP (``fully_shard``) model; else a null context."""
    if not sync and hasattr(model, "no_sync"):
        return model.no_sync()
    if not sync and hasattr(model, "set_requires_gradient_sync"):
        return _fsdp_no_sync(model)
    return nullcontext()


@contextmanager
def _fsdp_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(local_rank: int, world: int, port: int, error_dir: str, fn, args) -> None:
    os.environ.update({
        "RANK": str(local_rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world),
        "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
    })
    try:
        fn(*args)
    except UserError as exc:  # handed to the parent, which raises it as a one-line error
        with open(os.path.join(error_dir, f"rank{local_rank}.txt"), "w") as handle:
            handle.write(str(exc))
        raise SystemExit(2) from None


def spawn(fn, args: tuple, nproc: int) -> None:
    """Run ``fn(*args)`` in ``nproc`` local processes forming one process group (blocks).

    A :class:`UserError` in any process is raised here as the same one-line UserError; other
    exceptions propagate as torch.multiprocessing's ProcessRaisedException.
    """
    import tempfile

    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="xecreco-spawn-") as error_dir:
        try:
            mp.start_processes(_spawned, args=(nproc, free_port(), error_dir, fn, args),
                               nprocs=nproc, join=True, start_method="spawn")
        except (mp.ProcessRaisedException, mp.ProcessExitedException):
            messages = sorted(os.listdir(error_dir))
            if messages:
                with open(os.path.join(error_dir, messages[0])) as handle:
                    raise UserError(handle.read()) from None
            raise
