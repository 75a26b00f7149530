"""Shared pieces of the payload-log tests: settings, a sink that can be broken, waiting."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from vigie.config import Settings
from vigie.events.segments import SegmentSink


class BreakableSink:
    """A real segment sink that raises (``broken``) or hangs (``stalled``) on demand."""

    def __init__(self, folder: Path, **options: Any) -> None:
        self.inner = SegmentSink(folder, **options)
        self.broken = False
        self.released = threading.Event()
        self.released.set()
        self.attempts = 0

    def write(self, entries: Sequence[Mapping[str, Any]]) -> None:
        self.attempts += 1
        self.released.wait(timeout=30)
        if self.broken:
            raise OSError(28, "No space left on device")
        self.inner.write(entries)

    def close(self) -> None:
        self.released.set()


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (a guard against hanging, not a timing assertion)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def payload_settings(tmp_path: Path, make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tmp_path / "home", None, payload_buffer=100)


@pytest.fixture
def breakable(payload_settings: Settings) -> BreakableSink:
    return BreakableSink(payload_settings.payload_dir)
