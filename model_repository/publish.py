"""Atomic, versioned publishing into a Triton model repository.

A server polling the repository must never see half a model. Everything is written in a
staging folder on the same filesystem and moved into place with one `rename`:

- a new model: `<repo>/../.<repo>.staging-*/<name>/` (config + version 1) becomes `<repo>/<name>`;
- a new version of a model: `<repo>/<name>/.staging-*/` becomes `<repo>/<name>/<N>`
  (Triton ignores non-numeric folders inside a model), then config.pbtxt is replaced
  with `os.replace`.

If anything fails, the staging folder is removed and the repository is as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prodgen.errors import ProdgenError
from prodgen.names import check_model_name

DEFAULT_REPOSITORY = Path("models")
"""Where prodgen-export publishes and prodgen serve serves when no --repository is given."""
CONFIG_FILE = "config.pbtxt"
ONNX_FILE = "model.onnx"
"""The file in each version folder that the onnxruntime backend (and the embedded server) loads."""
PLAN_FILE = "model.plan"
"""The serialised TensorRT engine the tensorrt_plan platform loads."""
OPENVINO_FILE = "model.xml"
"""The OpenVINO IR (with its weights in `model.bin` beside it) that Triton's openvino backend loads by default."""


@dataclass(frozen=True)
class PublishedVersion:
    model_dir: Path
    version: int

    @property
    def version_dir(self) -> Path:
        return self.model_dir / str(self.version)


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def newest_version(model_dir: Path) -> Path:
    """The folder of a published model's newest version."""
    return model_dir / str(max(versions(model_dir)))


def model_names(repository: Path) -> list[str]:
    if not repository.is_dir():
        return []
    return sorted(p.name for p in repository.iterdir() if (p / CONFIG_FILE).is_file())


def check_repository(repository: Path, must_exist: bool) -> None:
    """A repository path that is a file (or inside one), or missing where it must exist, in one line."""
    for path in (repository, *repository.parents):
        if path.exists():
            if not path.is_dir():
                raise ProdgenError(
                    f"--repository {repository}: {path} is a file; expected a folder for the Triton model repository"
                )
            break
    if must_exist and not repository.is_dir():
        raise ProdgenError(f"model repository {repository} does not exist; export a model first (prodgen-export)")


@contextmanager
def staging_dir(parent: Path, prefix: str) -> Iterator[Path]:
    """An empty folder in `parent` (same filesystem, so renaming out of it is atomic); whatever
    is still in it when the block ends, renamed away or not, is removed, also on failure."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_text_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def publish(
    repository: Path,
    name: str,
    write_version: Callable[[Path], None],
    config_text: Callable[[int], str],
) -> PublishedVersion:
    """Publish a new version of model `name`.

    `write_version(folder)` fills the version folder (model.onnx, …); `config_text(version)`
    returns the config.pbtxt to publish with it. Concurrent publishers each get their own
    version number.
    """
    check_model_name(name)
    repository.mkdir(parents=True, exist_ok=True)
    model_dir = repository / name
    if model_dir.exists() and not (model_dir / CONFIG_FILE).is_file():
        raise ProdgenError(
            f"{model_dir} exists but is not a Triton model (no {CONFIG_FILE}); refusing to write into it"
        )

    for _attempt in range(100):
        if not model_dir.exists():
            with staging_dir(repository.parent, f".{repository.name}.staging-") as staging:
                staged_model = staging / name
                (staged_model / "1").mkdir(parents=True)
                write_version(staged_model / "1")
                (staged_model / CONFIG_FILE).write_text(config_text(1))
                try:
                    staged_model.rename(model_dir)
                except OSError:
                    continue
                return PublishedVersion(model_dir, 1)
        version = (versions(model_dir) or [0])[-1] + 1
        with staging_dir(model_dir, ".staging-") as staging:
            write_version(staging)
            text = config_text(version)
            try:
                staging.rename(model_dir / str(version))
            except OSError:
                continue
        write_text_atomically(model_dir / CONFIG_FILE, text)
        return PublishedVersion(model_dir, version)
    raise ProdgenError(f"could not publish {name}: the repository kept changing under us")
