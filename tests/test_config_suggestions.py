"""Unknown training-config keys suggest the closest valid key (docs/training.md's promise)."""

from __future__ import annotations

import pytest

from xecreco.errors import UserError
from xecreco.config import closest_key
from xecreco.train.config import load_config


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


def test_training_and_simulation_configs_share_one_loader(tmp_path):
    """Both configs go through xecreco.config: one line naming the file and the key, for an
    unknown key, a wrong type and a failed value check alike."""
    from xecreco.sim import SimConfig

    train = tmp_path / "train.yaml"
    train.write_text("run:\n  max_steps: many\n")
    with pytest.raises(UserError, match=r"^config file .*train\.yaml: config key 'run\.max_steps': "
                                        r"expected int or null, got 'many'$"):
        load_config(train)
    train.write_text("optim:\n  lr: -1\n")
    with pytest.raises(UserError, match=r"^config file .*train\.yaml: config key 'optim\.lr'"):
        load_config(train)
    sim = tmp_path / "sim.yaml"
    sim.write_text("decay_tme_ns: 40\n")
    with pytest.raises(UserError, match=r"^sim config .*sim\.yaml: unknown config key "
                                        r"'decay_tme_ns'; did you mean 'decay_time_ns'\?"):
        SimConfig.from_yaml(sim)
    sim.write_text("n_deposits: [1, 2]\n")
    with pytest.raises(UserError, match=r"^sim config .*sim\.yaml: config key 'n_deposits': "
                                        r"expected int"):
        SimConfig.from_yaml(sim)
