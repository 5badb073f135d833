"""Thread settings (xecreco.threads): the core count and passive OpenMP waiting."""

from __future__ import annotations

import os
import subprocess
import sys

from xecreco.threads import available_cores, prefer_passive_waiting


def test_available_cores_is_the_affinity():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    assert available_cores() >= 1
    if expected is not None:
        assert available_cores() == expected


def test_passive_waiting_is_set_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("KMP_BLOCKTIME", raising=False)
    prefer_passive_waiting()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["KMP_BLOCKTIME"] == "0"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.delenv("KMP_BLOCKTIME")
    prefer_passive_waiting()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE" and "KMP_BLOCKTIME" not in os.environ


def test_it_takes_effect_only_before_torch_is_imported():
    code = ("from xecreco.threads import prefer_passive_waiting as p; a = p(); import torch; "
            "print(a, p())")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=True).stdout.split()
    assert out == ["True", "False"]
