"""Thread settings chosen from the machine: the core count and how idle OpenMP threads wait.

:func:`available_cores` is the one rule for the number of cores (intra-op threads beside a
background reader thread or data workers are derived from it). :func:`prefer_passive_waiting`
makes the OpenMP threads of torch (and MKL) sleep instead of spinning when they wait at the end
of a parallel region. On a machine whose cores are shared with other work, spinning threads
take cores from the thread that has work to do: ``xecreco predict`` with 2 intra-op threads
beside a training on the same 2 cores ran at 235-267 events/s spinning and 900-1,180 events/s
with passive waiting (docs/performance.md, issue 13). It only acts before the OpenMP runtime
is loaded (before torch is imported), and a value the user set wins.
"""

from __future__ import annotations

import os
import sys

__all__ = ["available_cores", "prefer_passive_waiting"]


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` (and ``KMP_BLOCKTIME=0`` for Intel's runtime) unless the
    user set them; True when it could still take effect (torch not imported yet)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if os.environ["OMP_WAIT_POLICY"].upper() == "PASSIVE":
        os.environ.setdefault("KMP_BLOCKTIME", "0")
    return "torch" not in sys.modules
