"""User-facing errors.

Anything raised as :class:`UserError` is a problem with the user's input (a file, a branch, a
config key, a checkpoint) and is shown by the CLI as one line, without a traceback, with a
non-zero exit status. The message must say what is wrong, where (file, branch or key), and what
to do about it.
"""


class UserError(Exception):
    """A problem with user input, reported as one clear line by the CLI."""
