"""Only versions whose model.onnx is a valid ONNX model enter the embedded server's mirror."""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from prodgen import zoo
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config, to_pbtxt
from prodgen.serve.python_backend_repository import sync_mirror


def write_model(folder: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["z"], ["output_image"])],
        "identity",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [None, 100])],
        [helper.make_tensor_value_info("output_image", TensorProto.FLOAT, [None, 100])],
    )
    folder.mkdir(parents=True)
    onnx.save(helper.make_model(graph), folder / "model.onnx")
    return folder / "model.onnx"


def test_a_truncated_version_is_refused_and_the_working_one_is_mirrored(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    good = write_model(repository / "m" / "1")
    (repository / "m" / "config.pbtxt").write_text(
        to_pbtxt(onnxruntime_config(zoo.get("dcgan"), "m", BatchingOptions()))
    )
    (repository / "m" / "2").mkdir()
    (repository / "m" / "2" / "model.onnx").write_bytes(good.read_bytes()[:40])
    mirror = tmp_path / "mirror"
    result = sync_mirror(repository, mirror)
    assert result.served == ["m"] and result.changed == ["m"]
    assert "not a valid ONNX model" in result.rejected["m/2"]
    assert sorted(p.name for p in (mirror / "m").iterdir() if p.is_dir()) == ["1"]
    again = sync_mirror(repository, mirror)
    assert again.changed == []  # nothing to load again while nothing changed
    (repository / "m" / "2" / "model.onnx").unlink()
    write_model(repository / "m" / "3")
    assert sync_mirror(repository, mirror).changed == ["m"]
    assert sorted(p.name for p in (mirror / "m").iterdir() if p.is_dir()) == ["1", "3"]
