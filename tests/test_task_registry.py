"""Training tasks are found by name through the registry the models fill (issue 12, item 1).

The engine (xecreco.train.tasks) names no task: regressor, mae and inpainter come from the
entry-point group ``xecreco.tasks`` that pyproject.toml declares, as a plugin's would; the
regressor's own config rules run through ``TaskSpec.validate_config``.
"""

from __future__ import annotations

import dataclasses
from importlib.metadata import EntryPoint

import pytest

from xecreco.errors import UserError
from xecreco.train import tasks
from xecreco.train.config import load_config


def test_builtin_tasks_come_from_the_entry_point_group():
    names = {ep.name: ep.value for ep in tasks._entry_points().values()}
    assert names == {"regressor": "xecreco.models.tasks.regressor:regressor_task",
                     "mae": "xecreco.models.tasks.masked:mae_task",
                     "inpainter": "xecreco.models.tasks.masked:inpainter_task"}
    for name in names:
        spec = tasks.get_task(name)
        assert isinstance(spec, tasks.TaskSpec) and spec.name == name
    assert tasks.get_task("regressor").validate_config is not None


def test_unknown_task_is_one_line_naming_the_key_and_the_known_tasks(tmp_path):
    from xecreco.train.api import train

    with pytest.raises(UserError, match=r"task.name.*unknown task 'regresor'.*inpainter, mae, "
                                        r"regressor"):
        tasks.get_task("regresor")
    run = tmp_path / "run"
    with pytest.raises(UserError, match="unknown task 'regresor'"):
        train({"task": {"name": "regresor"}}, run_dir=run)
    assert not run.exists()


def test_regressor_rules_live_in_the_regressor_task():
    with pytest.raises(UserError, match=r"task.targets.*unknown target 'enrgy'; did you mean "
                                        r"'energy'"):
        load_config({"task": {"targets": ["enrgy"]}})
    with pytest.raises(UserError, match=r"checkpoint.best_metric.*unknown metric"):
        load_config({"checkpoint": {"best_metric": "nonsense"}})
    with pytest.raises(UserError, match=r"loss.types.u.*'u' is not in task.targets"):
        load_config({"task": {"targets": ["energy"]}, "loss": {"types": {"u": "mse"}}})
    # the same keys mean nothing to the masked tasks: no regressor rule is applied there
    cfg = load_config({"task": {"name": "mae", "targets": ["enrgy"]},
                       "checkpoint": {"best_metric": "npho_mae"}})
    assert cfg.task.targets == ["enrgy"]


def test_a_registered_task_with_its_own_rules(tmp_path):
    seen = []

    def rules(cfg):
        seen.append(cfg.task.name)
        if cfg.optim.lr > 0.5:
            raise UserError("config key 'optim.lr': the toy task wants lr <= 0.5")

    toy = dataclasses.replace(tasks.get_task("regressor"), name="toy-rules",
                              validate_config=rules)
    tasks.register_task(toy)
    try:
        assert "toy-rules" in tasks.available_tasks()
        assert tasks.get_task("toy-rules") is toy
        with pytest.raises(UserError, match="the toy task wants lr <= 0.5"):
            load_config({"task": {"name": "toy-rules"}, "optim": {"lr": 0.9}})
        assert seen == ["toy-rules"]
    finally:
        tasks._TASKS.pop("toy-rules", None)
    # a task passed to train() directly has its rules run too, before any folder is made
    from xecreco.train.api import train

    run = tmp_path / "run"
    with pytest.raises(UserError, match="lr <= 0.5"):
        train({"task": {"name": "toy-rules"}, "optim": {"lr": 0.9}}, run_dir=run, task=toy)
    assert not run.exists()


def test_a_plugin_entry_point_that_gives_no_task_is_a_clear_error(monkeypatch):
    broken = EntryPoint("broken", "xecreco.errors:UserError", tasks.ENTRY_POINT_GROUP)
    missing = EntryPoint("gone", "no_such_package.tasks:task", tasks.ENTRY_POINT_GROUP)
    monkeypatch.setattr(tasks, "_entry_points", lambda: {"broken": broken, "gone": missing})
    with pytest.raises(UserError, match=r"entry point 'broken' of group xecreco.tasks"):
        tasks.get_task("broken")
    with pytest.raises(UserError, match=r"task 'gone' .*cannot be imported"):
        tasks.get_task("gone")
