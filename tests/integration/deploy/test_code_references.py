"""The manifests of k8s/ agree with the code.

In every overlay: probes with the routes of the REST app and of the drift monitor's app (and
what those routes answer when the service is not ready yet), ports and ConfigMap keys with
``vigie.config.Settings``, every container's command with the ``vigie`` command line.

How the manifests agree with each other: ``test_references.py``. What the tests need, and how
the overlays are rendered: ``manifests.py``.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import typer.exceptions
from starlette.applications import Starlette
from starlette.routing import Route

from vigie.cli import app as vigie_app
from vigie.cli.common import API_KEY_VARIABLE
from vigie.config import Settings
from vigie.monitoring.sidecar import Monitor
from vigie.monitoring.web import build_app as build_monitor_app
from vigie.serving.rest import RestContext, create_app

from .manifests import (
    CALLER_VARIABLES,
    COMMAND_VARIABLES,
    HOME,
    OVERLAYS,
    ROOT,
    Object,
    config,
    containers,
    environment,
    example_secrets,
    settings_values,
)

pytestmark = pytest.mark.integration

#: Settings ports, by the container port name that serves them.
PORT_SETTINGS = {
    "http": "rest_port",
    "grpc": "grpc_port",
    "monitor": "monitor_port",
    "metrics": "features_metrics_port",
}


# -- the manifests agree with the code ------------------------------------------------------


def service_prefix() -> str:
    """The OIP REST prefix the BentoML service mounts the REST app with (read, not imported:
    importing the service module installs BentoML's layers)."""
    spec = importlib.util.find_spec("vigie.serving.service")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "OIP_REST_PREFIX" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    raise AssertionError("vigie.serving.service defines no OIP_REST_PREFIX")


class StartingDataPlane:
    """What a prediction worker's data plane says while its models still load."""

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return False


@pytest.fixture(scope="module")
def rest_app() -> Starlette:
    """The OIP REST app as the service mounts it, over a worker whose models still load."""
    settings = Settings(home=Path("unused"), mode="local")
    context = RestContext(StartingDataPlane(), settings)  # type: ignore[arg-type]
    return create_app(lambda: context, prefix=service_prefix())


@pytest.fixture(scope="module")
def monitor_app(tmp_path_factory: pytest.TempPathFactory) -> Starlette:
    """The drift monitor's app over a monitor that has not polled yet."""
    home = tmp_path_factory.mktemp("monitor-home")
    monitor = Monitor(Settings(home=home, mode="local", actor="deploy-tests"), reports=False)
    return build_monitor_app(monitor)


def status(app: Starlette, path: str) -> int:
    async def get() -> int:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://pod") as client:
            return (await client.get(path)).status_code

    return asyncio.run(get())


def get_routes(app: Starlette) -> set[str]:
    return {r.path for r in app.routes if isinstance(r, Route) and "GET" in (r.methods or ())}


def probes(container: Object) -> dict[str, Object]:
    return {
        kind: container[f"{kind}Probe"]
        for kind in ("startup", "liveness", "readiness")
        if f"{kind}Probe" in container
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_the_health_routes_of_the_code(
    overlay: str,
    rendered: dict[str, list[Object]],
    rest_app: Starlette,
    monitor_app: Starlette,
) -> None:
    prefix = service_prefix()
    routes = {"serve": get_routes(rest_app), "monitor": get_routes(monitor_app)}
    expected = {
        "serve": {
            "startup": f"{prefix}/health/live",
            "liveness": f"{prefix}/health/live",
            "readiness": f"{prefix}/health/ready",
        },
        "monitor": {
            "startup": "/health/live",
            "liveness": "/health/live",
            "readiness": "/health/ready",
        },
    }
    seen = set()
    for workload, container in containers(rendered[overlay]):
        args = container.get("args", [])
        role = "serve" if args == ["serve"] else "monitor" if args == ["monitor", "serve"] else None
        if role is None:
            continue
        seen.add(role)
        found = probes(container)
        assert "liveness" in found and "startup" in found, container["name"]
        if role == "serve":
            assert "readiness" in found, f"{workload.name}: the service needs a readiness probe"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for kind, probe in found.items():
            path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
            assert path in routes[role], f"{container['name']}: no route {path}"
            assert path == expected[role][kind], f"{container['name']} {kind} probe: {path}"
            assert port in ports, f"{container['name']}: no port {port}"
    assert seen == {"serve", "monitor"}


def test_the_probed_routes_answer_as_the_probes_need(
    rest_app: Starlette, monitor_app: Starlette
) -> None:
    """While models load, the service is live but not ready: liveness must not restart it,
    readiness must keep traffic away. A monitor that has not polled yet is live, not ready."""
    prefix = service_prefix()
    assert status(rest_app, f"{prefix}/health/live") == 200
    assert status(rest_app, f"{prefix}/health/ready") == 503
    assert status(monitor_app, "/health/live") == 200
    assert status(monitor_app, "/health/ready") == 503


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_ports_are_the_configured_ports(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    for _, container in containers(objects):
        env = environment(container, objects)
        settings = Settings(**settings_values(env))
        for port in container.get("ports", []):
            field = PORT_SETTINGS[port["name"]]
            assert port["containerPort"] == getattr(settings, field), (container["name"], port)
        assert settings.host == "0.0.0.0"
        assert str(settings.home) == HOME


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_vigie_variable_is_a_setting_and_the_settings_are_valid(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    fields = set(Settings.model_fields)
    variables = set(config(objects))
    for _, container in containers(objects):
        variables |= {v["name"] for v in container.get("env", [])}
    for secret_keys in example_secrets().values():
        variables |= secret_keys
    vigie = {v for v in variables if v.startswith("VIGIE_")}
    known = set(COMMAND_VARIABLES) | CALLER_VARIABLES
    unknown = {v for v in vigie - known if v[6:].lower() not in fields}
    assert not unknown, f"not settings of vigie.config.Settings: {sorted(unknown)}"
    # Each container's settings build (production mode: with the Secret's keys).
    for _, container in containers(objects):
        Settings(**settings_values(environment(container, objects)))


def test_the_caller_variable_is_the_one_commands_read() -> None:
    assert {API_KEY_VARIABLE} == CALLER_VARIABLES


def test_command_variables_are_the_options_they_stand_for() -> None:
    root = typer.main.get_command(vigie_app)
    for variable, (command, option) in COMMAND_VARIABLES.items():
        ctx = typer.Context(root, info_name="vigie")
        found = root.get_command(ctx, command)  # type: ignore[attr-defined]
        params = {p.name: p for p in found.params}
        assert params[option].envvar == variable


def parse_vigie(argv: list[str]) -> None:
    """Parse ``vigie argv`` as the command line would, without running it."""
    root = typer.main.get_command(vigie_app)
    ctx = typer.Context(root, info_name="vigie")
    command: Any = root
    for position, word in enumerate(argv):
        sub = command.get_command(ctx, word)
        assert sub is not None, f"vigie {' '.join(argv[: position + 1])}: no such command"
        command = sub
        if not hasattr(command, "get_command"):
            try:
                command.make_context(word, argv[position + 1 :], parent=ctx)
            except typer.exceptions.TyperException as err:
                pytest.fail(f"vigie {' '.join(argv)}: {err}")
            return
        ctx = typer.Context(command, info_name=word, parent=ctx)
    pytest.fail(f"vigie {' '.join(argv)} names a group, not a command")


def expand(args: list[str], container: Object) -> list[str]:
    """``args`` with the kubelet's ``$(VAR)`` references filled (field references: a pod's)."""
    env = {v["name"]: v.get("value", "pod-0") for v in container.get("env", [])}
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_a_real_vigie_command(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    models = {p.parent.name for p in (ROOT / "models").glob("*/spec.yaml")}
    for _, container in containers(rendered[overlay]):
        assert container["command"] == ["vigie"], container["name"]
        argv = expand(container["args"], container)
        parse_vigie(argv)
        if "--model" in argv:
            assert argv[argv.index("--model") + 1] in models
        if argv[0] == "promote":
            assert argv[1] in models
