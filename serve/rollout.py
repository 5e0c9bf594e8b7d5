"""Live rollout and rollback for a Triton started with `--model-control-mode=explicit`.

Explicit mode is how a production Triton runs on object storage, where nothing is atomic:
the server loads what it is told through its repository API, never on its own. So a new
version is first loaded under a separate name, `<model>.canary`, where no client sends
traffic; the outputs it gives for the inputs recorded at export (prodgen.canary) are
checked; only then does the version enter `<model>/` and is `<model>` reloaded. Triton keeps
serving the old version until the new one is ready, so the switch costs no request.

How many versions are served is the config's `version_policy` (`latest { num_versions: N }`,
Triton's default: the newest one); `prodgen rollback` moves the newest version aside
(`<model>/.rolled-back-<v>`, a name Triton ignores) and reloads, so the previous one serves
again. Older version folders beyond the served ones plus `keep_history` are removed.

With several replicas (`urls`, e.g. every address of a headless Service) the canary runs on
the first and every replica then loads the version, one after the other, since an explicit-mode
Triton loads only what it is told. This needs the repository as a local folder (or a volume
the servers read); the servers are reached over gRPC like any client would.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from prodgen.canary import Canary, CanaryVerdict, judge, read_canary
from prodgen.errors import ProdgenError
from prodgen.model_repository.config import parse_pbtxt, to_pbtxt
from prodgen.model_repository.publish import CONFIG_FILE, versions, write_text_atomically
from prodgen.serve.rollout_target import RolloutTarget

PROVENANCE_FILE = "prodgen-export.json"
CANARY_SUFFIX = ".canary"
Step = Callable[[str], None]


@dataclass(frozen=True)
class Deployment:
    model: str
    version: int
    served_versions: list[int]
    canary: CanaryVerdict | None
    removed_versions: list[int]


def served_count(config: mc.ModelConfig) -> int:
    """How many of the newest versions the config's version policy serves (Triton's default: 1)."""
    policy = config.version_policy
    if policy.WhichOneof("policy_choice") == "latest":
        return max(1, policy.latest.num_versions)
    if policy.WhichOneof("policy_choice") is not None:
        raise ProdgenError(
            f"version_policy {policy.WhichOneof('policy_choice')} is not supported for rollouts; "
            "expected `latest { num_versions: N }` (or none: the newest version)"
        )
    return 1


def _copy_version(source: Path, target: Path) -> None:
    """Hard links where the filesystem allows (model files can be gigabytes), copies elsewhere."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy)


def _aside(model_dir: Path, label: str, version: int) -> Path:
    target = model_dir / f".{label}-{version}"
    suffix = 0
    while target.exists():
        suffix += 1
        target = model_dir / f".{label}-{version}.{suffix}"
    return target


class Rollout:
    def __init__(self, target: RolloutTarget, step: Step = lambda _: None) -> None:
        if not target.urls:
            raise ProdgenError("a rollout needs at least one Triton URL")
        self.target = target
        self.step = step
        self.clients = {url: grpcclient.InferenceServerClient(url) for url in target.urls}
        self.client = self.clients[target.urls[0]]

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _load_everywhere(self, name: str, ready: list[int], gone: list[int]) -> None:
        for url in self.target.urls:
            if len(self.target.urls) > 1:
                self.step(f"  on {url}")
            self._load_until_ready(name, ready, gone, url)

    def _load_until_ready(self, name: str, ready: list[int], gone: list[int], url: str | None = None) -> None:
        """Ask Triton to (re)load `name` until versions `ready` are ready and `gone` are not.

        The embedded server loads from a mirror of the repository that follows it every
        fraction of a second, so a first load may still see the old folder: it is retried."""
        url = url or self.target.urls[0]
        client = self.clients[url]
        deadline = time.monotonic() + self.target.timeout_s
        last_error = ""
        while True:
            try:
                client.load_model(name, client_timeout=max(1.0, deadline - time.monotonic()))
                last_error = ""
            except InferenceServerException as error:
                last_error = (error.message() or str(error)).strip()
            if all(self._ready(name, v, url) for v in ready) and not any(self._ready(name, v, url) for v in gone):
                return
            if time.monotonic() > deadline:
                raise ProdgenError(
                    f"{name}: versions {ready} not loaded at {url} within {self.target.timeout_s:g} s"
                    + (f": {last_error}" if last_error else "")
                )
            time.sleep(0.25)

    def _ready(self, name: str, version: int, url: str | None = None) -> bool:
        client = self.clients[url or self.target.urls[0]]
        try:
            return bool(client.is_model_ready(name, str(version), client_timeout=10))
        except InferenceServerException:
            return False

    @staticmethod
    def _recorded_canary(folder: Path) -> Canary:
        provenance_path = folder / PROVENANCE_FILE
        if not provenance_path.is_file():
            raise ProdgenError(f"{folder} has no {PROVENANCE_FILE}; publish versions with prodgen-export")
        record = json.loads(provenance_path.read_text()).get("canary")
        if not isinstance(record, dict):
            raise ProdgenError(f"{provenance_path} records no canary; re-export the model with this prodgen")
        return read_canary(folder, record)

    def _run_canary(self, name: str, version: int, canary: Canary) -> CanaryVerdict:
        request = []
        for input_name, array in canary.inputs.items():
            tensor = grpcclient.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            request.append(tensor)
        outputs = [grpcclient.InferRequestedOutput(output) for output in canary.outputs]
        try:
            result = self.client.infer(name, request, model_version=str(version), outputs=outputs, client_timeout=60)
        except InferenceServerException as error:
            raise ProdgenError(f"canary inference on {name} version {version} failed: {error.message()}") from error
        return judge(canary, {output: result.as_numpy(output) for output in canary.outputs})

    def _canary(self, config: mc.ModelConfig, version: int, version_dir: Path) -> CanaryVerdict:
        """Load `version_dir` alone as `<model>.canary` (no client calls it), check it, unload it."""
        canary = self._recorded_canary(version_dir)
        name = self.target.model + CANARY_SUFFIX
        canary_dir = self.target.repository / name
        shutil.rmtree(canary_dir, ignore_errors=True)
        staging = self.target.repository.parent / f".{self.target.repository.name}.{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        canary_config = mc.ModelConfig()
        canary_config.CopyFrom(config)
        canary_config.name = name
        canary_config.version_policy.Clear()
        canary_config.version_policy.specific.versions.append(version)
        staging.mkdir(parents=True)
        try:
            _copy_version(version_dir, staging / str(version))
            (staging / CONFIG_FILE).write_text(to_pbtxt(canary_config))
            staging.rename(canary_dir)
            self.step(f"loading version {version} as {name}")
            self._load_until_ready(name, [version], [])
            self.step(f"checking {name} against the outputs recorded at export")
            return self._run_canary(name, version, canary)
        finally:
            try:
                self.client.unload_model(name, client_timeout=60)
            except InferenceServerException:
                pass  # never loaded
            shutil.rmtree(staging, ignore_errors=True)
            shutil.rmtree(canary_dir, ignore_errors=True)

    def _prune(self, served: int) -> list[int]:
        existing = versions(self.target.model_dir)
        keep = served + self.target.keep_history
        removed = existing[:-keep] if len(existing) > keep else []
        for version in removed:
            shutil.rmtree(self.target.model_dir / str(version))
        return removed

    def deploy(self, source: Path | None = None) -> Deployment:
        """Canary and serve a new version: the newest of `source/<model>` (an exported repository),
        or, without `source`, the newest version folder already in the repository."""
        model_dir = self.target.model_dir
        if source is not None:
            source_dir = source / self.target.model
            source_versions = versions(source_dir)
            if not source_versions:
                raise ProdgenError(f"{source_dir} has no published version; run prodgen-export first")
            candidate_dir = source_dir / str(source_versions[-1])
            config = parse_pbtxt((source_dir / CONFIG_FILE).read_text())
            if (model_dir / CONFIG_FILE).is_file():
                current = parse_pbtxt((model_dir / CONFIG_FILE).read_text())
                config.ClearField("version_policy")
                if current.HasField("version_policy"):
                    config.version_policy.CopyFrom(current.version_policy)
            version = (versions(model_dir) or [0])[-1] + 1
        else:
            if not (model_dir / CONFIG_FILE).is_file():
                raise ProdgenError(f"{model_dir} is not a model in the repository (no {CONFIG_FILE})")
            config = parse_pbtxt((model_dir / CONFIG_FILE).read_text())
            existing = versions(model_dir)
            if not existing:
                raise ProdgenError(f"{model_dir} has no version folder to deploy")
            version = existing[-1]
            candidate_dir = model_dir / str(version)
        count = served_count(config)
        previous = [v for v in versions(model_dir) if v != version][-count:]
        served_before = [v for v in previous if self._ready(self.target.model, v)]
        verdict = self._canary(config, version, candidate_dir)
        if not verdict.passed:
            if source is None:
                candidate_dir.rename(_aside(model_dir, "refused", version))
            still = ", ".join(map(str, served_before)) or "none"
            raise ProdgenError(
                f"{self.target.model} version {version} refused: its canary gave {verdict.describe()}; "
                f"still serving version(s) {still}"
            )
        if source is not None:
            self.step(f"publishing {self.target.model} version {version}")
            self._publish(candidate_dir, config, version)
        served = ([*previous, version])[-count:]
        self.step(f"loading {self.target.model} versions {served}")
        self._load_everywhere(self.target.model, served, [v for v in previous if v not in served])
        return Deployment(self.target.model, version, served, verdict, self._prune(count))

    def _publish(self, candidate_dir: Path, config: mc.ModelConfig, version: int) -> None:
        model_dir = self.target.model_dir
        staging_parent = model_dir if model_dir.is_dir() else self.target.repository
        staging = staging_parent / f".staging-{self.target.model}-{version}"
        shutil.rmtree(staging, ignore_errors=True)
        _copy_version(candidate_dir, staging)
        if model_dir.is_dir():
            staging.rename(model_dir / str(version))
            write_text_atomically(model_dir / CONFIG_FILE, to_pbtxt(config))
            return
        model_staging = self.target.repository / f".staging-{self.target.model}"
        shutil.rmtree(model_staging, ignore_errors=True)
        model_staging.mkdir()
        staging.rename(model_staging / str(version))
        (model_staging / CONFIG_FILE).write_text(to_pbtxt(config))
        model_staging.rename(model_dir)

    def rollback(self) -> Deployment:
        """Serve the previous version again, then move the newest version folder aside.

        The newest version's files stay in place until every replica has switched: a server
        loading from a mirror of the repository (the embedded one) may still be reading them.
        Meanwhile the config pins the versions to serve; the original policy comes back after."""
        model_dir = self.target.model_dir
        if not (model_dir / CONFIG_FILE).is_file():
            raise ProdgenError(f"{model_dir} is not a model in the repository (no {CONFIG_FILE})")
        original = (model_dir / CONFIG_FILE).read_text()
        config = parse_pbtxt(original)
        existing = versions(model_dir)
        if len(existing) < 2:
            raise ProdgenError(
                f"{self.target.model} has {len(existing)} version(s) in {model_dir}: nothing to roll back to"
            )
        newest = existing[-1]
        served = existing[:-1][-served_count(config) :]
        pinned = mc.ModelConfig()
        pinned.CopyFrom(config)
        pinned.version_policy.Clear()
        pinned.version_policy.specific.versions.extend(served)
        write_text_atomically(model_dir / CONFIG_FILE, to_pbtxt(pinned))
        try:
            self.step(f"loading {self.target.model} versions {served}")
            self._load_everywhere(self.target.model, served, [newest])
            (model_dir / str(newest)).rename(_aside(model_dir, "rolled-back", newest))
            self.step(f"version {newest} moved aside as .rolled-back-{newest}")
        finally:
            write_text_atomically(model_dir / CONFIG_FILE, original)
        return Deployment(self.target.model, served[-1], served, None, [])


def deploy(target: RolloutTarget, source: Path | None = None, step: Step = lambda _: None) -> Deployment:
    rollout = Rollout(target, step)
    try:
        return rollout.deploy(source)
    finally:
        rollout.close()


def rollback(target: RolloutTarget, step: Step = lambda _: None) -> Deployment:
    rollout = Rollout(target, step)
    try:
        return rollout.rollback()
    finally:
        rollout.close()
