"""Reader throughput: LZ4 and ZLIB input files of random 4760-sensor arrays.

Writes 20,000 events (2,000 with ``--quick``) of random npho (exponential, mean 400 photons, 2 %
dead sensors at the 1e10 sentinel) and time (1e-7 s + N(0, 2 ns)) with :class:`RootWriter`, then
measures in the same run: writing (random-number generation included), reading
(``BatchReader``: masks and counts included) and reading + normalising
(``NormalizationSpec.features``). Target (DESIGN.md section 10):
reading + normalising an LZ4 file at >= 10,000 events/s on the 2-core CPU machine.
``events_per_cpu_s`` (events per CPU-second of this process, both reader threads included) is
reported beside the wall-clock rate because it is far less sensitive to other load on the machine.
torch is imported first, as in ``xecreco predict`` and training: the time reference then takes
its torch.topk path (numpy-only callers use np.partition, about 2x slower; same values).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (the normalisation path of predict and training; see the docstring)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, machine_info, peak_rss_mb, timed  # noqa: E402

from xecreco.geometry.constants import N_SENSORS  # noqa: E402
from xecreco.io.reader import BatchReader  # noqa: E402
from xecreco.io.schema import SENTINEL  # noqa: E402
from xecreco.io.writer import RootWriter  # noqa: E402
from xecreco.normalization import NormalizationSpec  # noqa: E402

TARGET_READ_NORMALISE_LZ4 = 10_000


def _write(path: Path, n_events: int, compression: str, seed: int = 0, chunk: int = 1000) -> None:
    rng = np.random.default_rng(seed)
    dead = rng.random(N_SENSORS) < 0.02
    with RootWriter(path, tree="tree", compression=compression) as writer:
        for start in range(0, n_events, chunk):
            n = min(chunk, n_events - start)
            npho = rng.exponential(400.0, (n, N_SENSORS)).astype(np.float32)
            time = (1e-7 + rng.normal(0.0, 2e-9, (n, N_SENSORS))).astype(np.float32)
            npho[:, dead] = SENTINEL
            time[:, dead] = SENTINEL
            writer.write({"npho": npho, "time": time, "run": np.zeros(n, np.int32),
                          "event": np.arange(start, start + n, dtype=np.int32)})


def _read(path: Path, normalise: bool) -> tuple[int, float]:
    spec = NormalizationSpec()
    checksum = 0.0
    reader = BatchReader(path)
    for batch in reader:
        if normalise:
            checksum += float(spec.features(batch)[0, 0, 0])
    return reader.stats.events, checksum


def run(quick: bool = False) -> list[dict]:
    """Write, read and read + normalise LZ4 and ZLIB files; one record per measurement."""
    n_events = 2_000 if quick else 20_000
    results = []
    with tempfile.TemporaryDirectory(prefix="xecreco-bench-io-") as tmp:
        for compression in ("lz4", "zlib"):
            path = Path(tmp) / f"bench_{compression}.root"
            with timed() as clock:
                _write(path, n_events, compression)
            size_mb = path.stat().st_size / 1e6
            results.append({"name": f"io_write_{compression}", "events": n_events,
                            "seconds": clock["seconds"],
                            "events_per_s": n_events / clock["seconds"], "file_mb": size_mb,
                            "peak_rss_mb": peak_rss_mb()})
            _read(path, normalise=False)  # warm the page cache so both reads see the same state
            for normalise in (False, True):
                cpu_start = time.process_time()
                with timed() as clock:
                    events, _ = _read(path, normalise)
                cpu_seconds = time.process_time() - cpu_start
                assert events == n_events
                label = "read_normalise" if normalise else "read"
                record = {"name": f"io_{label}_{compression}", "events": events,
                          "seconds": clock["seconds"], "events_per_s": events / clock["seconds"],
                          "cpu_seconds": cpu_seconds, "events_per_cpu_s": events / cpu_seconds,
                          "file_mb": size_mb, "peak_rss_mb": peak_rss_mb()}
                if normalise and compression == "lz4":
                    record["target_events_per_s"] = TARGET_READ_NORMALISE_LZ4
                results.append(record)
            path.unlink()
    results[0]["machine"] = machine_info()
    return results


if __name__ == "__main__":
    emit(run(quick="--quick" in sys.argv))
