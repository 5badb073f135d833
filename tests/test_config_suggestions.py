"""Unknown training-config keys suggest the closest valid key (docs/training.md's promise)."""

from __future__ import annotations

import pytest

from xecreco.errors import UserError
from xecreco.train.config import closest_key, load_config


def test_misspelt_learning_rate_suggests_optim_lr(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lerning_rate: 0.1\n")
    with pytest.raises(UserError, match=r"unknown config key 'optim\.lerning_rate'; "
                                        r"did you mean 'optim\.lr'\?"):
        load_config(path)


@pytest.mark.parametrize("key, names, want", [
    ("weight_decy", ["lr", "weight_decay", "min_lr_ratio"], "weight_decay"),
    ("LR", ["lr", "min_lr_ratio"], "lr"),
    ("batchsize", ["batch_size", "workers"], "batch_size"),
    ("zzzz", ["lr", "betas"], None),
])
def test_closest_key_by_edit_distance(key, names, want):
    assert closest_key(key, names) == want
