"""The ``vigie`` command: one sub-command group per area.

Every command builds the settings at start-up, maps a :class:`VigieError` to a clear
message and its exit status, and never shows a traceback for an expected failure.
"""

from __future__ import annotations

import sys

import typer

from vigie.cli.access import access_app
from vigie.cli.common import report_error
from vigie.cli.data import audit_app, pipeline_app, warehouse_app
from vigie.cli.features import features_app
from vigie.cli.governance import governance_app
from vigie.cli.keys import keys_app
from vigie.cli.models import registry_app, train
from vigie.cli.monitor import monitor_app
from vigie.cli.promote import promote
from vigie.cli.replay import ingest, replay
from vigie.cli.retrain import retrain_command
from vigie.cli.risks import risks_command
from vigie.cli.serve import serve
from vigie.cli.simulate import simulate
from vigie.cli.up import up
from vigie.errors import EXIT_CODES, VigieError

app = typer.Typer(help="vigie: model serving and monitoring platform.", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(audit_app, name="audit")
app.add_typer(warehouse_app, name="warehouse")
app.add_typer(access_app, name="warehouse-access")
app.add_typer(registry_app, name="registry")
app.add_typer(keys_app, name="keys")
app.add_typer(monitor_app, name="monitor")
app.add_typer(features_app, name="features")
app.add_typer(governance_app, name="governance")
governance_app.command("risks")(risks_command)
app.command("train")(train)
app.command("serve")(serve)
app.command("replay")(replay)
app.command("ingest")(ingest)
app.command("up")(up)
app.command("retrain")(retrain_command)
app.command("promote")(promote)
app.command("simulate")(simulate)


def main() -> None:
    """Entry point of the ``vigie`` command."""
    try:
        app()
    except VigieError as error:  # settings errors raised before a command's guard
        report_error(error)
        sys.exit(EXIT_CODES[error.code])


__all__ = ["app", "main"]
