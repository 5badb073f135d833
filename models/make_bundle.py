"""``python -m xecreco.models.make_bundle CHECKPOINT``: copy a trained checkpoint into the package
as the bundled regressor or inpainter (see :func:`xecreco.models.bundled.bundle_checkpoint`)."""

from __future__ import annotations

import sys

from xecreco.errors import UserError
from xecreco.models.bundled import bundle_checkpoint


def main(argv: list[str] | None = None) -> int:
    """Bundle the checkpoint named in ``argv``; a user error is one line and exit status 2."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m xecreco.models.make_bundle CHECKPOINT", file=sys.stderr)
        return 2
    try:
        print(bundle_checkpoint(args[0]))
    except UserError as exc:
        print(f"make_bundle: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
