"""Every emptyDir in the Kubernetes manifests has a sizeLimit: a pod that fills its scratch
space is evicted instead of filling the node's disk."""

from __future__ import annotations

from pathlib import Path

import yaml

BASE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "base"


def test_every_empty_dir_has_a_size_limit():
    seen = []
    for path in sorted(BASE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
            for volume in pod.get("volumes", []):
                if "emptyDir" in volume:
                    seen.append((path.name, volume["name"]))
                    assert (volume["emptyDir"] or {}).get("sizeLimit"), (path.name, volume)
    assert ("gateway.yaml", "tmp") in seen and len(seen) >= 10
