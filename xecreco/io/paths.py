"""Checks on the output path of every command that writes a file.

One policy for all commands (``docs/cli-conventions.md``): an output *file* is written into a
folder that must already exist (xecreco never creates folders for a file, so a typo in a folder
name is an error, not a new folder), and it must not be one of the command's inputs, however the
two paths are spelled (relative vs absolute, ``./``, symbolic or hard links). Output *folders*
(``train -o RUN_DIR``, ``validate -o DIR``) are the output itself and are created.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xecreco.errors import UserError

__all__ = ["check_output_file", "same_file", "remove_stale_temps", "temp_path", "make_temp_dir",
           "atomic_output"]

#: Temporary names (files or folders) of an output ``NAME`` while it is written, next to it:
#: ``.NAME.<pid>.tmp`` or ``.NAME.<pid>.<random>.tmp`` (the writing process's id, so leftovers
#: of a killed run can be recognised and removed by :func:`remove_stale_temps`).
#: What follows ``.NAME.`` in a temporary name: the pid, the optional random part, ``.tmp``.
#: (Matched after the known prefix: a greedy pattern over the whole name would read an all-digit
#: random part as the pid and NAME.<pid> as the name, and keep the file forever.)
_TEMP_SUFFIX = re.compile(r"^(?P<pid>\d+)(?:\.[0-9A-Za-z]+)?\.tmp$")


def temp_path(output) -> Path:
    """A fresh temporary name for ``output``, next to it: ``.NAME.<pid>.<random>.tmp``.

    Write there, then ``os.replace`` onto ``output``; a run killed part-way leaves only this
    name, which the next run writing ``output`` removes once process ``<pid>`` is gone.
    """
    path = Path(output)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_output(output) -> Iterator[Path]:
    """Write ``output`` whole or not at all: yields a :func:`temp_path` to write, renamed onto
    ``output`` when the block ends normally and removed when it raises (the exception goes on),
    so a reader never sees a half-written file under the final name."""
    tmp = temp_path(output)
    try:
        yield tmp
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)


def make_temp_dir(output) -> Path:
    """Create and return a temporary folder named like :func:`temp_path` (for outputs built
    from several files: prediction parts, a validation report)."""
    while True:
        folder = temp_path(output)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:  # the same 8 random hex digits twice: draw again
            continue


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name the same file (resolved paths or the same inode)."""
    a, b = Path(a), Path(b)
    try:
        if a.resolve() == b.resolve():
            return True
    except (OSError, RuntimeError):  # a symlink loop: compare what exists below
        pass
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(output, inputs=(), *, option: str = "-o/--output") -> Path:
    """Refuse an output file that would overwrite an input or needs a missing folder.

    Args:
        output: the file the command will write.
        inputs: every file the command reads (data files, checkpoints, configs, lists); None
            entries are ignored.
        option: how the output is given on the command line (named in the messages).

    Temporary files left next to ``output`` by an earlier run that was killed (kill -9, power
    loss) are removed (:func:`remove_stale_temps`).

    Returns:
        ``output`` as a Path.

    Raises:
        UserError: ``output`` is a folder, its folder does not exist, or it is one of ``inputs``.
    """
    path = Path(output)
    if path.is_dir():
        raise UserError(f"{option} '{path}' is a directory; give a file name")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"output directory '{folder}' does not exist; create it first "
                        f"(mkdir -p {folder}) or give another {option}")
    for source in inputs:
        if source is None:
            continue
        if same_file(path, source):
            raise UserError(f"{option} '{path}' is also an input ('{source}'); choose another "
                            "output name (xecreco never overwrites its input)")
    remove_stale_temps(path)
    return path


def _running(pid: int, since: float | None = None) -> bool:
    """True when process ``pid`` may still be the writer of a temporary file.

    since: the file's modification time (s since the epoch). On Linux a process that is a zombie
    (exited, not yet reaped), or that started after ``since``, is not the writer (its pid was
    reused), so the file counts as stale.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # exists (another user's) or not a pid we can judge: leave the file
    started = _linux_start_time(pid)
    if started is None:
        return True
    state, start_s = started
    if state == "Z":
        return False
    return since is None or start_s <= since + 1.0


def _linux_start_time(pid: int) -> tuple[str, float] | None:
    """(state letter, start time in s since the epoch) of ``pid`` from /proc, or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    try:
        return fields[0], boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError, OSError):
        return None


def remove_stale_temps(output) -> list[Path]:
    """Delete temporary files and folders of ``output`` whose writing process no longer runs.

    Only names of the form ``.NAME.<pid>[.<random>].tmp`` next to ``output`` are considered,
    and only when no process ``<pid>`` exists (a folder is removed with its contents); returns
    the paths removed.
    """
    path = Path(output)
    removed = []
    try:
        candidates = list(path.parent.glob(f".{path.name}.*.tmp"))
    except OSError:
        return removed
    for candidate in candidates:
        prefix = f".{path.name}."
        match = _TEMP_SUFFIX.match(candidate.name[len(prefix):])
        if not candidate.name.startswith(prefix) or not match:
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid():
            continue
        try:
            since = candidate.lstat().st_mtime
        except OSError:
            continue
        if _running(pid, since):
            continue
        try:
            if candidate.is_dir() and not candidate.is_symlink():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
            removed.append(candidate)
        except OSError:
            pass
    return removed
