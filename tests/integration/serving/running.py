"""The running service the integration tests talk to, and its constants."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from vigie.config import Settings
from vigie.serving.harness import free_port

__all__ = [
    "MAX_REQUEST_ROWS",
    "MODELS",
    "ROOT",
    "START_TIMEOUT_S",
    "WINDOW",
    "Server",
    "free_port",
]

ROOT = Path(__file__).resolve().parents[3]
MODELS = ("flight_delay", "arrival_delay")
WINDOW = (date(2013, 1, 1), date(2013, 1, 10))
START_TIMEOUT_S = 180.0
MAX_REQUEST_ROWS = 300


@dataclass(frozen=True)
class Server:
    """A running service: where it listens, a ``predict`` key, its home."""

    rest: str
    host_port: str
    grpc_port: int
    key: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}
