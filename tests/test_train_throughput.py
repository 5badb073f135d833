"""Training speed paths of issue 13: the fused AdamW of the trainer on CPUs, and torch.compile
of the ConvNeXt blocks with the depthwise convolution left to eager oneDNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xecreco.models.nn.convnext import ConvNeXtBlock
from xecreco.train import acceleration
from xecreco.train.runtime import adamw_options, param_groups

torch.set_num_threads(1)


def _net(seed: int = 0) -> nn.Module:
    """Two ConvNeXt blocks on (N, 6, 5, 8) maps and a linear read-out, GRN switched on."""
    torch.manual_seed(seed)
    net = nn.Sequential(ConvNeXtBlock(8, 7, 2.0, (6, 5)), ConvNeXtBlock(8, 3, 2.0, (6, 5)),
                        nn.Flatten(), nn.Linear(6 * 5 * 8, 1))
    with torch.no_grad():
        for block in net[:2]:
            block.grn.gamma.normal_(0.0, 0.5)
            block.grn.beta.normal_(0.0, 0.1)
    return net


def _losses(net: nn.Module, forward, steps: int, **adamw) -> list[float]:
    """Losses of ``steps`` AdamW steps on a fixed regression problem."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 6, 5, 8, generator=generator)
    y = torch.randn(16, 1, generator=generator)
    optimizer = torch.optim.AdamW(param_groups(net, 0.05), lr=3e-3, **adamw)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(forward(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return losses


def test_trainer_optimizer_is_fused_on_cpu_only():
    assert adamw_options(torch.device("cpu")) == {"fused": True}
    assert adamw_options(torch.device("cpu"), sharded=True) == {}
    assert adamw_options(torch.device("cuda", 0)) == {}


def test_fused_adamw_follows_the_per_tensor_adamw():
    """Weights and losses of 20 steps within 1e-5 of torch's per-tensor AdamW."""
    loop, fused = _net(), _net()
    a = _losses(loop, loop, 20, foreach=False)
    b = _losses(fused, fused, 20, **adamw_options(torch.device("cpu")))
    assert a[-1] < 0.5 * a[0]  # it learns, so the comparison means something
    assert b == pytest.approx(a, rel=1e-5)
    for (name, p), q in zip(loop.named_parameters(), fused.parameters()):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6), name


def test_run_training_uses_the_fused_optimizer(tmp_path):
    from train_helpers import tiny_config, tiny_task
    from xecreco.train.config import load_config
    from xecreco.train.loop import run_training

    seen = []
    run_training(load_config(tiny_config(epochs=1)), tmp_path / "run", task=tiny_task(),
                 callbacks=[lambda step, trainer: seen.append(
                     [g.get("fused") for g in trainer.optimizer.param_groups])])
    assert seen and all(flags == [True, True] for flags in seen)


def test_compiled_blocks_leave_the_depthwise_convolution_eager():
    """The graphs torch.compile captures of a ConvNeXt block hold its linear layers but no
    convolution (the depthwise convolution runs outside, in eager oneDNN); same outputs."""
    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch._dynamo.reset()
    net = _net()
    x = torch.randn(4, 6, 5, 8)
    compiled = torch.compile(net, backend=record)
    assert torch.allclose(compiled(x), net(x), rtol=1e-6, atol=1e-6)
    targets = [str(node.target) for gm in graphs for node in gm.graph.nodes
               if node.op in ("call_function", "call_module", "call_method")]
    assert any("linear" in t or "pwconv" in t for t in targets)
    assert not any("conv2d" in t or "dwconv" in t or "convolution" in t for t in targets)
    torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.skipif(not acceleration.compiler_available(), reason="no C++ compiler")
def test_compiled_training_losses_follow_eager():
    """10 AdamW steps through inductor: losses within 1e-4 relative of eager, same weights."""
    torch._dynamo.reset()
    eager, compiled = _net(), _net()
    fast = acceleration.compile_module(compiled)
    a = _losses(eager, eager, 10, foreach=False)
    b = _losses(compiled, fast, 10, foreach=False)
    assert fast._compiled is not None  # it did compile (no eager fallback)
    assert a[-1] < a[0]
    assert b == pytest.approx(a, rel=1e-4)
    for p, q in zip(eager.parameters(), compiled.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()
