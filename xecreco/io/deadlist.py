"""Dead-channel list files: sensor ids that are dead for a whole run.

One parser for every reader of such lists (the simulation's ``dead_list``, ``xecreco inpaint
--dead``). Format: integer sensor ids 0-4759 separated by newlines, commas or whitespace; ``#``
starts a comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from xecreco.errors import UserError
from xecreco.io.batch import N_SENSORS


def read_dead_list(path: str | Path) -> np.ndarray:
    """Sensor ids from a dead-channel list file.

    The file holds integer ids 0-4759 separated by newlines, commas or whitespace; ``#`` starts a
    comment. Returns the sorted unique ids (int64). UserError when the file cannot be read, is
    binary, holds something other than ids, or holds no id at all.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise UserError(f"cannot read dead-channel list '{path}': {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not a dead-channel list (binary data at byte {exc.start}, "
                        "e.g. a ROOT file); give a text file of sensor ids 0-4759") from None
    ids = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for token in re.split(r"[,\s]+", line.split("#", 1)[0].strip()):
            if not token:
                continue
            try:
                value = int(token)
            except ValueError:
                raise UserError(
                    f"{path}:{lineno}: '{token}' is not a sensor id; the dead-channel list holds "
                    "integer ids 0-4759 separated by newlines or commas") from None
            if not 0 <= value < N_SENSORS:
                raise UserError(f"{path}:{lineno}: sensor id {value} is outside 0-{N_SENSORS - 1}")
            ids.append(value)
    if not ids:
        raise UserError(f"{path} holds no sensor ids; give a text file of sensor ids 0-4759 "
                        "(or leave out the dead-channel list)")
    return np.unique(np.asarray(ids, dtype=np.int64))
