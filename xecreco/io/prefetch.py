"""Work ahead in a background thread: the next items of an iterator while the caller uses this one.

:func:`prefetch` runs ``fn(item)`` for the items of an iterable in one background thread and yields
the results in order, at most ``depth`` items ahead (a bounded queue, so memory stays bounded).
numpy, uproot's decompression and torch release the GIL, so on a machine with a free core the
background work overlaps with the caller's. An exception raised in the background (while
iterating or in ``fn``) is raised again in the caller, as the same exception object, at the
item where it happened; the items before it are yielded first. When the caller stops early
(``break``, an exception, ``KeyboardInterrupt``, ``close()`` of the generator), the background
thread is told to stop, the source iterator is closed in that thread and the thread is joined
before the generator returns, so nothing keeps running or holds open files.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["prefetch"]

T = TypeVar("T")
R = TypeVar("R")

_END = object()  # the source is exhausted
#: Seconds between checks of the stop flag while a queue is full or empty.
_POLL_S = 0.05


class _Failure:
    """An exception raised in the background thread, carried to the caller."""

    def __init__(self, error: BaseException):
        self.error = error


def _produce(source: Iterable, fn: Callable | None, out: queue.Queue, stop: threading.Event):
    iterator = iter(source)
    try:
        for item in iterator:
            if stop.is_set():
                return
            _put(out, fn(item) if fn is not None else item, stop)
        _put(out, _END, stop)
    except BaseException as error:  # noqa: BLE001 - carried to the caller and raised there
        _put(out, _Failure(error), stop)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def _put(out: queue.Queue, value, stop: threading.Event) -> None:
    """Put ``value`` on ``out``, waiting while it is full, unless ``stop`` is set first."""
    while not stop.is_set():
        try:
            out.put(value, timeout=_POLL_S)
            return
        except queue.Full:
            continue


def prefetch(source: Iterable[T], fn: Callable[[T], R] | None = None, *, depth: int = 1,
             name: str = "xecreco-prefetch") -> Iterator[R]:
    """Yield ``fn(item)`` (or the item itself) for each item of ``source``, in order, computed in
    a background thread at most ``depth`` items ahead (``depth`` >= 1). See the module docstring
    for errors and early stops."""
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    thread = threading.Thread(target=_produce, args=(source, fn, out, stop), name=name,
                              daemon=True)
    thread.start()
    try:
        while True:
            try:
                value = out.get(timeout=_POLL_S)
            except queue.Empty:
                if not thread.is_alive() and out.empty():
                    raise RuntimeError(f"{name} thread ended without a result") from None
                continue
            if value is _END:
                return
            if isinstance(value, _Failure):
                raise value.error
            yield value
    finally:
        stop.set()
        thread.join()
