"""Writing OpenVINO IR: a write that fails is one line naming the file, not OpenVINO's iostream error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prodgen.errors import ProdgenError
from prodgen.openvino_runtime import write_ir

openvino = pytest.importorskip("openvino")


def _relu() -> object:
    from openvino import opset13 as ops

    x = ops.parameter([1, 3], np.float32, name="x")
    return openvino.Model([ops.relu(x)], [x], "relu")


def test_a_written_ir_reads_back(tmp_path: Path) -> None:
    write_ir(_relu(), tmp_path / "model.xml")
    assert {op.get_type_name() for op in openvino.Core().read_model(str(tmp_path / "model.xml")).get_ops()} >= {"Relu"}


def test_an_ir_that_cannot_be_written_is_one_line_naming_the_file_and_the_space_left(tmp_path: Path) -> None:
    blocked = tmp_path / "model.xml"
    blocked.mkdir()  # a folder where the file should go: the write fails as a full disk's does
    with pytest.raises(ProdgenError) as raised:
        write_ir(_relu(), blocked)
    message = str(raised.value)
    assert "\n" not in message and str(blocked) in message and "GB free" in message
