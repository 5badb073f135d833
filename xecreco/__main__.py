"""``python -m xecreco`` (also what torchrun launches: ``torchrun ... -m xecreco train ...``)."""

from xecreco.cli.main import run

run()
