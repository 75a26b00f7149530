"""What every ``vigie`` sub-command shares: consoles, settings, error mapping, dates."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import typer
from rich.console import Console

from vigie.config import Settings, load_settings
from vigie.errors import EXIT_CODES, ErrorCode, VigieError
from vigie.log import configure_logging

# Tables keep their columns in logs and CI output, where there is no terminal width.
out = Console(width=None if sys.stdout.isatty() else 140)
# soft_wrap: an error stays one greppable line when stderr is not a terminal
err_console = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


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
