"""The core (``xecreco/``) never reaches into the models, the validation or the command line.

Direction of dependencies (DESIGN.md section 1): cli -> validation -> models -> xecreco. Every
module under xecreco/ is parsed and walked whole: imports at any level (functions included),
``from xecreco import models``, and string constants that name one of those packages the way
``importlib.import_module``, ``__import__`` or an entry-point value would (``"xecreco.models.x"``,
``"xecreco.cli.main:run"``, the ``"xecreco.models."`` part of an f-string). Prose that mentions a
package (docstrings) is not a module name and passes. ``xecreco/__main__.py`` (``python -m
xecreco`` runs the CLI) is the one exception.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "xecreco"
FORBIDDEN = ("models", "validation", "cli")
ALLOWED = {CORE / "__main__.py"}
_MODULE_STRING = re.compile(r"^xecreco\.(%s)(\.\w+)*\.?(:[\w.]+)?$" % "|".join(FORBIDDEN))


def _forbidden_module(name: str | None) -> bool:
    return bool(name) and any(name == f"xecreco.{p}" or name.startswith(f"xecreco.{p}.")
                              for p in FORBIDDEN)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The absolute module of ``from ... import`` inside ``package`` (relative imports too)."""
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join(parts + ([node.module] if node.module else []))


def offences(source: str, filename: str = "<snippet>", package: str = "xecreco") -> list[str]:
    """``line: what`` for every reference of ``source`` (a module of ``package``) to
    xecreco.models, xecreco.validation or xecreco.cli."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{node.lineno}: import {a.name}" for a in node.names
                      if _forbidden_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if _forbidden_module(module):
                found.append(f"{node.lineno}: from {module} import ...")
            else:
                found += [f"{node.lineno}: from {module} import {a.name}" for a in node.names
                          if _forbidden_module(f"{module}.{a.name}")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _MODULE_STRING.match(node.value.strip()):
                found.append(f"{node.lineno}: string {node.value!r}")
    return found


def _package_of(path: Path) -> str:
    parts = ["xecreco", *path.relative_to(CORE).parent.parts]
    return ".".join(parts)


def test_no_core_module_names_models_validation_or_cli():
    modules = sorted(p for p in CORE.rglob("*.py") if p not in ALLOWED)
    assert len(modules) > 40, "the core's modules were not found"
    problems = [f"{path.relative_to(CORE.parent)}:{offence}" for path in modules
                for offence in offences(path.read_text(), str(path), _package_of(path))]
    assert not problems, "the core reaches outside itself:\n" + "\n".join(problems)


@pytest.mark.parametrize("snippet", [
    "import xecreco.models",
    "import xecreco.validation.report as report",
    "def f():\n    from xecreco.models.regressor.network import build_model\n",
    "class A:\n    def g(self):\n        from xecreco.cli.main import run\n",
    "from xecreco import models",
    "import importlib\nimportlib.import_module('xecreco.models.tasks.regressor')",
    "TASK_MODULES = ('xecreco.models.masked.network', 'other')",
    "__import__('xecreco.validation')",
    "name = 'x'\nmodule = f'xecreco.models.{name}'",
    "ENTRY = 'xecreco.cli.main:run'",
    "from . import models",
    "from .models import registry",
])
def test_offending_snippets_are_flagged(snippet):
    assert offences(snippet)


@pytest.mark.parametrize("snippet", [
    '"""Models live in :mod:`xecreco.models`; the core never imports them."""',
    "from xecreco.io.batch import EventBatch",
    "import xecreco.modelsx",
    "from xecreco.train import tasks",
    "GROUP = 'xecreco.tasks'",
    "from . import errors",
])
def test_harmless_snippets_pass(snippet):
    assert not offences(snippet)
