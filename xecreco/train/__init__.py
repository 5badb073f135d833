"""The training engine: config schema, streaming data, losses, EMA, schedules, checkpoints, DDP.

Entry point: :func:`xecreco.train.api.train` (``xecreco train``). Importing this package does not
import torch or the models.
"""
