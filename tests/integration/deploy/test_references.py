"""The manifests of k8s/ agree with each other, with the Secrets documented, and with monitoring/.

In every overlay:

- Service selectors and target ports agree with the pods, the PodDisruptionBudget's and the
  NetworkPolicies' selectors with the pods they are for, and every Service is scraped under
  a job of the rules;
- every pod is restricted and writes only to its volumes, and references only the Secrets
  (and keys) of ``secret.example.yaml``, which no kustomization applies;
- the generated observability files are up to date, and the PrometheusRule and the
  dashboards equal ``monitoring/``.

How the manifests agree with the code: ``test_code_references.py``. What the tests need, and
how the overlays are rendered: ``manifests.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from .manifests import (
    HOME,
    K8S,
    OVERLAYS,
    ROOT,
    Object,
    containers,
    example_secrets,
    load_script,
    mounts,
    of_kind,
    one,
    selects,
    workloads,
)

pytestmark = pytest.mark.integration


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


# -- security and secrets ----------------------------------------------------------------


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
