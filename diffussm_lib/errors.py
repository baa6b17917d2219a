"""Two kinds of failure: a mistake in the user's input, and a bug in the library.

``UserError`` is raised where input enters the library (the config loader, the command line, the
data folder, checkpoint files, the arguments of the public functions students call), with a
message that says what is wrong and what to change. The ``diffussm`` command prints it as one line
and exits with status 2. Every other exception is an internal error: the command prints the
traceback and asks for a bug report (``REPORT_BUGS``), exit status 1.

The error classes of the chapters derive from it: ``config.ConfigError``, ``data.DataError``,
``training.CheckpointError``, ``cli.UsageError``. It is a ``ValueError``, so ``except ValueError``
and tests that expect one keep working.
"""

from __future__ import annotations

ISSUES_URL = "https://github.com/diffussm-course/diffussm-course/issues"  # pyproject's Repository
REPORT_BUGS = (
    f"this is a bug in diffussm_lib, not a mistake in your input: please report it at "
    f"{ISSUES_URL} with the command and the traceback above"
)


class UserError(ValueError):
    """Bad input from the user; the message names it and what to change (CLI: one line, exit 2)."""
