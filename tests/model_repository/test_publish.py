from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from prodgen.errors import ProdgenError
from prodgen.model_repository.publish import publish, versions


def write_file(content: str) -> Callable[[Path], None]:
    def write(folder: Path) -> None:
        (folder / "model.onnx").write_text(content)

    return write


def config(version: int) -> str:
    return f'name: "m"\n# version {version}\n'


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_each_publish_adds_a_version(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    first = publish(repository, "m", write_file("one"), config)
    second = publish(repository, "m", write_file("two"), config)
    assert (first.version, second.version) == (1, 2)
    assert (repository / "m" / "1" / "model.onnx").read_text() == "one"
    assert (repository / "m" / "2" / "model.onnx").read_text() == "two"
    assert (repository / "m" / "config.pbtxt").read_text() == config(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert sorted(p.name for p in (repository / "m").iterdir()) == ["1", "2", "config.pbtxt"]


@pytest.mark.parametrize("existing", [False, True], ids=["new-model", "new-version"])
def test_failed_publish_leaves_repository_as_it_was(tmp_path: Path, existing: bool) -> None:
    repository = tmp_path / "models"
    repository.mkdir()
    if existing:
        publish(repository, "m", write_file("one"), config)
    before = snapshot(tmp_path)

    def half_written(folder: Path) -> None:
        (folder / "model.onnx").write_text("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        publish(repository, "m", half_written, config)
    assert snapshot(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]


def test_concurrent_publishers_get_distinct_versions(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    publish(repository, "m", write_file("base"), config)
    results: list[int] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        version = publish(repository, "m", write_file(str(index)), config).version
        with lock:
            results.append(version)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(2, 8))
    assert versions(repository / "m") == list(range(1, 8))
    contents = {(repository / "m" / str(v) / "model.onnx").read_text() for v in range(2, 8)}
    assert contents == {str(i) for i in range(6)}


def test_invalid_name_and_foreign_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ProdgenError):
        publish(tmp_path, "../escape", write_file("x"), config)
    (tmp_path / "notes").mkdir()
    with pytest.raises(ProdgenError, match="not a Triton model"):
        publish(tmp_path, "notes", write_file("x"), config)
