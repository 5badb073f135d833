"""DDP: two CPU ranks (gloo) started by ``train(nproc=2)`` end with identical parameters."""

from __future__ import annotations

import torch

from xecreco.train.api import train

from train_helpers import dump_params, tiny_config, tiny_task


def test_ddp_two_ranks_identical_parameters(tmp_path):
    cfg = tiny_config(max_steps=4)
    cfg["optim"]["accumulation"] = 2
    result = train(cfg, run_dir=tmp_path / "ddp", nproc=2, task=tiny_task(),
                   callbacks=(dump_params,))
    assert result["world"] == 2 and result["step"] == 4
    dumps = [torch.load(tmp_path / "ddp" / f"params_rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert dumps[0].keys() == dumps[1].keys()
    for name in dumps[0]:
        assert torch.equal(dumps[0][name], dumps[1][name]), name
    torch.manual_seed(0)  # run.seed: the initial weights of every rank
    init = tiny_task().build_model({"hidden": 16})
    moved = any(not torch.equal(init.state_dict()[n], dumps[0][n]) for n in dumps[0])
    assert moved
