"""Entry point of one simulation worker (``python -m xecreco.sim._worker_main``); see
:mod:`xecreco.sim.workers` for the protocol. Not imported by the package."""

from __future__ import annotations

import os
import sys


def main() -> int:
    """Serve chunk requests from stdin until ``None`` or end of input."""
    source = sys.stdin.buffer
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the pipe
    from xecreco.errors import UserError
    from xecreco.sim.config import SimConfig
    from xecreco.sim.runner import _detector, simulate_chunk
    from xecreco.sim.wire import read_message, write_message

    detector, config = None, None
    while True:
        try:
            header, arrays = read_message(source)
        except EOFError:
            return 0
        if header["kind"] == "stop":
            return 0
        try:
            if header["kind"] == "init":
                config = SimConfig.from_dict(header["config"])
                detector = _detector(config, arrays["dead"])
                continue
            branches, stats = simulate_chunk(header["size"], config, header["seed"],
                                             header["first"], detector=detector)
            write_message(sink, {"kind": "ok", "stats": stats}, branches)
        except Exception as exc:  # sent to the parent, which raises it
            write_message(sink, {"kind": "error", "user_error": isinstance(exc, UserError),
                                 "error_type": type(exc).__name__, "message": str(exc)})
        sink.flush()


if __name__ == "__main__":
    sys.exit(main())
