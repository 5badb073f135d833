"""Neural model cost and speed: both presets measured in the same run.

For the ``cpu`` and ``upstream`` presets: parameters, forward FLOPs per event (FlopCounterMode:
matmuls and convolutions), inference events/s (``torch.inference_mode``, batch 256 for cpu, 16
for upstream) and a training-step proxy (forward + MSE on every output + backward + AdamW step,
batch 256 / 16) in events/s, wall clock and per CPU-second, with torch's default thread count
(and the cpu preset again with one thread). Also the CPU load average at the time
(the 2-core machine is shared, so wall-clock rates are pessimistic when the load is above 2).
Finally the exported ONNX graph of the cpu preset in onnxruntime (raw inputs in, physical outputs
out, normalisation inside).
Targets (DESIGN.md section 10): cpu preset >= 1,000 events/s inference (floor 500) and >= 300
events/s training on the 2-core machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, machine_info, peak_rss_mb  # noqa: E402


def _rate(step, events: int, repeats: int) -> tuple[float, float]:
    """(events per wall second, events per CPU second) over ``repeats`` calls after a warm-up."""
    step()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        step()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return events * repeats / wall, events * repeats / max(cpu, 1e-9)


def measure(preset: str, batch: int, repeats: int, train_repeats: int,
            threads: int | None = None) -> dict:
    import torch

    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)

    from xecreco.models.nn.flops import count_parameters, flops_per_event
    from xecreco.models.regressor.network import build_model

    torch.manual_seed(0)
    model = build_model(preset)
    features = torch.randn(batch, 4760, 2)
    record = {
        "name": f"model_{preset}" + (f"_{threads}thread" if threads else ""),
        "parameters": count_parameters(model),
        "flops_per_event": flops_per_event(model, events=2),
        "batch_size": batch,
    }
    model.eval()

    def infer():
        with torch.inference_mode():
            model(features)

    load_before = os.getloadavg()[0]
    record["events_per_s"], record["events_per_cpu_s"] = _rate(infer, batch, repeats)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def train_step():
        outputs = model(features)
        loss = sum(torch.mean(v.float() ** 2) for v in outputs.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    record["train_events_per_s"], record["train_events_per_cpu_s"] = _rate(
        train_step, batch, train_repeats)
    record["load_average_1min"] = [load_before, os.getloadavg()[0]]
    record["torch_threads"] = torch.get_num_threads()
    record["peak_rss_mb"] = peak_rss_mb()
    torch.set_num_threads(default_threads)
    return record


def measure_onnx(preset: str, batch: int, repeats: int) -> dict:
    """Inference events/s of the exported ONNX graph (raw inputs, normalisation inside) in
    onnxruntime on the CPU, for a randomly initialised checkpoint of ``preset``."""
    import tempfile

    import onnxruntime as ort

    from xecreco.models.export.regressor import (

        VERTEX_INPUT,

        export_onnx,

        input_names,

        sim_like_vertices,

    )

    from xecreco.models.export.onnx import sim_like_inputs
    from xecreco.models.regressor.network import build_model
    from xecreco.models.regressor.presets import resolve_model_config
    from xecreco.normalization import NormalizationSpec, TargetScaling
    from xecreco.train.checkpoint import save_checkpoint

    config = resolve_model_config(preset)
    scaling = TargetScaling(mean={q: 0.0 for q in ("energy", "time", "u", "v", "w")},
                            scale={q: 1.0 for q in ("energy", "time", "u", "v", "w")})
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "model.pt"
        save_checkpoint(ckpt, {"task": "regressor", "model_config": config,
                               "normalization": NormalizationSpec().to_dict(),
                               "target_scaling": scaling.to_dict(),
                               "state_dict": build_model(config).state_dict()})
        export_onnx(ckpt, Path(tmp) / "model.onnx", check_events=8)
        options = ort.SessionOptions()
        session = ort.InferenceSession(str(Path(tmp) / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
    npho, time_s = sim_like_inputs(batch, seed=1)
    names = input_names(build_model(config))
    arrays = [npho, time_s] + ([sim_like_vertices(batch, 1)] if VERTEX_INPUT in names else [])
    feed = dict(zip(names, arrays))
    rate, cpu_rate = _rate(lambda: session.run(None, feed), batch, repeats)
    return {"name": f"onnxruntime_{preset}", "events_per_s": rate, "events_per_cpu_s": cpu_rate,
            "batch_size": batch, "includes": "validity masks, normalisation, destandardisation",
            "load_average_1min": os.getloadavg()[0], "peak_rss_mb": peak_rss_mb()}


def run(quick: bool = False) -> list[dict]:
    machine = machine_info()
    results = [
        measure("cpu", 256, 2 if quick else 8, 1 if quick else 4),
        measure("upstream", 16, 1 if quick else 2, 1),
    ]
    cpu, upstream = results
    cpu["inference_speedup_vs_upstream"] = cpu["events_per_s"] / upstream["events_per_s"]
    results.append(measure("cpu", 256, 2 if quick else 8, 1 if quick else 4, threads=1))
    results.append(measure_onnx("cpu", 256, 2 if quick else 8))
    for record in results:
        record["machine"] = machine
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
