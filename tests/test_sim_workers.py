"""simulate_file(jobs > 1) from scripts without a __main__ guard and from stdin (issue 18 item 3):
the workers are fresh interpreters that never re-import the caller, and a dead worker stops the
run once with its error instead of being restarted forever."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import uproot

from xecreco.sim import SimConfig
from xecreco.sim.workers import ChunkWorkers, WorkerError

_SCRIPT = textwrap.dedent("""
    from xecreco.sim import SimConfig, simulate_file
    print("caller ran")
    stats = simulate_file({out!r}, 300, SimConfig(chunk_events=100), seed=1, jobs=2,
                          progress=False)
    print("events", stats["events"])
""")


def _check_output(path):
    with uproot.open(path) as handle:
        arrays = handle["tree"].arrays(["run", "event"], library="np")
    np.testing.assert_array_equal(arrays["event"], np.arange(300))
    assert set(arrays["run"]) == {1001}


@pytest.mark.parametrize("how", ["stdin", "script"])
def test_jobs2_without_main_guard_finishes(tmp_path, how):
    out = tmp_path / "o.root"
    script = _SCRIPT.format(out=str(out))
    if how == "stdin":
        command = [sys.executable, "-"]
        proc = subprocess.run(command, input=script, capture_output=True, text=True, timeout=180,
                              cwd=tmp_path)
    else:
        path = tmp_path / "unguarded.py"
        path.write_text(script)
        proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                              timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # the caller's code ran once: the workers never re-imported it
    assert proc.stdout.count("caller ran") == 1
    assert "events 300" in proc.stdout
    assert "freeze_support" not in proc.stderr
    _check_output(out)


def test_a_dead_worker_stops_the_run_once():
    config = SimConfig(chunk_events=20)
    with pytest.raises(WorkerError, match="simulation worker 1 stopped"):
        with ChunkWorkers(2, config, np.zeros(4760, dtype=bool)) as workers:
            workers.workers[1].process.kill()
            start = time.monotonic()
            for _ in workers.run(0, [(20, 0), (20, 20), (20, 40)]):
                pass
    assert time.monotonic() - start < 60


def test_worker_errors_reach_the_caller():
    # an event count of 0 is refused inside the worker; the caller sees that exception
    with ChunkWorkers(1, SimConfig(), np.zeros(4760, dtype=bool)) as workers:
        with pytest.raises(Exception) as info:
            list(workers.run(0, [(0, 0)]))
    assert not isinstance(info.value, WorkerError)


def test_wire_messages_round_trip_and_refuse_what_is_not_data():
    """Worker messages carry JSON and raw arrays only: round trip of plain and jagged arrays;
    object arrays are refused; truncated or foreign bytes are WireError, never executed."""
    import io

    import awkward as ak

    from xecreco.sim.wire import WireError, read_message, write_message

    stream = io.BytesIO()
    plain = np.arange(12, dtype=np.float32).reshape(3, 4)
    jagged = ak.Array([[1.5], [], [2.5, 3.5]])
    write_message(stream, {"kind": "ok", "stats": {"events": np.int64(3)}},
                  {"npho": plain, "pileupTime": jagged})
    whole = stream.getvalue()
    header, arrays = read_message(io.BytesIO(whole))
    assert header == {"kind": "ok", "stats": {"events": 3}}
    assert np.array_equal(arrays["npho"], plain) and arrays["npho"].dtype == np.float32
    assert arrays["pileupTime"].tolist() == [[1.5], [], [2.5, 3.5]]
    with pytest.raises(TypeError, match="object dtype"):
        write_message(io.BytesIO(), {"kind": "ok"}, {"bad": np.array([object()])})
    with pytest.raises(EOFError):
        read_message(io.BytesIO(b""))
    for broken in (whole[:5], whole[:40], whole[:-3], b"\x08" + b"\x00" * 7 + b"garbage!"):
        with pytest.raises(WireError):
            read_message(io.BytesIO(broken))
