"""``vigie serve``: run the prediction service (REST on 3000, gRPC on 8001) in the foreground."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from vigie.cli.children import run_foreground
from vigie.cli.common import guarded, out
from vigie.cli.common import settings as build_settings
from vigie.config import Settings
from vigie.errors import ErrorCode, VigieError
from vigie.serving.auth import ensure_local_keys

SERVICE = "vigie.serving.service:VigiePrediction"

#: One March 2013 flight, as /predict takes it (missing fields are allowed).
EXAMPLE_FLIGHT = (
    '{"carrier": "UA", "origin": "EWR", "dest": "ORD", "distance": 719, "hour": 17, '
    '"minute": 30, "day_of_week": 5, "day": 15, "month": 3, "temp": 41.0, "visib": 10.0}'
)


@guarded
def serve(
    working_dir: Annotated[
        Path, typer.Option(help="Working folder of the service (relative settings start there).")
    ] = Path(),
) -> None:
    """Serve every model whose production alias is set, until interrupted."""
    settings = build_settings()
    if not working_dir.is_dir():
        raise VigieError(ErrorCode.CONFIGURATION, f"no folder {working_dir.resolve()}")
    keys = ensure_local_keys(settings) or settings.secrets_dir / "api_keys.local"
    _print_usage(settings, keys)
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        SERVICE,
        "--host",
        settings.host,
        "--port",
        str(settings.rest_port),
    ]
    env = {**os.environ, "DO_NOT_TRACK": "1", "BENTOML_DO_NOT_TRACK": "True"}
    raise typer.Exit(run_foreground(command, working_dir, env, stop_timeout=30))


def _print_usage(settings: Settings, keys: Path) -> None:
    out.print(banner(settings, keys), highlight=False)


def banner(settings: Settings, keys: Path) -> str:
    """What the service answers where, with commands to try (printed at start)."""
    rest = f"http://{settings.host}:{settings.rest_port}"
    grpc = f"{settings.host}:{settings.grpc_port}"
    auth = '-H "Authorization: Bearer $VIGIE_PREDICT_KEY"'
    return f"""[bold]vigie prediction service[/]
  API keys (local mode, generated once): {keys}
    set -a; . {keys}; set +a
  OIP v2 REST:  curl -s {auth} {rest}/v2/models/flight_delay
  /predict:     curl -s {auth} -H 'Content-Type: application/json' {rest}/predict \\
                  -d '{{"model": "flight_delay", "flights": [{EXAMPLE_FLIGHT}]}}'
  OIP v2 gRPC:  {grpc} (inference.GRPCInferenceService; reflection on), e.g.
                  grpcurl -plaintext -H "authorization: Bearer $VIGIE_PREDICT_KEY" \\
                  {grpc} inference.GRPCInferenceService/ServerMetadata
                or tritonclient.grpc.InferenceServerClient("{grpc}")
  API docs:     {rest}/ (Swagger UI)   OpenAPI document: {rest}/docs.json
  metrics:      {rest}/metrics   readiness: {rest}/v2/health/ready
"""
