"""``xecreco train CONFIG.yaml [--set key=value ...] [-o RUN_DIR] [--resume] [--nproc N]``."""

from __future__ import annotations

import os

import click


@click.command("train")
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set optim.lr=3e-4 --set data.batch_size=64.")
@click.option("-o", "--output", "run_dir", type=click.Path(file_okay=False), default=None,
              help="Run directory (default runs/<task>-<date>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the run in -o RUN_DIR from its last.pt.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Local DDP processes (gloo on CPU, nccl on GPU). Under torchrun keep 1.")
def command(config, overrides, run_dir, resume, nproc):
    """Train a regressor (or another registered task) from a YAML CONFIG.

    Writes the resolved config, train.csv / val.csv metrics and best.pt / last.pt checkpoints to
    the run directory. Several GPUs or nodes: torchrun --nproc-per-node N -m xecreco train CONFIG.
    """
    from xecreco.train.api import train

    result = train(config, overrides=overrides, run_dir=run_dir, resume=resume, nproc=nproc)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    best = result.get("best_value")
    click.echo(
        f"trained {result['step']}/{result['total_steps']} steps in {result['run_dir']}"
        + (f"; best {result['best_metric']} = {best:.5g}" if best is not None else "")
        + ("" if result["finished"] else " (stopped early: continue with --resume)")
    )
