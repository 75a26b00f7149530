"""The Kubernetes manifests of k8s/ as the deploy tests read them: rendered, and taken apart.

Every overlay is rendered once, with ``kubectl kustomize``, by the session fixture
``rendered`` of ``conftest.py``; the test modules beside this one check what it renders:

- ``test_render_and_policy.py``: the overlays render, their objects validate against their
  schemas, and checkov passes;
- ``test_references.py``: the manifests agree with each other and with the code;
- ``test_overlays.py``: the autoscalers and what each overlay is for;
- ``test_deploy_workflow.py``: the deploy workflow.

kubectl and the manifest checkers (checkov, kubernetes-validate, in ``VIGIE_DEPLOY_TOOLS``,
by default ``<repo>/.venv-deploy/bin``, which ``make deploy-tools`` fills) must be present:
without them the tests fail, they do not skip. Nothing here touches a cluster.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod", "prod-keda", "gpu", "kserve")
NAMESPACE = "vigie"
HOME = "/var/lib/vigie"
#: VIGIE_* variables that are options of a command, not settings (vigie promote --key).
COMMAND_VARIABLES = {"VIGIE_PREDICT_KEY": ("promote", "key")}
#: Variables every command reads that are not settings: the caller's API key.
CALLER_VARIABLES = {"VIGIE_API_KEY"}
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
