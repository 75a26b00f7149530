"""The overlays of k8s/ render, their objects validate against their schemas, checkov passes.

Every overlay renders into the one namespace, without Secrets. Then:

- every object is validated, strictly, against the Kubernetes schemas of kubernetes-validate
  (the oldest Kubernetes the manifests support, 1.30, and the newest the tool knows), and
  the custom resources (ServiceMonitor, PrometheusRule, ScaledObject, InferenceService)
  against schemas written for vigie from their projects' API references
  (``crd_schemas.yaml``, see ``validate_objects.py``): none is skipped;
- checkov's Kubernetes checks pass on every overlay, in one run, and each check it skips
  carries its reason in the manifests (a ``checkov.io/skip`` annotation) and is one of the
  few skips this file allows.

What the tests need, and how the overlays are rendered: ``manifests.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .manifests import K8S, NAMESPACE, OVERLAYS, Object, deploy_tools, of_kind, one

pytestmark = pytest.mark.integration

#: Kubernetes versions the manifests are validated against: the oldest supported (native
#: preStop sleep, Job pod failure policies) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
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
