"""The CLI reference page (docs/cli.md), generated from the commands' own --help texts.

``python -m xecreco.cli.reference > docs/cli.md`` (or ``make docs``) regenerates it; a test
checks the committed page matches, so the reference always says what the code does.
"""

from __future__ import annotations

import click

from xecreco.cli.main import COMMANDS, cli

HEADER = """# Command-line reference

Generated from `xecreco COMMAND --help` by `make docs` (`python -m xecreco.cli.reference`);
`tests/test_docs.py` checks it is current. Every command turns a user error into one line on
stderr and a non-zero exit (2 for bad input); `xecreco --debug COMMAND ...` shows tracebacks.
"""


def _help_text(command: click.Command, path: str) -> str:
    context = click.Context(command, info_name=path, terminal_width=100, max_content_width=100,
                            help_option_names=["-h", "--help"])
    return command.get_help(context)


def cli_reference_markdown() -> str:
    """Markdown with the top-level help and every command's help."""
    parts = [HEADER, "## xecreco\n", "```", _help_text(cli, "xecreco"), "```\n"]
    with click.Context(cli) as ctx:
        for name in COMMANDS:
            command = cli.get_command(ctx, name)
            if command is None:
                continue
            parts += [f"## xecreco {name}\n", "```", _help_text(command, f"xecreco {name}"), "```\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference_markdown(), end="")
