"""Optional speed-ups of a network's forward pass on CPUs: torch.compile and bf16 autocast.

Both are opt-in (``run.compile`` and ``run.precision: bf16`` in training; see
docs/performance.md for what they measured on the reference machine: neither pays there for the
``cpu`` preset, whose cost is element-wise ops on small channel counts rather than GEMMs).

- :func:`compile_module` wraps ``torch.compile`` with a clean fallback: without a C++ compiler
  (inductor needs one on CPUs), or when compiling fails at the first call, it prints one line
  and the module runs eagerly, with the same results.
- :func:`cpu_has_native_bf16` tells whether the CPU has bf16 arithmetic (AVX512-BF16 or AMX);
  :func:`autocast` gives the autocast context of a precision name.
"""

from __future__ import annotations

import os
import shutil
import sys

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")


def compiler_available() -> bool:
    """Whether ``torch.compile`` can generate CPU code here (torch.compile exists and a C++
    compiler is on PATH: ``$CXX``, ``g++``, ``c++`` or ``clang++``)."""
    if not hasattr(torch, "compile"):
        return False
    names = [os.environ.get("CXX")] if os.environ.get("CXX") else []
    return any(shutil.which(name) for name in names + ["g++", "c++", "clang++"])


class _CompiledOrEager(nn.Module):
    """Calls the compiled module; if the first call fails to compile, warns once and runs the
    eager module from then on (later errors are real errors and propagate)."""

    def __init__(self, module: nn.Module, compiled):
        super().__init__()
        self.module = module
        self._compiled = compiled
        self._checked = False

    def forward(self, *args, **kwargs):
        if self._compiled is None:
            return self.module(*args, **kwargs)
        if self._checked:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to eager
            print(f"xecreco: torch.compile failed ({type(exc).__name__}: "
                  f"{str(exc).splitlines()[0] if str(exc) else ''}); running eagerly",
                  file=sys.stderr)
            self._compiled = None
            return self.module(*args, **kwargs)
        self._checked = True
        return out


def compile_module(module: nn.Module, enabled: bool = True) -> nn.Module:
    """``module`` compiled with ``torch.compile`` (parameters shared), or ``module`` itself when
    ``enabled`` is False; eager with a one-line note when no compiler is available."""
    if not enabled:
        return module
    if not compiler_available():
        print("xecreco: torch.compile needs a C++ compiler (g++ / clang++ on PATH); "
              "running eagerly", file=sys.stderr)
        return module
    return _CompiledOrEager(module, torch.compile(module))


def cpu_has_native_bf16() -> bool:
    """Whether /proc/cpuinfo lists bf16 arithmetic (avx512_bf16 or amx_bf16)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast(precision: str, device_type: str = "cpu"):
    """The autocast context of ``precision`` (``fp32``: autocast off; ``bf16``: bfloat16)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return torch.autocast(device_type, enabled=False)
