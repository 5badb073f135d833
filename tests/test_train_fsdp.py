"""FSDP (``run.parallel: fsdp``): two CPU ranks (gloo) shard the weights, agree with DDP over a
few steps, and write the same full-state checkpoints; an interrupted FSDP run resumes exactly."""

from __future__ import annotations

import pytest
import torch

from xecreco.errors import UserError
from xecreco.train import fsdp
from xecreco.train.api import train
from xecreco.train.checkpoint import load_checkpoint
from xecreco.train.config import load_config

from train_helpers import TinyRegressor, tiny_config, tiny_task


class _Wrapped(torch.nn.Module):
    """Network + a learned scalar at the root, like the loop's model + loss module."""

    def __init__(self):
        super().__init__()
        self.model = TinyRegressor(dropout=0.0)
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.scale[0] * sum(v.float().pow(2).mean() for v in self.model(x).values())


@pytest.fixture
def one_rank_group():
    import torch.distributed as dist

    from xecreco.train.ddp import free_port

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def test_shard_helpers_round_trip_in_one_rank_group(one_rank_group):
    torch.manual_seed(0)
    plain = _Wrapped()
    sharded = _Wrapped()
    sharded.load_state_dict(plain.state_dict())
    fsdp.shard(sharded, sharded.model, torch.device("cpu"))
    # units: the body and each head of the ModuleDict (not the container), the direction layer
    names = {n for n, m in sharded.model.named_modules() if m in fsdp.units(sharded.model)}
    assert names == {"body", "direction", *(f"heads.{k}" for k in sharded.model.heads)}
    assert fsdp.is_sharded(sharded.state_dict()) and not fsdp.is_sharded(plain.state_dict())
    opt_a = torch.optim.AdamW(plain.parameters(), lr=1e-2)
    opt_b = torch.optim.AdamW(sharded.parameters(), lr=1e-2)
    x = torch.randn(8, 4760, 2)
    for model, opt in ((plain, opt_a), (sharded, opt_b)):
        for _ in range(2):
            model(x).backward()
            opt.step()
            opt.zero_grad()
    full = fsdp.full_state(sharded.state_dict())
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(full[name], value, rtol=1e-6, atol=1e-7, msg=name)
    state = fsdp.optimizer_state(sharded, opt_b)
    assert set(state["state"]) == {n for n, _ in plain.named_parameters()}
    # a full checkpoint goes back into the shards
    fresh = _Wrapped()
    fsdp.shard(fresh, fresh.model, torch.device("cpu"))
    fsdp.load_full_state(fresh, full)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    fsdp.load_optimizer_state(fresh, fresh_opt, state)
    for model, opt in ((sharded, opt_b), (fresh, fresh_opt)):
        model(x).backward()
        opt.step()
    a, b = fsdp.full_state(sharded.state_dict()), fsdp.full_state(fresh.state_dict())
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)
    scalar = _Wrapped()
    scalar.scale = torch.nn.Parameter(torch.ones(()))
    with pytest.raises(UserError, match="scalar parameter 'scale'"):
        fsdp.shard(scalar, scalar.model, torch.device("cpu"))


def dump_full_params(step, trainer):
    """Callback: the final full parameters (gathered on every rank), and whether they were
    sharded, written by rank 0 as ``params.pt``."""
    if step == trainer.total_steps:
        state = trainer.model.state_dict()
        sharded = fsdp.is_sharded(state)
        full = fsdp.full_state(state)
        if trainer.info.is_main:
            torch.save({"params": full, "sharded": sharded}, trainer.run_dir / "params.pt")


def _run(tmp_path, name, parallel, **run):
    cfg = tiny_config(max_steps=4, parallel=parallel, **run)
    cfg["optim"]["accumulation"] = 2
    cfg["optim"]["clip_grad_norm"] = 0.5  # exercised on the sharded gradients
    result = train(cfg, run_dir=tmp_path / name, nproc=2, task=tiny_task(),
                   callbacks=(dump_full_params,))
    return result, torch.load(tmp_path / name / "params.pt", weights_only=True)


@pytest.mark.slow
def test_fsdp_agrees_with_ddp_and_checkpoints_are_full(tmp_path):
    ddp_result, ddp_dump = _run(tmp_path, "ddp", "ddp")
    fsdp_result, fsdp_dump = _run(tmp_path, "fsdp", "fsdp")
    assert fsdp_result["world"] == 2 and fsdp_result["step"] == 4
    assert fsdp_dump["sharded"] and not ddp_dump["sharded"]
    a, b = ddp_dump["params"], fsdp_dump["params"]
    assert a.keys() == b.keys()
    torch.manual_seed(0)
    init = TinyRegressor().state_dict()
    for name in a:
        assert a[name].shape == b[name].shape, name
        torch.testing.assert_close(b[name], a[name], rtol=1e-4, atol=1e-5, msg=name)
    assert any(not torch.equal(init[n], b[n]) for n in b)  # the weights moved
    for file in ("best.pt", "last.pt"):
        d = load_checkpoint(tmp_path / "ddp" / file)
        f = load_checkpoint(tmp_path / "fsdp" / file)
        assert all(not isinstance(v, torch.distributed.tensor.DTensor)
                   for v in f["state_dict"].values())
        model = TinyRegressor()
        model.load_state_dict(f["state_dict"])  # full tensors: loads into a plain model
        for name, value in d["state_dict"].items():
            torch.testing.assert_close(f["state_dict"][name], value, rtol=1e-4, atol=1e-5)
    assert d["ema_state_dict"] is not None
    assert f["ema_state_dict"].keys() == d["ema_state_dict"].keys()


@pytest.mark.slow
def test_fsdp_resume_equals_uninterrupted(tmp_path):
    _, whole = _run(tmp_path, "whole", "fsdp")
    cfg = tiny_config(max_steps=4, parallel="fsdp", stop_at_step=2)
    cfg["optim"]["accumulation"] = 2
    cfg["optim"]["clip_grad_norm"] = 0.5
    first = train(cfg, run_dir=tmp_path / "split", nproc=2, task=tiny_task())
    assert first["step"] == 2 and not first["finished"]
    cfg["run"]["stop_at_step"] = None
    train(cfg, run_dir=tmp_path / "split", nproc=2, task=tiny_task(), resume=True,
          callbacks=(dump_full_params,))
    split = torch.load(tmp_path / "split" / "params.pt", weights_only=True)["params"]
    for name, value in whole["params"].items():
        torch.testing.assert_close(split[name], value, rtol=1e-6, atol=1e-7, msg=name)
    ddp_cfg = dict(cfg, run=dict(cfg["run"], parallel="ddp"))
    with pytest.raises(UserError, match="run.parallel"):
        train(ddp_cfg, run_dir=tmp_path / "split", nproc=2, task=tiny_task(), resume=True)


def test_parallel_key_is_checked():
    assert load_config({"run": {"parallel": "fsdp"}}).run.parallel == "fsdp"
    with pytest.raises(UserError, match="run.parallel"):
        load_config({"run": {"parallel": "zero3"}})
