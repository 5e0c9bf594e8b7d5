"""docker/ and docker/kubernetes/ checked offline: Kubernetes API schemas of a pinned version,
KServe's own models, and agreement with the server's and client's defaults.

No cluster, Docker engine or GPU is reachable here: what `kubectl apply -k` and
`docker compose up` would do is checked against the schemas and defaults they rely on."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy.kustomize_render import render, strategic_merge

from prodgen.bench.hpa_threshold import QUEUE_METRIC, queue_threshold
from prodgen.client.api import DEFAULT_URL
from prodgen.serve.server import ServerOptions

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[deploy]'")
if importlib.util.find_spec("kserve") is None:
    pytest.skip("KServe's models are not installed: pip install -e '.[deploy]'", allow_module_level=True)
from deploy.openapi_models import problems  # noqa: E402  (needs kserve)

KUBERNETES_VERSION = "1.34.0"
ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
KUBERNETES = DOCKER / "kubernetes"
OVERLAYS = ("cpu", "gpu")
DEFAULTS = ServerOptions(Path("models"))
HEALTH_READY, HEALTH_LIVE = "/v2/health/ready", "/v2/health/live"


def versions() -> dict[str, str]:
    lines = (DOCKER / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj)
    return found


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [o for o in by_kind(objects).get(kind, []) if name is None or o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (triton,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return triton


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_of_each_overlay_is_valid_for_the_pinned_kubernetes(overlay: str) -> None:
    objects = render(KUBERNETES / "overlays" / overlay)
    assert set(by_kind(objects)) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_misspelt_probe_field() -> None:
    deployment = one(render(KUBERNETES / "overlays" / "cpu"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": HEALTH_READY}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_ports_probes_and_names_agree_with_the_server_and_client_defaults() -> None:
    for overlay in OVERLAYS:
        objects = render(KUBERNETES / "overlays" / overlay)
        triton = container(objects)
        ports = {port["name"]: port["containerPort"] for port in triton["ports"]}
        assert ports == {"http": DEFAULTS.http_port, "grpc": DEFAULTS.grpc_port, "metrics": DEFAULTS.metrics_port}
        args = triton["args"]
        for flag, port in (
            ("http", DEFAULTS.http_port),
            ("grpc", DEFAULTS.grpc_port),
            ("metrics", DEFAULTS.metrics_port),
        ):
            assert f"--{flag}-port={port}" in args
        assert "--model-control-mode=explicit" in args and "--strict-readiness=true" in args
        assert triton["readinessProbe"]["httpGet"] == {"path": HEALTH_READY, "port": "http"}
        assert triton["livenessProbe"]["httpGet"] == {"path": HEALTH_LIVE, "port": "http"}
        startup = triton["startupProbe"]
        assert startup["httpGet"]["path"] == HEALTH_READY
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 900, "engine builds take minutes"

        deployment = one(objects, "Deployment")
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        for service in by_kind(objects)["Service"]:
            assert service["spec"]["selector"].items() <= pod_labels.items()
            for port in service["spec"]["ports"]:
                assert ports[port["targetPort"]] == port["port"]
        headless = one(objects, "Service", "prodgen-triton-headless")
        assert headless["spec"]["clusterIP"] == "None"
        assert [p["port"] for p in headless["spec"]["ports"]] == [int(DEFAULT_URL.rsplit(":", 1)[1])]
        assert one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        hpa = one(objects, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert hpa["spec"]["minReplicas"] >= 2, "one replica down must not take the service down"
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(DEFAULTS.metrics_port)


def test_the_autoscaler_threshold_is_the_one_derived_from_the_committed_bench_report() -> None:
    report = json.loads((ROOT / "bench" / "reports" / "cpu-baseline" / "report.json").read_text())
    derived = queue_threshold(report)
    objects = render(KUBERNETES / "base")
    (metric,) = one(objects, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["pods"]["metric"]["name"] == QUEUE_METRIC
    assert metric["pods"]["target"]["averageValue"] == str(derived.threshold_us)
    rules = yaml.safe_load(one(objects, "ConfigMap", "prometheus-adapter-prodgen-rules")["data"]["config.yaml"])
    (rule,) = rules["rules"]
    assert rule["name"]["as"] == QUEUE_METRIC
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]


def test_the_gpu_overlay_adds_a_gpu_and_keeps_the_base_container() -> None:
    base = container(render(KUBERNETES / "base"))
    gpu = container(render(KUBERNETES / "overlays" / "gpu"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--allow-gpu-metrics=true" in gpu["args"]
    assert gpu["env"] == base["env"] and gpu["readinessProbe"] == base["readinessProbe"]
    assert [m["mountPath"] for m in gpu["volumeMounts"]] == ["/dev/shm", "/tmp/prodgen-trt-engine-cache"]
    assert "nvidia.com/gpu" not in str(container(render(KUBERNETES / "overlays" / "cpu")))


def test_strategic_merge_merges_named_lists_and_replaces_the_others() -> None:
    base = {"containers": [{"name": "a", "args": ["x"], "env": [{"name": "E", "value": "1"}]}], "tolerations": [1]}
    patch = {"containers": [{"name": "a", "env": [{"name": "F", "value": "2"}]}, {"name": "b"}], "tolerations": [2]}
    merged = strategic_merge(base, patch)
    assert merged == {
        "containers": [
            {"name": "a", "args": ["x"], "env": [{"name": "E", "value": "1"}, {"name": "F", "value": "2"}]},
            {"name": "b"},
        ],
        "tolerations": [2],
    }


def test_kserve_runtime_and_inference_service_match_kserve_models_and_the_image() -> None:
    objects = render(KUBERNETES / "kserve")
    runtime = one(objects, "ServingRuntime")
    service = one(objects, "InferenceService")
    assert problems(runtime, "V1alpha1ServingRuntime") == []
    assert problems(service, "V1beta1InferenceService") == []
    broken = {**service, "spec": {"predictor": {"model": {"storageURI": "s3://x"}}}}
    assert problems(broken, "V1beta1InferenceService") == [
        ".spec.predictor.model.storageURI: not a field of V1beta1ModelSpec"
    ]
    assert service["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"]
    (kserve_container,) = runtime["spec"]["containers"]
    assert kserve_container["image"].endswith(":" + versions()["TRITON_RELEASE"])
    assert kserve_container["readinessProbe"]["httpGet"]["path"] == HEALTH_READY
    assert f"--grpc-port={DEFAULTS.grpc_port}" in kserve_container["args"]


def test_one_triton_release_everywhere() -> None:
    release = versions()["TRITON_RELEASE"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"ARG TRITON_RELEASE={release}\n" in dockerfile
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_RELEASE}-py3" in dockerfile
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert compose["services"]["triton"]["build"]["args"]["TRITON_RELEASE"] == release
    assert compose["services"]["triton"]["image"].endswith(":" + release)
    base = yaml.safe_load((KUBERNETES / "base" / "kustomization.yaml").read_text())
    assert [image["newTag"] for image in base["images"]] == [release]
    assert "tensorrt:${TRITON_RELEASE}-py3" in (DOCKER / "build_plan.sh").read_text()
    table = (DOCKER / "README.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith(f"| {release} "))
    for key in ("TRITON_SERVER_VERSION", "TENSORRT_VERSION", "CUDA_VERSION", "ONNXRUNTIME_VERSION"):
        assert versions()[key] in row, f"docker/README.md's table and versions.env disagree on {key}"


def test_compose_serves_the_gpu_with_health_restart_shm_and_a_prometheus_scrape() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    triton = compose["services"]["triton"]
    published = {int(mapping.split(":")[1]) for mapping in triton["ports"]}
    assert published == {DEFAULTS.http_port, DEFAULTS.grpc_port, DEFAULTS.metrics_port}
    (device,) = triton["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert f"127.0.0.1:{DEFAULTS.http_port}{HEALTH_READY}" in " ".join(triton["healthcheck"]["test"])
    assert triton["restart"] == "unless-stopped" and triton["shm_size"]
    assert re.fullmatch(r"\d+m", triton["healthcheck"]["start_period"])
    prometheus = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert job["static_configs"][0]["targets"] == [f"triton:{DEFAULTS.metrics_port}"]
    mounted = compose["services"]["prometheus"]["volumes"][0].split(":")[0]
    assert (DOCKER / mounted).resolve() == DOCKER / "prometheus.yml"
