"""`prodgen deploy` / `prodgen rollback` against the real embedded tritonserver in explicit mode, under load."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc

from prodgen import zoo
from prodgen.client import ProdgenClient
from prodgen.errors import ProdgenError
from prodgen.export.pipeline import ExportRequest, export_model
from prodgen.model_repository.config import BatchingOptions
from prodgen.seeding import latents_from_seed
from prodgen.serve.rollout import deploy, rollback, served_count
from prodgen.serve.rollout_target import RolloutTarget
from prodgen.serve.server import EmbeddedServer, ServerOptions
from tests_support import all_running, console_script, free_port

pytestmark = pytest.mark.e2e

SEEDS = range(6)


def expected_images(onnx_path: Path) -> dict[int, np.ndarray]:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return {seed: session.run(["output_image"], {"z": latents_from_seed(seed, 1, 100)})[0][0] for seed in SEEDS}


def which(image: np.ndarray, seed: int, candidates: dict[str, dict[int, np.ndarray]]) -> str | None:
    for label, images in candidates.items():
        if np.abs(image.astype(int) - images[seed].astype(int)).max() <= 1:
            return label
    return None


class SteadyLoad:
    """Calls dcgan from several threads until stopped; records which model answered each call.

    Each answer is filed under the time its request was sent, so a call already in flight when a rollout step returns
    is counted before that step, as it was sent to the version serving then.
    """

    def __init__(self, urls: list[str], candidates: dict[str, dict[int, np.ndarray]], threads: int = 4) -> None:
        self.urls = urls
        self.candidates = candidates
        self.answers: list[tuple[float, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        with ProdgenClient(urls=self.urls, timeout_s=30) as client:
            call = index
            while not self._stop.is_set():
                seed = call % len(SEEDS)
                call += 1
                sent_at = time.monotonic()
                try:
                    image = client.generate("dcgan", seed=seed, count=1)[0]
                except ProdgenError as error:
                    with self._lock:
                        self.failures.append(str(error))
                    continue
                with self._lock:
                    self.answers.append((sent_at, which(image, seed, self.candidates)))

    @staticmethod
    def mark() -> float:
        return time.monotonic()

    def between(self, start: float, end: float = float("inf")) -> list[str | None]:
        """Answers to the calls sent between two marks, in the order they were sent."""
        with self._lock:
            return [label for sent_at, label in sorted(self.answers, key=lambda a: a[0]) if start <= sent_at < end]

    def __enter__(self) -> SteadyLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


@pytest.fixture(scope="module")
def candidate_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dcgan exported again with other weights: the version to roll out."""
    source = tmp_path_factory.mktemp("candidate") / "models"
    export_model(ExportRequest(zoo.get("dcgan"), source, "dcgan", seed=9, batching=BatchingOptions(max_batch_size=4)))
    return source


@pytest.fixture
def explicit_servers(exported_repository: Path, tmp_path: Path) -> Iterator[list[EmbeddedServer]]:
    """Two explicit-mode replicas of one repository, on 127.0.0.1 and 127.0.0.2."""
    repository = tmp_path / "models"
    shutil.copytree(exported_repository / "dcgan", repository / "dcgan")
    ports = {"grpc_port": free_port(), "http_port": free_port(), "metrics_port": free_port()}
    servers = [
        EmbeddedServer(
            ServerOptions(repository, host, **ports, model_control="explicit", intra_op_threads=1)  # type: ignore[arg-type]
        )
        for host in ("127.0.0.1", "127.0.0.2")
    ]
    with all_running(servers):
        yield servers


def test_rollout_canary_refusal_and_rollback_under_load_fail_no_request(
    explicit_servers: list[EmbeddedServer], candidate_repository: Path, tmp_path: Path
) -> None:
    repository = explicit_servers[0].options.repository
    urls = [server.options.grpc_url for server in explicit_servers]
    old = expected_images(repository / "dcgan" / "1" / "model.onnx")
    new = expected_images(candidate_repository / "dcgan" / "1" / "model.onnx")
    target = RolloutTarget(repository, "dcgan", tuple(urls), timeout_s=120)

    # A candidate whose model.onnx is not the one its canary was recorded with.
    tampered = tmp_path / "tampered"
    shutil.copytree(candidate_repository, tampered)
    shutil.copyfile(repository / "dcgan" / "1" / "model.onnx", tampered / "dcgan" / "1" / "model.onnx")

    with SteadyLoad(urls, {"old": old, "new": new}) as load:
        before = load.mark()
        done = deploy(target, source=candidate_repository)
        assert (done.version, done.served_versions) == (2, [2])
        assert done.canary is not None and done.canary.passed
        after_deploy = load.mark()

        with pytest.raises(
            ProdgenError, match=r"dcgan version 3 refused: its canary gave .*still serving version\(s\) 2"
        ):
            deploy(target, source=tampered)
        assert not (repository / "dcgan" / "3").exists()
        after_refusal = load.mark()

        command = [console_script("prodgen"), "rollback", "dcgan", "--repository", str(repository)]
        rolled = subprocess.run(command + [f"--url={u}" for u in urls], capture_output=True, text=True, timeout=300)
        assert rolled.returncode == 0, rolled.stderr
        assert "dcgan back on version 1 (serving [1])" in rolled.stdout
        assert (repository / "dcgan" / ".rolled-back-2").is_dir()
        after_rollback = load.mark()
        while len(load.between(after_rollback)) < 8:
            threading.Event().wait(0.05)

    answers = load.between(before)
    print(f"\nrollout, refused canary and rollback under load: {len(answers)} calls, {len(load.failures)} failed")
    assert load.failures == []
    assert None not in answers, "every answer is one of the two exported models' images"
    assert set(load.between(after_deploy, after_refusal)) == {"new"}, "the refused candidate never answered"
    assert set(load.between(after_rollback)) == {"old"}
    for url in urls:
        raw = grpcclient.InferenceServerClient(url)
        assert raw.is_model_ready("dcgan", "1") and not raw.is_model_ready("dcgan", "2")
        assert not raw.is_model_ready("dcgan.canary")
        raw.close()
    assert not (repository / "dcgan.canary").exists()


def test_deploy_refuses_a_version_without_a_canary_and_rollback_needs_a_previous_version(
    exported_repository: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    shutil.copytree(exported_repository / "dcgan", repository / "dcgan")
    target = RolloutTarget(repository, "dcgan", (f"127.0.0.1:{free_port()}",), timeout_s=30)
    with pytest.raises(ProdgenError, match="nothing to roll back to"):
        rollback(target)
    (repository / "dcgan" / "1" / "canary.npz").write_bytes(b"tampered")
    with pytest.raises(ProdgenError, match="canary.npz does not match the hash recorded at export"):
        deploy(target)
    (repository / "dcgan" / "1" / "prodgen-export.json").write_text('{"zoo_model": "dcgan"}')
    with pytest.raises(ProdgenError, match="records no canary; re-export"):
        deploy(target)


def test_the_number_of_served_versions_comes_from_the_configs_latest_policy() -> None:
    config = mc.ModelConfig()
    assert served_count(config) == 1, "Triton's default policy serves the newest version"
    config.version_policy.latest.num_versions = 2
    assert served_count(config) == 2
    config.version_policy.all.SetInParent()
    with pytest.raises(ProdgenError, match="version_policy all is not supported for rollouts"):
        served_count(config)
