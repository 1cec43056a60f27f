"""How a failed `verifarm` command is reported: one line on stderr, exit 2 for bad input, 1 for a runtime failure.

Commands raise `BadInput` (or `typer.BadParameter`) for input the user must change and `Failure` for a failure
of the world (a service down, a file that cannot be written); anything else is described here by its kind. `verifarm --debug ...` lets every exception through with its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperGroup

USAGE_EXIT = 2
RUNTIME_EXIT = 1


class BadInput(typer.TyperException):
    """Input the user must change (exit 2); the message says what is wrong and what to give instead."""

    exit_code = USAGE_EXIT


class Failure(typer.TyperException):
    """The command could not do its work (exit 1); the message says what failed and what to do about it."""

    exit_code = RUNTIME_EXIT


def one_line(message: str) -> str:
    """Messages built over several lines (a spec's list of problems) joined into one."""
    parts = [part.strip() for part in str(message).splitlines() if part.strip()]
    return " ".join(parts) or "unknown error"


def _instance_of(error: BaseException, module: str, name: str) -> bool:
    """isinstance against a class of a module only if that module is already loaded (never import it here)."""
    loaded = sys.modules.get(module)
    cls = getattr(loaded, name, None) if loaded is not None else None
    return isinstance(cls, type) and isinstance(error, cls)


_OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.EACCES: "choose a location you may write to, or fix its permissions",
    errno.EPERM: "choose a location you may write to, or fix its permissions",
    errno.EROFS: "the file system is read-only: choose another location",
    errno.ENOSPC: "free some disk space",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOTDIR: "a component of the path is a file, not a folder",
    errno.EADDRINUSE: "choose another port or stop what is using it",
    errno.ECONNREFUSED: "start the service or correct its URL",
}


def describe_failure(error: BaseException) -> tuple[str, int]:
    """(one-line message naming the problem and what to do, exit status) for an exception no command handled."""
    if isinstance(error, typer.TyperException):
        code = getattr(error, "exit_code", RUNTIME_EXIT) or RUNTIME_EXIT
        context = getattr(error, "ctx", None)  # set on the parser's usage errors
        where = f" (see '{context.command_path} --help')" if context is not None and code == USAGE_EXIT else ""
        return one_line(error.format_message()) + where, code
    if _instance_of(error, "pydantic_core", "ValidationError"):  # a typed config or the VERIFARM_* settings
        problems = []
        for problem in error.errors():  # type: ignore[attr-defined]
            where = ".".join(str(part) for part in problem.get("loc", ())) or "value"
            problems.append(f"{where}: {str(problem.get('msg', '')).removeprefix('Value error, ')}")
        return one_line("; ".join(problems)), USAGE_EXIT
    if _instance_of(error, "redis.exceptions", "ConnectionError") or _instance_of(
        error, "kombu.exceptions", "OperationalError"
    ):
        return (
            f"cannot reach the Redis broker ({one_line(str(error))}): start it, or correct VERIFARM_REDIS_URL",
            RUNTIME_EXIT,
        )
    if _instance_of(error, "sqlalchemy.exc", "OperationalError") or _instance_of(
        error, "sqlalchemy.exc", "InterfaceError"
    ):
        cause = one_line(str(getattr(error, "orig", None) or error))
        return (
            f"cannot use the rollout store ({cause}): check that the database runs and that "
            "VERIFARM_DATABASE_URL names it with valid credentials",
            RUNTIME_EXIT,
        )
    if isinstance(error, OSError) and error.strerror:
        where = f": {error.filename}" if error.filename else ""
        hint = _OS_HINTS.get(error.errno or 0, "check the path and permissions")
        return f"{error.strerror}{where}: {hint}", RUNTIME_EXIT
    if isinstance(error, ValueError):  # the project's type for bad values, with an actionable message
        return one_line(str(error)), USAGE_EXIT
    if isinstance(error, KeyboardInterrupt):
        return "interrupted", 130
    return (
        f"unexpected {type(error).__name__}: {one_line(str(error))} (rerun as `verifarm --debug ...` for the "
        "traceback, and report it)",
        RUNTIME_EXIT,
    )


def report(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)


class VerifarmGroup(TyperGroup):
    """The root command: turns every failure into one line and an exit status unless `--debug` was given."""

    show_tracebacks = False  # set by the root callback when --debug is given

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        self.show_tracebacks = False
        try:
            result = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.Exit as stop:  # raised outside a command (e.g. --help): a plain exit
            result = stop.exit_code
        except typer.Abort:
            report("aborted")
            result = 130
        except (Exception, KeyboardInterrupt) as error:
            if self.show_tracebacks:
                raise
            if type(error).__name__ == "NoArgsIsHelpError":  # a group named alone: its help is the answer
                help_text = error.format_message() if isinstance(error, typer.TyperException) else ""
                if help_text:
                    typer.echo(help_text)
                result = USAGE_EXIT
            else:
                message, result = describe_failure(error)
                report(message)
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code
