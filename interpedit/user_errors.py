"""User errors: mistakes in what a user gave a command, reported as one ``error:`` block instead of a traceback.

A bad data or benchmark file, missing pretrained weights, an unknown option value or a path outside a dataset's
root raises a ``UserError`` whose message starts with the file, id or option at fault. Every command line of the
repository runs its ``main`` through ``run_command``, which prints ``error: <message>`` to stderr and exits with
status 2 when such an error ends the command, even when a library (jsonargparse, Lightning) wrapped it in its own
exception on the way. Any other exception is a programming error and keeps its traceback. ``--traceback`` on the
command line, or ``INTERPEDIT_TRACEBACK=1`` in the environment, brings the full traceback back for user errors too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

TRACEBACK_FLAG = "--traceback"
"""Command-line flag, accepted by every command, that re-raises user errors with their traceback."""

TRACEBACK_ENV = "INTERPEDIT_TRACEBACK"
"""Environment variable that does the same as ``TRACEBACK_FLAG`` when set to 1, true, yes or on."""

EXIT_USER_ERROR = 2
"""Exit status of a command stopped by a user error (argparse's status for usage errors)."""


class UserError(Exception):
    """A mistake in the user's input; the message starts with the file, id or option at fault."""


class OptionError(UserError, ValueError):
    """An option (a constructor argument a config reaches, or a command-line flag) with a value that cannot work."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (or lacks a file it must hold)."""


def find_user_error(error: BaseException) -> UserError | None:
    """``error`` itself when it is a ``UserError``, else the first one among its causes and contexts.

    jsonargparse reports a class that failed to instantiate as a ``ValueError`` raised ``from`` the original
    exception, and may nest several of them; the user's mistake is at the bottom of that chain.
    """
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, UserError):
            return current
        pending.extend(link for link in (current.__cause__, current.__context__) if link is not None)
    return None


def traceback_requested(argv: Sequence[str] = ()) -> bool:
    """Whether ``TRACEBACK_FLAG`` is in ``argv`` or ``TRACEBACK_ENV`` asks for tracebacks."""
    flag = os.environ.get(TRACEBACK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}
    return flag or TRACEBACK_FLAG in argv


def format_user_error(error: UserError) -> str:
    """``error: <message>``, later lines of a multi-line message indented under the first."""
    lines = str(error).strip().splitlines() or [type(error).__name__]
    return "\n".join([f"error: {lines[0]}", *(f"  {line.strip()}" for line in lines[1:] if line.strip())])


Result = TypeVar("Result")


def run_command(main: Callable[[list[str]], Result], argv: Sequence[str] | None = None) -> Result:
    """Run a command's ``main(argv)``; a user error ends it with ``error: ...`` on stderr and exit status 2.

    ``argv`` defaults to ``sys.argv[1:]``; ``TRACEBACK_FLAG`` is taken out of it before ``main`` sees it.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    show_traceback = traceback_requested(args)
    args = [arg for arg in args if arg != TRACEBACK_FLAG]
    try:
        return main(args)
    except Exception as error:  # noqa: BLE001 - re-raised unless it is (or wraps) a user error
        found = None if show_traceback else find_user_error(error)
        if found is None:
            raise
        print(format_user_error(found), file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None


__all__ = [
    "EXIT_USER_ERROR",
    "MissingFileError",
    "OptionError",
    "TRACEBACK_ENV",
    "TRACEBACK_FLAG",
    "UserError",
    "find_user_error",
    "format_user_error",
    "run_command",
    "traceback_requested",
]
