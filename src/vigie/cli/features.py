"""``vigie features``: the feature processor and the online store.

``vigie features process`` consumes the flight and weather events (``VIGIE_STREAM_URL``)
into the online store (``VIGIE_FEATURES_URL``) until interrupted, or drains what is there
with ``--once``; ``vigie features load-reference`` copies the aircraft and route distances
from the warehouse; ``vigie features status`` says what the store and the stream hold.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer
from prometheus_client import start_http_server

from vigie.cli.common import authorized, err_console, guarded, out
from vigie.features.processor import load_reference, open_processor, open_store
from vigie.replay.events import instant

features_app = typer.Typer(help="The feature processor and the online feature store.")


@features_app.command("load-reference")
@guarded
def load_reference_command() -> None:
    """Copy the aircraft (pseudonymised tail numbers) and route distances from the warehouse
    into the online store."""
    settings = authorized("data.load")
    store = open_store(settings)
    try:
        planes, routes = load_reference(settings, store)
    finally:
        store.close()
    out.print(f"online store: {planes:,} aircraft and {routes:,} routes loaded", highlight=False)


@features_app.command("process")
@guarded
def process(
    once: Annotated[bool, typer.Option("--once", help="Apply what is there, then stop.")] = False,
    name: Annotated[str, typer.Option(help="This consumer's name in its group.")] = "processor-1",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Port of /metrics (default VIGIE_FEATURES_METRICS_PORT; 0: none)."),
    ] = None,
) -> None:
    """Apply the flight and weather events to the online store until interrupted (SIGINT or
    SIGTERM finish the batch in hand first)."""
    settings = authorized("data.load")
    processor = open_processor(settings, name=name)
    port = settings.features_metrics_port if metrics_port is None else metrics_port
    if port and not once:
        try:
            start_http_server(port, addr=settings.host, registry=processor.metrics.registry)
            out.print(f"feature processor metrics: http://{settings.host}:{port}/metrics")
        except OSError as err:  # the events matter more than their metrics: go on, loudly
            err_console.print(
                f"[yellow]feature processor: no /metrics on {settings.host}:{port}: {err}[/]"
            )
    started = time.monotonic()
    try:
        if once:
            processor.drain()
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            out.print("feature processor: applying events until interrupted", highlight=False)
            processor.run(stop)
        stats = processor.stats
        mark = processor.store.watermark_us()
        out.print(
            f"feature processor: {stats.applied:,} events applied, {stats.duplicates:,} "
            f"duplicates dropped, {stats.quarantined:,} quarantined, {stats.pruned:,} old "
            f"facts pruned in {time.monotonic() - started:.1f} s; newest event "
            f"{instant(mark).isoformat() if mark is not None else 'none'}; lag {processor.lag():,}",
            highlight=False,
        )
    finally:
        processor.store.close()
