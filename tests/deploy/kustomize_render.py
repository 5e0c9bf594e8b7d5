"""A small kustomize for the fields prodgen's manifests use, so tests render overlays offline.

The `kustomize` binary is not installable from the registries the project builds with.
This covers exactly what docker/kubernetes uses: `resources` (files and directories with
their own kustomization.yaml), `images` (newName/newTag) and `patches` given by `path`,
applied as strategic-merge patches: maps merge key by key, lists of containers, volumes,
env entries, volume mounts and container ports merge by their Kubernetes merge keys, every
other list is replaced. Anything else in a kustomization.yaml is refused, so a manifest
that starts using a feature this does not know fails the tests instead of rendering wrong.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
KNOWN_FIELDS = {"apiVersion", "kind", "resources", "images", "patches"}


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = strategic_merge(base[key], value, key) if key in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        merged_list = [copy.deepcopy(item) for item in base]
        for item in patch:
            index = next((i for i, old in enumerate(merged_list) if old.get(key) == item.get(key)), None)
            if index is None:
                merged_list.append(copy.deepcopy(item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item, field)
        return merged_list
    return copy.deepcopy(patch)


def _load(path: Path) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document]


def _containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec)
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k directory` would create."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise ValueError(
            f"{directory}/kustomization.yaml uses {sorted(unknown)}, which this renderer does not implement"
        )
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        resources += render(path) if path.is_dir() else _load(path)
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"only `patches: - path: …` is implemented, not {patch_entry}")
        for patch in _load(directory / patch_entry["path"]):
            matches = [
                i
                for i, r in enumerate(resources)
                if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]
            ]
            if len(matches) != 1:
                raise ValueError(f"patch {patch_entry['path']} matches {len(matches)} resources, expected 1")
            resources[matches[0]] = strategic_merge(resources[matches[0]], patch)
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in _containers(resource):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image['newTag']}"
    return resources
