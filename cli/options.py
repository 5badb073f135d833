"""Options shared by every command that reads input ROOT files: ``--tree`` and ``--branch``.

``--branch CANONICAL=NAME`` (repeatable) maps a canonical branch name of the xecreco schema
(``npho``, ``energyTruth``, ...; see docs/file-format.md) to the name used in the file; it is the
command-line form of :class:`xecreco.io.schema.BranchNames` (Python) and of ``data.branches``
(train configs).
"""

from __future__ import annotations

import click

from xecreco.io.schema import DEFAULT_TREE


def input_options(command=None, *, tree_flag: str = "--tree", tree_dest: str = "tree",
                  tree_help: str = "Input tree name."):
    """Add ``--tree NAME`` and ``--branch CANONICAL=NAME`` (repeatable) to a click command.

    Used bare (``@input_options``) or with another spelling of the tree option for commands
    whose ``--tree`` means something else (``@input_options(tree_flag="--data-tree",
    tree_dest="data_tree")`` on ``validate``, where ``--tree`` is the prediction tree).
    """
    def decorate(cmd):
        cmd = click.option(
            "--branch", "branch_items", multiple=True, metavar="CANONICAL=NAME",
            help="Input branch named differently in the file, e.g. --branch energyTruth=Egamma "
                 "(repeatable; canonical names as in docs/file-format.md).")(cmd)
        return click.option(tree_flag, tree_dest, default=DEFAULT_TREE, show_default=True,
                            help=tree_help)(cmd)

    return decorate if command is None else decorate(command)


def branch_names(items):
    """The :class:`~xecreco.io.schema.BranchNames` of ``--branch`` items (UserError when bad)."""
    from xecreco.io.schema import BranchNames

    return BranchNames.from_assignments(items, option="--branch")
