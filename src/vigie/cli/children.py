"""Child processes of the ``vigie`` commands: their command lines, start with a log, run in
front. Waiting for a server child is :func:`vigie.serving.harness.wait_ready`."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from vigie.serving import harness

#: Seconds to wait for a server child of a command to become ready.
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
    """Start a child writing to ``log`` (appended: a restart keeps the earlier lines).

    It stays in this terminal's process group, so that Ctrl-C reaches it as it reaches
    ``vigie up`` (the consumer finishes its transaction on SIGINT).
    """
    return harness.start_logged(command, env, log, append=True, new_session=False)


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
