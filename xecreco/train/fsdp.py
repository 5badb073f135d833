"""Fully sharded data parallel training (``run.parallel: fsdp``) through ``torch.distributed.fsdp``.

:func:`shard` applies ``fully_shard`` (FSDP2) in place: every direct child of the network that
holds parameters (the encoder, each fusion layer, the light summary, each head; the items of a
ModuleList/ModuleDict rather than the container) becomes one FSDP unit, and the
training module (network + loss, whose learned weights then sit in the root unit) the root.
Each rank then keeps 1/world of every parameter, gradient and AdamW moment; a unit's parameters
are all-gathered just before its forward/backward and freed after it, and the gradients are
reduce-scattered (averaged over ranks, as DDP's all-reduce does), so the optimizer step acts on
shards with the same element-wise arithmetic as DDP. Parameters become ``DTensor`` shards.

Checkpoints stay the same as with DDP and one process: :func:`full_state` gathers the full
tensors (a collective: every rank calls it, rank 0 writes them), and :func:`load_full_state` /
:func:`load_optimizer_state` cut a full checkpoint back into this rank's shards on resume.
The optimizer state in ``last.pt`` is keyed by parameter name (torch.distributed.checkpoint's
full optimizer state dict), so a run resumes with the same ``run.parallel``.
"""

from __future__ import annotations

import torch
from torch import nn

from xecreco.errors import UserError


def _dtensor_type():
    from torch.distributed.tensor import DTensor

    return DTensor


def shard(module: nn.Module, network: nn.Module, device: torch.device) -> nn.Module:
    """Shard ``module`` (which contains ``network``) over all ranks of the default process group,
    in place; returns ``module``. Call after the weights are initialised identically on every
    rank and before the optimizer is built (it must see the sharded parameters)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    scalars = [name for name, p in module.named_parameters() if p.ndim == 0]
    if scalars:
        raise UserError(f"config key 'run.parallel': fsdp cannot shard the scalar parameter "
                        f"'{scalars[0]}' (fully_shard needs at least one dimension); use "
                        "run.parallel ddp or give the parameter shape (1,)")
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    for unit in units(network):
        fully_shard(unit, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def units(network: nn.Module) -> list[nn.Module]:
    """The FSDP units of ``network``: its direct children with trainable parameters, looking
    inside containers without a forward of their own (ModuleList, ModuleDict) at their items."""
    out = []
    for child in network.children():
        if not any(p.requires_grad for p in child.parameters()):
            continue
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            out.extend(units(child))
        else:
            out.append(child)
    return out


def is_sharded(state: dict) -> bool:
    """Whether a state dict holds DTensor shards."""
    dtensor = _dtensor_type()
    return any(isinstance(v, dtensor) for v in state.values())


def full_state(state: dict) -> dict:
    """The state dict with every DTensor shard gathered into a full CPU tensor (collective:
    call on every rank, in the same order); plain tensors are copied to the CPU."""
    dtensor = _dtensor_type()
    return _to_cpu({name: value.full_tensor() if isinstance(value, dtensor) else value
                    for name, value in state.items()})


def shard_like(full: dict, like: dict) -> dict:
    """``full`` (plain tensors, the same on every rank) cut into the shards of ``like``'s
    DTensors; entries whose ``like`` is a plain tensor are returned unchanged."""
    from torch.distributed.tensor import distribute_tensor

    dtensor = _dtensor_type()
    out = {}
    for name, value in full.items():
        ref = like.get(name)
        if isinstance(ref, dtensor):
            value = distribute_tensor(value.to(ref.device, ref.dtype), ref.device_mesh,
                                      ref.placements)
        out[name] = value
    return out


def load_full_state(module: nn.Module, full: dict) -> None:
    """Load a full (unsharded) state dict into a sharded module."""
    module.load_state_dict(shard_like(full, module.state_dict()))


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """A copy of the optimizer's full state, keyed by parameter name (collective)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    state = get_optimizer_state_dict(module, optimizer,
                                     options=StateDictOptions(full_state_dict=True))
    return _to_cpu(state)


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore :func:`optimizer_state` into this rank's shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(module, optimizer, state,
                             options=StateDictOptions(full_state_dict=True))


def _to_cpu(obj):
    if torch.is_tensor(obj):
        return obj.detach().cpu().clone()  # never aliases the live state
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj
