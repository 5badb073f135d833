"""Entry point of one simulation worker (``python -m xecreco.sim._worker_main``); see
:mod:`xecreco.sim.workers` for the protocol. Not imported by the package."""

from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    """Serve chunk requests from stdin until ``None`` or end of input."""
    source = sys.stdin.buffer
    sink = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt the pipe
    from xecreco.sim.config import SimConfig
    from xecreco.sim.runner import _detector, simulate_chunk

    detector, config = None, None
    while True:
        try:
            message = pickle.load(source)
        except EOFError:
            return 0
        if message is None:
            return 0
        try:
            if message[0] == "init":
                config = SimConfig.from_dict(message[1])
                detector = _detector(config, message[2])
                continue
            _, size, seed, first = message
            reply = ("ok", simulate_chunk(size, config, seed, first, detector=detector))
        except Exception as exc:  # sent to the parent, which raises it
            reply = ("error", exc)
        pickle.dump(reply, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()


if __name__ == "__main__":
    sys.exit(main())
