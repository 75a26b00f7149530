"""Child processes of the ``vigie`` commands: start with a log, wait ready, run in front."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path

import httpx

from vigie.errors import ErrorCode, VigieError

#: Seconds to wait for a server child to become ready.
START_TIMEOUT_S = 300.0


def vigie_command(*arguments: str) -> list[str]:
    """``vigie ARGUMENTS`` run by this interpreter (the same venv, no PATH lookup)."""
    return [sys.executable, "-m", "vigie.cli", *arguments]


def replay_command(first: date, last: date, speed: float, max_rows: int, *more: str) -> list[str]:
    """``vigie replay`` of ``first``..``last`` with its pace and request size."""
    return vigie_command(
        "replay",
        "--from",
        first.isoformat(),
        "--to",
        last.isoformat(),
        "--speed",
        str(speed),
        "--max-rows",
        str(max_rows),
        *more,
    )


def start_logged(command: list[str], env: Mapping[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a child writing to ``log`` (appended: a restart keeps the earlier lines)."""
    with log.open("ab") as handle:
        return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def wait_ready(
    url: str, child: subprocess.Popen[bytes], what: str, timeout: float = START_TIMEOUT_S
) -> None:
    """Poll ``url`` until it answers 200.

    Raises:
        VigieError: UNAVAILABLE when the child exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise VigieError(
                ErrorCode.UNAVAILABLE,
                f"{what} exited with status {child.returncode} (its log is under logs/ in "
                "VIGIE_HOME)",
            )
        try:
            if httpx.get(url, timeout=2.0).status_code == httpx.codes.OK:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise VigieError(ErrorCode.UNAVAILABLE, f"{what} was not ready within {timeout:.0f} s")


def run_foreground(
    command: list[str], cwd: Path, env: Mapping[str, str], *, stop_timeout: float = 60.0
) -> int:
    """Run a server in the foreground until it exits; SIGTERM or Ctrl-C stops it too.

    Returns:
        The child's exit status.
    """
    child = subprocess.Popen(command, cwd=cwd, env=env)
    # A supervisor's SIGTERM stops the child too, instead of orphaning it.
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    try:
        return child.wait()
    except KeyboardInterrupt:
        child.terminate()
        return child.wait(timeout=stop_timeout)
