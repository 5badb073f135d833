"""Worker processes for ``simulate_file(..., jobs=N)``: fresh interpreters fed over pipes.

Each worker is ``python -m xecreco.sim._worker_main``, a new interpreter that imports only
xecreco: it never re-imports the caller's ``__main__`` (multiprocessing's "spawn" does, which
fails without an ``if __name__ == "__main__":`` guard and, from stdin, restarted the workers
forever), and it inherits no threads or locks from the caller (``fork`` after torch or OpenMP
started can deadlock). A worker that fails stops the whole run once, with its error.

Protocol (:mod:`xecreco.sim.wire` messages on the worker's stdin / stdout, no pickle): first
``init`` (the config as a dict, the dead mask as an array), then ``chunk`` (size, seed, first
event) per chunk, answered by ``ok`` (stats in the header, the branches as arrays) or ``error``
(the message; a UserError stays a UserError); ``stop`` or end of input ends the worker. Chunk i goes to worker
i mod N and results are read in chunk order, so the output never depends on N.
"""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.sim.config import SimConfig
from xecreco.sim.wire import WireError, read_message, write_message

#: the directory holding the xecreco package, put first on the workers' PYTHONPATH
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerError(RuntimeError):
    """A worker process died or sent something unreadable."""


def _worker_exception(header: dict) -> Exception:
    """The exception a worker reported: a UserError or built-in exception type is raised as
    itself (by name, from the builtins only); any other type as a RuntimeError naming it."""
    message = header["message"]
    if header["user_error"]:
        return UserError(message)
    kind = getattr(builtins, str(header["error_type"]), None)
    if isinstance(kind, type) and issubclass(kind, Exception):
        return kind(message)
    return RuntimeError(f"{header['error_type']}: {message}")


class _Worker:
    def __init__(self, index: int):
        if not sys.executable:
            raise UserError("simulate: --jobs > 1 needs a Python interpreter path "
                            "(sys.executable is empty); use --jobs 1")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_PACKAGE_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        self.index = index
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xecreco.sim._worker_main"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env=env)

    def send(self, header: dict, arrays: dict | None = None) -> None:
        try:
            write_message(self.process.stdin, header, arrays)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None

    def receive(self) -> tuple[dict, dict]:
        """The next chunk's ``(branches, stats)``; the worker's error is raised here."""
        try:
            header, arrays = read_message(self.process.stdout)
        except (EOFError, WireError, OSError):
            raise self._died() from None
        if header["kind"] == "error":
            raise _worker_exception(header)
        return arrays, header["stats"]

    def _died(self) -> WorkerError:
        code = self.process.wait()
        self.log.seek(0)
        lines = [line for line in self.log.read().decode(errors="replace").splitlines()
                 if line.strip()]
        last = lines[-1] if lines else "no message"
        return WorkerError(f"simulation worker {self.index} stopped (exit status {code}): {last}")

    def stop(self, kill: bool = False) -> None:
        proc = self.process
        if proc.poll() is None:
            if kill:
                proc.kill()
            else:
                try:
                    write_message(proc.stdin, {"kind": "stop"})
                    proc.stdin.close()
                except OSError:
                    proc.kill()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdin, proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.log.close()


class ChunkWorkers:
    """``jobs`` worker interpreters simulating chunks of one configuration and dead mask.

    Use as a context manager; :meth:`run` yields ``(branches, stats)`` in chunk order.
    """

    def __init__(self, jobs: int, config: SimConfig, dead: np.ndarray):
        self.workers: list[_Worker] = []
        try:
            for index in range(jobs):
                worker = _Worker(index)
                self.workers.append(worker)
                worker.send({"kind": "init", "config": config.to_dict()},
                            {"dead": np.asarray(dead, dtype=bool)})
        except BaseException:
            self.close(kill=True)
            raise

    def run(self, seed: int, chunks):
        """Results of ``chunks`` = [(size, first_event), ...] with event seed ``seed``."""
        n = len(self.workers)
        chunks = list(chunks)
        for i, (size, first) in enumerate(chunks[:n]):
            self.workers[i].send({"kind": "chunk", "size": size, "seed": seed, "first": first})
        for i in range(len(chunks)):
            worker = self.workers[i % n]
            result = worker.receive()
            if i + n < len(chunks):
                size, first = chunks[i + n]
                worker.send({"kind": "chunk", "size": size, "seed": seed, "first": first})
            yield result

    def close(self, kill: bool = False) -> None:
        for worker in self.workers:
            worker.stop(kill=kill)
        self.workers = []

    def __enter__(self) -> "ChunkWorkers":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(kill=exc_type is not None)
