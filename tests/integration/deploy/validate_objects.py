"""Validate rendered Kubernetes objects; run by the deploy tools' interpreter, not vigie's.

``test_render_and_policy.py`` runs this file with the Python of the manifest checkers'
virtual environment (``VIGIE_DEPLOY_TOOLS``, where kubernetes-validate and jsonschema live;
vigie's own environment has neither). Input on stdin, JSON::

    {"versions": ["1.30.0", ...], "objects": [{"source": "dev", "object": {...}}, ...]}

Output on stdout, JSON: one result per object and Kubernetes version, each with the errors
found (an empty list when valid) and what validated it:

- built-in kinds: kubernetes-validate's schemas of that version, strict (unknown fields
  fail), every error reported;
- the custom resources of ``crd_schemas.yaml``: that schema, then the parts of them that are
  Kubernetes types against Kubernetes' own schema (an InferenceService predictor's pod
  fields as a Pod; a ScaledObject's scaling behaviour as a HorizontalPodAutoscaler's);
- anything else: an error, so that a new kind cannot go unchecked.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv
import yaml
from referencing import Registry, Resource

SCHEMAS = Path(__file__).with_name("crd_schemas.yaml")

#: InferenceService predictor fields that are KServe's, not the pod spec's.
KSERVE_COMPONENT_FIELDS = frozenset(
    {
        "minReplicas",
        "maxReplicas",
        "scaleTarget",
        "scaleMetric",
        "containerConcurrency",
        "timeout",
        "canaryTrafficPercent",
        "labels",
        "annotations",
        "deploymentStrategy",
        "logger",
        "batcher",
        "model",
        "storageUris",
        "workerSpec",
    }
)


class KubernetesSchemas:
    """kubernetes-validate's strict schemas, each loaded once (its ``validate`` reloads the
    definitions, megabytes of JSON, on every call, and stops at the first error)."""

    def __init__(self) -> None:
        self._definitions: dict[str, Any] = {}
        self._validators: dict[tuple[str, str, str], Any] = {}

    def _validator(self, obj: dict[str, Any], version: str) -> Any:
        """The validator of ``obj``'s kind at ``version`` (as kubernetes-validate finds it)."""
        schema_version = [
            v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor(version)
        ][-1]
        group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
        key = (schema_version, obj["kind"].lower(), group_version)
        if key not in self._validators:
            folder = f"kubernetes-json-schema/v{schema_version}-local-strict"
            try:
                schema = kv.schema_contents(f"{folder}/{key[1]}-{key[2]}.json", version)
            except FileNotFoundError as err:
                raise LookupError(
                    f"no Kubernetes {version} schema for {obj['apiVersion']} {obj['kind']}"
                ) from err
            if folder not in self._definitions:
                self._definitions[folder] = kv.schema_contents(
                    f"{folder}/_definitions.json", version
                )
            registry = Resource.from_contents(self._definitions[folder]) @ Registry()
            registry = Resource.from_contents(schema) @ registry
            self._validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
        return self._validators[key]

    def errors(self, obj: dict[str, Any], version: str) -> list[str]:
        """Every error of a built-in object against Kubernetes ``version``'s strict schema."""
        try:
            validator = self._validator(obj, version)
        except LookupError as err:
            return [str(err)]
        return [
            f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in validator.iter_errors(obj)
        ]


KUBERNETES = KubernetesSchemas()


def kubernetes_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Every error of a built-in object against Kubernetes ``version``'s strict schema."""
    return KUBERNETES.errors(obj, version)


def schema_errors(obj: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every error of ``obj`` against a hand-written CRD schema."""
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path))
    ]


def embedded_errors(obj: dict[str, Any], version: str) -> list[str]:
    """Errors of the Kubernetes types inside a custom resource."""
    name = obj["metadata"]["name"]
    if obj["kind"] == "InferenceService":
        predictor = obj["spec"]["predictor"]
        pod_spec = {k: v for k, v in predictor.items() if k not in KSERVE_COMPONENT_FIELDS}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}
        return [f"spec.predictor (as a Pod) {e}" for e in kubernetes_errors(pod, version)]
    if obj["kind"] == "ScaledObject":
        spec = obj["spec"]
        hpa_config = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {})
        hpa = {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": hpa_config.get("name", name)},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": spec["scaleTargetRef"].get("apiVersion", "apps/v1"),
                    "kind": spec["scaleTargetRef"].get("kind", "Deployment"),
                    "name": spec["scaleTargetRef"]["name"],
                },
                "minReplicas": spec.get("minReplicaCount", 1),
                "maxReplicas": spec.get("maxReplicaCount", 100),
                **({"behavior": hpa_config["behavior"]} if "behavior" in hpa_config else {}),
            },
        }
        return [f"(as its HPA) {e}" for e in kubernetes_errors(hpa, version)]
    return []


def validate(obj: dict[str, Any], version: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """The result of one object against one Kubernetes version."""
    key = f"{obj.get('apiVersion')}/{obj.get('kind')}"
    if key in schemas:
        errors = schema_errors(obj, schemas[key])
        if not errors:
            errors = embedded_errors(obj, version)
        validated_by = "crd-schema"
    else:
        errors = kubernetes_errors(obj, version)
        validated_by = "kubernetes-validate"
    return {"validated_by": validated_by, "errors": errors}


def main() -> None:
    """Read the objects on stdin, write the results on stdout."""
    request = json.load(sys.stdin)
    schemas = yaml.safe_load(SCHEMAS.read_text())["schemas"]
    results = []
    for item in request["objects"]:
        obj = item["object"]
        for version in request["versions"]:
            result = validate(obj, version, schemas)
            results.append(
                {
                    "source": item["source"],
                    "kind": obj.get("kind"),
                    "name": obj.get("metadata", {}).get("name"),
                    "version": version,
                    **result,
                }
            )
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
