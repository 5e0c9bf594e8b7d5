"""The embedded server's python-backend mirror: complete models appear, failed ones leave nothing."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from prodgen.cores import physical_cores
from prodgen.model_repository.config import PARAMETER_PREFIX, parse_pbtxt
from prodgen.model_repository.publish import ONNX_FILE
from prodgen.serve.python_backend_repository import python_backend_config, sync_mirror
from prodgen.serve.session_threads import intra_op_threads

IDENTITY = helper.make_model(
    helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
)
CONFIG = 'name: "m"\nbackend: "onnxruntime"\nmax_batch_size: 4\n'


def source_repository(root: Path, versions: tuple[int, ...] = (1,)) -> Path:
    repository = root / "models"
    for version in versions:
        (repository / "m" / str(version)).mkdir(parents=True)
        # a real (tiny) ONNX model: the mirror leaves out versions whose file is not one
        onnx.save(IDENTITY, repository / "m" / str(version) / ONNX_FILE)
    (repository / "m" / "config.pbtxt").write_text(CONFIG)
    return repository


def test_a_model_is_mirrored_with_its_versions_and_no_staging_left(tmp_path: Path) -> None:
    repository = source_repository(tmp_path, versions=(1, 2))
    mirror = tmp_path / "serve" / "models"
    result = sync_mirror(repository, mirror)
    assert result.served == ["m"]
    assert sorted(p.name for p in (mirror / "m").iterdir()) == ["1", "2", "config.pbtxt"]
    assert 'backend: "python"' in (mirror / "m" / "config.pbtxt").read_text()
    assert (mirror / "m" / "1" / ONNX_FILE).samefile(repository / "m" / "1" / ONNX_FILE)
    assert list((tmp_path / "serve" / ".models.staging").iterdir()) == []


def test_a_failed_mirror_leaves_no_staging_folder_behind(tmp_path: Path) -> None:
    repository = source_repository(tmp_path)
    mirror = tmp_path / "serve" / "models"
    mirror.mkdir(parents=True)
    (mirror / "m").symlink_to(tmp_path / "nowhere")  # not a folder: moving the staged model there fails
    with pytest.raises(OSError):
        sync_mirror(repository, mirror)
    assert list((tmp_path / "serve" / ".models.staging").iterdir()) == []


def test_each_instance_gets_a_thread_per_core_by_default() -> None:
    assert intra_op_threads(0, cores=8) == 8
    assert intra_op_threads(0, cores=0) == 1  # never zero threads
    assert intra_op_threads(3, cores=2) == 3  # an explicit --threads wins


@pytest.mark.parametrize(("requested", "instances"), [(0, 1), (0, 2), (5, 2)])
def test_the_mirrored_config_carries_the_thread_count_and_no_spinning(requested: int, instances: int) -> None:
    config = parse_pbtxt(CONFIG + f"instance_group {{ count: {instances} kind: KIND_CPU }}\n")
    mirrored = python_backend_config(config, requested)
    threads = mirrored.parameters[PARAMETER_PREFIX + "intra_op_threads"].string_value
    assert int(threads) == (requested or physical_cores())
    assert mirrored.parameters[PARAMETER_PREFIX + "intra_op_spinning"].string_value == "0"
    assert sum(group.count for group in mirrored.instance_group) == instances
