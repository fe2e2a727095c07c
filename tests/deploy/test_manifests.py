"""deploy/: the real validators pass on it and fail on broken copies of it (deploy/validate/
check.py: hadolint, the Compose Specification schema, kustomize + kubernetes-validate, KEDA's
schemas), and the rendered manifests say what the design needs (probes, GPUs, scaling, settings
names that the services really read). The structure checks parse YAML; validation is the tools'."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from services.common.settings import ServiceSettings
from services.exporter.settings import ExporterSettings
from services.gateway.settings import GatewaySettings
from services.generator.settings import GeneratorSettings
from services.judge.settings import JudgeSettings
from services.router.settings import RouterSettings
from services.trainer.settings import TrainerSettings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SETTINGS: dict[str, type[ServiceSettings]] = {
    s.service_name: s
    for s in (GatewaySettings, GeneratorSettings, JudgeSettings, TrainerSettings, ExporterSettings,
              RouterSettings)
}
# The router also serves OpenAI's HTTP API, on its gRPC port + 2000.
ROUTER_PORTS = {"grpc": 50056, "metrics": 51056, "http": 52056}
PORTS = {name: cls.default_port for name, cls in SETTINGS.items()}
SERVICES = set(PORTS)  # every service that has manifests


def _load_check():
    spec = importlib.util.spec_from_file_location("deploy_check", DEPLOY / "validate" / "check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check = _load_check()


@cache
def rendered(overlay: str) -> tuple[dict, ...]:
    ok, text = check.render(DEPLOY / "k8s" / overlay)
    assert ok, text
    return tuple(o for o in yaml.safe_load_all(text) if o)


def objects(overlay: str, kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in rendered(overlay) if o["kind"] == kind}


def service_of(container: dict) -> str | None:
    """`services.<name>` from a container's `python -m services.<name>` command."""
    command = container.get("command") or []
    mods = [c for c in command if str(c).startswith("services.")]
    return mods[0].removeprefix("services.") if mods else None


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def valid_env_names(service: str) -> set[str]:
    fields = [f.upper() for f in SETTINGS[service].model_fields]
    return {f"DISTILL_{f}" for f in fields} | {f"DISTILL_{service.upper()}_{f}" for f in fields}


# --- the validators ---------------------------------------------------------------------------

def test_real_validators_pass():
    results = check.check_all(REPO)
    assert {r.check.split()[0] for r in results} == {"hadolint", "compose-spec", "compose-secure",
                                                     "kustomize"}
    assert len([r for r in results if r.check.startswith("kustomize")]) == 3  # base + 2 overlays
    failed = [f"{r.check}: {r.detail}" for r in results if not r.ok]
    assert not failed, "\n".join(failed)


BREAKAGES = {
    # name: (file under deploy/, text, replacement, check function, expected in the output)
    "compose-empty-token-default": ("compose.yaml", "${DISTILL_INTERNAL_TOKEN:?",
                                    "${DISTILL_INTERNAL_TOKEN:-", "check_compose",
                                    "DISTILL_INTERNAL_TOKEN needs"),
    "k8s-optional-internal-token": ("k8s/base/exporter.yaml", "key: internal-token\n",
                                    "key: internal-token\n                  optional: true\n",
                                    "check_kustomizations", "Deployment exporter: "
                                    "DISTILL_INTERNAL_TOKEN must come from a Secret"),
    "k8s-stages-open-to-all": ("k8s/base/network-policy.yaml",
                               "name: gateway\n      ports:\n        - port: grpc",
                               "name: anyone\n      ports:\n        - port: grpc",
                               "check_kustomizations", "no NetworkPolicy admits only the gateway"),
    "dockerfile-root-user": ("docker/Dockerfile", "USER 10001:10001", "USER root",
                             "check_dockerfiles", "DL3002"),
    "compose-unknown-key": ("compose.yaml", "shm_size: 2gb", "shm_sise: 2gb",
                            "check_compose", "shm_sise"),
    "k8s-unknown-field": ("k8s/base/generator.yaml", "terminationGracePeriodSeconds:",
                          "terminationGracePeriod:", "check_kustomizations",
                          "terminationGracePeriod"),
    "k8s-wrong-type": ("k8s/base/judge.yaml", "containerPort: 50053", "containerPort: judge",
                       "check_kustomizations", "Deployment/judge"),
    "k8s-unknown-kind": ("k8s/base/pdb.yaml", "kind: PodDisruptionBudget",
                         "kind: PodDisruptionBudgt", "check_kustomizations",
                         "Couldn't find schema"),
    "k8s-missing-resource": ("k8s/base/kustomization.yaml", "  - pdb.yaml\n",
                             "  - pdb.yaml\n  - missing.yaml\n", "check_kustomizations",
                             "missing.yaml"),
    "keda-threshold-not-string": ("k8s/base/trainer-scaledobject.yaml", 'threshold: "1"',
                                  "threshold: 1", "check_kustomizations",
                                  "ScaledObject/trainer"),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_a_broken_copy_fails(name, tmp_path):
    path, text, replacement, function, expected = BREAKAGES[name]
    root = tmp_path / "repo"
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("node_modules"))
    node_modules = DEPLOY / "validate" / "node_modules"
    if node_modules.exists():
        (root / "deploy" / "validate" / "node_modules").symlink_to(node_modules)
    target = root / "deploy" / path
    original = target.read_text()
    assert text in original, f"{path} changed: update this breakage"
    target.write_text(original.replace(text, replacement, 1))

    results = getattr(check, function)(root)
    failed = [r for r in results if not r.ok]
    assert failed, f"{name}: the validators accepted a broken {path}"
    assert any(expected in r.detail for r in failed), [r.detail for r in failed]


# --- what the manifests must say -------------------------------------------------------------

@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/production"])
def test_every_service_deployment_has_grpc_probes_resources_and_metrics(overlay):
    deployments = objects(overlay, "Deployment")
    seen = set()
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        for container in pod["spec"]["containers"]:
            service = service_of(container)
            if service is None:
                continue
            seen.add(service)
            port = PORTS[service]
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            extra = {"http": ROUTER_PORTS["http"]} if service == "router" else {}
            assert ports == {"grpc": port, "metrics": port + 1000, **extra}, name
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["grpc"] == {"port": port}, (name, probe)
            resources = container["resources"]
            assert {"cpu", "memory"} <= resources["requests"].keys(), name
            assert "memory" in resources["limits"], name
            annotations = pod["metadata"]["annotations"]
            assert annotations["prometheus.io/scrape"] == "true", name
            assert annotations["prometheus.io/port"] == str(port + 1000), name
    assert seen == SERVICES, seen


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/production"])
def test_every_service_has_a_service_and_a_pdb(overlay):
    services = objects(overlay, "Service")
    pdbs = objects(overlay, "PodDisruptionBudget")
    for name in SERVICES:
        ports = {p["name"]: p["port"] for p in services[name]["spec"]["ports"]}
        assert ports["grpc"] == PORTS[name]
        assert services[name]["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert pdbs[name]["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}


def test_production_trainer_runs_on_gpu_nodes_and_scales_on_queue_depth():
    trainer = objects("overlays/production", "Deployment")["trainer"]
    pod = trainer["spec"]["template"]["spec"]
    assert "replicas" not in trainer["spec"]  # KEDA owns the count
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])

    scaled = objects("overlays/production", "ScaledObject")["trainer"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == "trainer"
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    assert "distill_training_queue_depth" in trigger["metadata"]["query"]

    headless = objects("overlays/production", "Service")["trainer-headless"]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == {"app.kubernetes.io/name": "trainer"}


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/production"])
def test_gateway_addresses_name_real_services(overlay):
    gateway = objects(overlay, "Deployment")["gateway"]
    env = {e["name"]: e.get("value") for e in gateway["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    services = objects(overlay, "Service")
    targets = {name: env[f"DISTILL_GATEWAY_{name.upper()}_ADDRESS"]
               for name in ("generator", "judge", "exporter")}
    targets["trainer-headless"] = env["DISTILL_GATEWAY_TRAINER_ADDRESSES"]
    for service, address in targets.items():
        host, port = address.rsplit(":", 1)
        assert host == service
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}


def test_dev_overlay_needs_no_gpu_and_no_keda():
    assert not objects("overlays/dev", "ScaledObject")
    pod = objects("overlays/dev", "Deployment")["trainer"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_every_k8s_file_is_rendered():
    """A file no kustomization names would escape validation."""
    named = set()
    for folder in check.kustomizations(REPO):
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        entries = kustomization.get("resources", []) + [
            p["path"] for p in kustomization.get("patches", []) if "path" in p]
        named |= {(folder / e).resolve() for e in entries}
    files = {p.resolve() for p in (DEPLOY / "k8s").rglob("*.yaml")
             if p.name != "kustomization.yaml"}
    assert files <= named, sorted(str(p) for p in files - named)


def test_compose_services_have_health_checks_and_the_trainer_a_gpu():
    spec = compose()
    services = spec["services"]
    assert SERVICES | {"minio", "minio-init"} == set(services)
    for name, service in services.items():
        if name == "minio-init":  # one-shot
            assert service["restart"] == "no"
            continue
        assert service["healthcheck"]["test"][0] == "CMD", name
        if name in SERVICES:
            assert service["healthcheck"]["test"][1:] == [
                "python", "-m", "services.common.health_probe", f"127.0.0.1:{PORTS[name]}"]
            assert service["command"] == ["python", "-m", f"services.{name}"]
            deps = service["depends_on"]
            assert deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    (device,) = services["trainer"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    for name in ("gateway", "generator", "judge", "router"):  # the services that read API keys
        assert services[name]["env_file"] == ".env"
    env = services["gateway"]["environment"]
    for name in ("generator", "judge", "exporter"):
        assert env[f"DISTILL_GATEWAY_{name.upper()}_ADDRESS"] == f"{name}:{PORTS[name]}"
    assert env["DISTILL_GATEWAY_TRAINER_ADDRESSES"] == f"trainer:{PORTS['trainer']}"


def _k8s_env_names() -> list[tuple[str, str]]:
    """(service, env name) for every DISTILL_ variable a service container gets in k8s."""
    pairs = []
    for overlay in ("overlays/dev", "overlays/production"):
        configmaps = objects(overlay, "ConfigMap")
        for deployment in objects(overlay, "Deployment").values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                service = service_of(container)
                if service is None:
                    continue
                names = [e["name"] for e in container.get("env", [])]
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        names += configmaps[source["configMapRef"]["name"]]["data"]
                pairs += [(service, n) for n in names]
    return pairs


def _compose_env_names() -> list[tuple[str, str]]:
    return [(name, var) for name, service in compose()["services"].items() if name in SETTINGS
            for var in service.get("environment", {})]


def _image_env_names() -> list[tuple[str, str]]:
    """ENV lines of the Dockerfiles: a DISTILL_ variable must be read by at least one service."""
    pairs = []
    for path in check.dockerfiles(REPO):
        pairs += [("any", var) for var in re.findall(r"\b(DISTILL_[A-Z0-9_]+)=", path.read_text())]
    return pairs


def test_every_distill_env_name_is_a_real_setting():
    """A misspelt DISTILL_ variable is silently ignored by pydantic-settings; catch it here."""
    pairs = _k8s_env_names() + _compose_env_names() + _image_env_names()
    assert len(pairs) > 20
    every = set().union(*(valid_env_names(s) for s in SETTINGS))
    wrong = sorted({(service, var) for service, var in pairs if var.startswith("DISTILL_")
                    and var not in (every if service == "any" else valid_env_names(service))})
    assert not wrong, wrong


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/production"])
def test_router_scales_on_cpu_and_serves_openai_http_through_its_service(overlay):
    router = objects(overlay, "Deployment")["router"]
    assert "replicas" not in router["spec"]  # the HPA owns the count
    hpa = objects(overlay, "HorizontalPodAutoscaler")["router"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "router"}
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] >= (2 if overlay == "overlays/production" else 1)
    assert hpa["maxReplicas"] > hpa["minReplicas"]
    ports = {p["name"]: (p["port"], p["targetPort"])
             for p in objects(overlay, "Service")["router"]["spec"]["ports"]}
    assert ports["http"] == (ROUTER_PORTS["http"], "http")
    container = router["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DISTILL_ROUTER_HTTP_PORT"] == str(ROUTER_PORTS["http"])
    host, port = env["DISTILL_ROUTER_GATEWAY_ADDRESS"].rsplit(":", 1)
    assert int(port) in {p["port"] for p in objects(overlay, "Service")[host]["spec"]["ports"]}
    assert env["DISTILL_ROUTER_ENGINE"] == "llama-server"


def test_compose_router_publishes_its_apis_after_the_gateway_is_healthy():
    router = compose()["services"]["router"]
    assert router["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert router["environment"]["DISTILL_ROUTER_GATEWAY_ADDRESS"] == f"gateway:{PORTS['gateway']}"
    published = {p.rsplit(":", 1)[-1] for p in router["ports"]}
    assert published == {str(ROUTER_PORTS["grpc"]), str(ROUTER_PORTS["http"])}


def test_the_image_carries_llama_server_where_the_router_looks():
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    assert "scripts/llama_server.sh)\" /opt/venv/bin/llama-server" in dockerfile
