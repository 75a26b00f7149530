"""What every ``vigie`` sub-command shares: consoles, settings, error mapping, dates."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console

from vigie.config import Settings, load_settings
from vigie.errors import EXIT_CODES, ErrorCode, VigieError
from vigie.governance.access import LOCAL_OPERATOR, PERMISSIONS, roles_with
from vigie.log import configure_logging
from vigie.serving.auth import Authenticator
from vigie.serving.client import API_KEY_VARIABLE

# Tables keep their columns in logs and CI output, where there is no terminal width.
out = Console(width=None if sys.stdout.isatty() else 140)
# soft_wrap: an error stays one greppable line when stderr is not a terminal
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
_log = logging.getLogger(__name__)


def guarded(func: F) -> F:
    """Turn a VigieError into one red line and its exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except VigieError as error:
            report_error(error)
            raise typer.Exit(EXIT_CODES[error.code]) from None

    return wrapper  # type: ignore[return-value]


def report_error(error: VigieError) -> None:
    """Print an error as one line on stderr."""
    err_console.print(f"[bold red]error[/] {error}", markup=True, highlight=False)


def settings() -> Settings:
    """Build the settings and configure logging (once per command)."""
    built = load_settings()
    configure_logging(built.log_level, built.log_format)
    return built


def authorized(permission: str) -> Settings:
    """The settings of a command that needs ``permission``, once the caller holds it.

    The caller presents its API key in ``VIGIE_API_KEY``; the key's role must grant the
    permission (:mod:`vigie.governance.access`), and the actor of what the command then
    writes to the audit log is the key's id. Without a key, the person at the command line
    of a local-mode home (who owns its files) acts as ``VIGIE_ACTOR``; in production mode a
    key is required. Refusals are written to the audit log (``auth.check``, protocol
    ``cli``).

    Raises:
        VigieError: UNAUTHENTICATED without a valid key in production mode, or with an
            invalid one; FORBIDDEN when the key's role lacks the permission.
    """
    built = settings()
    token = os.environ.get(API_KEY_VARIABLE, "").strip() or None
    if token is None and built.mode == "local":
        _log.debug("%s acts as %s (local mode, no key)", built.actor, LOCAL_OPERATOR)
        return built
    try:
        key_id = Authenticator(built, refresh_s=0.0).check(token, permission, "cli")
    except VigieError as error:
        allowed = ", ".join(roles_with(permission))
        raise VigieError(
            error.code,
            f"{error.message}; this command needs {permission!r} ({PERMISSIONS[permission]}): "
            f"set {API_KEY_VARIABLE} to a key of role {allowed}",
        ) from None
    return built.model_copy(update={"actor": key_id})


def parse_date(value: str | None, option: str) -> date | None:
    """A YYYY-MM-DD option value, or None.

    Raises:
        VigieError: INVALID_INPUT naming the option.
    """
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise VigieError(
            ErrorCode.INVALID_INPUT, f"{option} {value!r} is not a date YYYY-MM-DD"
        ) from None
