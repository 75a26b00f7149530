"""The autoscalers of k8s/ and what each overlay is for.

- prod and gpu scale the prediction Deployment with an HPA on CPU, prod-keda with KEDA like
  prod's HPA and on the request counter of the code, dev and kserve with neither: each
  autoscaler agrees with the Deployment;
- dev runs one replica with its drift sidecar on the embedded stores; the production overlays
  share one drift monitor and a ReadWriteMany volume, and spread their replicas over nodes;
  gpu serves on CUDA from the CUDA image; kserve runs vigie as an OIP v2 custom predictor.

What the tests need, and how the overlays are rendered: ``manifests.py``.
"""

from __future__ import annotations

import re

import pytest

from vigie.config import Settings
from vigie.serving import metrics as serving_metrics

from .manifests import (
    HOME,
    NAMESPACE,
    Object,
    Workload,
    config,
    containers,
    environment,
    mounts,
    of_kind,
    one,
    selects,
    settings_values,
    workloads,
)

pytestmark = pytest.mark.integration


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
