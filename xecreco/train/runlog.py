"""What a training run leaves and listens to: ``train.csv`` / ``val.csv`` logs that survive an
exact resume, the optional TensorBoard writer, and the SIGTERM / SIGINT stop flag."""

from __future__ import annotations

import csv
import signal
from pathlib import Path

from xecreco.io.paths import atomic_output

__all__ = ["CsvLog", "StopFlag", "tensorboard_writer"]


class CsvLog:
    """Append-only CSV, header fixed by the first row; rows after a step dropped on resume."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled, self.fields = path, enabled, None
        if enabled and path.exists():
            with open(path, newline="") as handle:
                reader = csv.DictReader(handle)
                self.fields = reader.fieldnames

    def truncate_after(self, step: int) -> None:
        """Drop the rows after ``step`` (a resumed run rewrites them)."""
        if not (self.enabled and self.path.exists()):
            return
        with open(self.path, newline="") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames
            rows = [row for row in reader if int(row["step"]) <= step]
        with atomic_output(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict) -> None:
        """Append one row (the first row fixes the columns)."""
        if not self.enabled:
            return
        new = self.fields is None
        if new:
            self.fields = list(row)
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class StopFlag:
    """Set by SIGTERM / SIGINT: the loop saves ``last.pt`` at the next step boundary and returns."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised and signum == signal.SIGINT:  # second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.raised = True
        print("xecreco train: stopping at the next step boundary (last.pt will be written); "
              "press Ctrl-C again to abort now", flush=True)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


def tensorboard_writer(run_dir: Path, enabled: bool):
    """A TensorBoard ``SummaryWriter`` on ``run_dir/tb`` when enabled and installed, else None."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("xecreco train: run.tensorboard is set but tensorboard is not installed; "
              "logging to CSV only")
        return None
    return SummaryWriter(str(run_dir / "tb"))
