"""Gather an ONNX graph's weights into one external data file, one tensor in memory at a time.

torch.onnx.export writes a graph over protobuf's 2 GB limit as one file per weight beside it, and
a smaller one with the weights inside. Triton's onnxruntime backend and prodgen's publishing expect
`model.onnx` + one `model.onnx.data`. `onnx.load` + `onnx.save_model(save_as_external_data=True)`
would hold every weight in memory at once (10 GB for SDXL's UNet in FP32), so this copies them
tensor by tensor instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

SIZE_THRESHOLD = 1024
"""Tensors of at least this many bytes go to the data file (onnx.save_model's own default)."""


def _entries(tensor: onnx.TensorProto) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _tensor_bytes(tensor: onnx.TensorProto, folder: Path) -> bytes:
    """The raw little-endian bytes of `tensor`, from the proto or from its external file."""
    if tensor.data_location != onnx.TensorProto.EXTERNAL:
        return tensor.raw_data if tensor.HasField("raw_data") else numpy_helper.to_array(tensor).tobytes()
    entries = _entries(tensor)
    offset = int(entries.get("offset", 0))
    with open(folder / entries["location"], "rb") as stream:
        stream.seek(offset)
        return stream.read(int(entries["length"])) if "length" in entries else stream.read()


def _initializers(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _initializers(attribute.g)
            for subgraph in attribute.graphs:
                yield from _initializers(subgraph)


def uses_external_data(model: onnx.ModelProto) -> bool:
    return any(tensor.data_location == onnx.TensorProto.EXTERNAL for tensor in _initializers(model.graph))


def append_tensor(array: np.ndarray, name: str, folder: Path, data_name: str) -> onnx.TensorProto:
    """`array` as an initializer stored at the end of `folder / data_name` (created if absent)."""
    tensor = numpy_helper.from_array(array, name)
    payload = tensor.raw_data
    with open(folder / data_name, "ab") as data:
        offset = data.tell()
        data.write(payload)
    _point_at(tensor, data_name, offset, len(payload))
    return tensor


def _point_at(tensor: onnx.TensorProto, data_name: str, offset: int, length: int) -> None:
    for field in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
        tensor.ClearField(field)
    del tensor.external_data[:]
    for key, value in (("location", data_name), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    tensor.data_location = onnx.TensorProto.EXTERNAL


def save_with_external_data(model: onnx.ModelProto, weights: Path | None, target: Path, data_name: str) -> None:
    """`model` saved as `target` with its weights in `target`'s folder / `data_name`, one tensor at a time:
    tensors inside the proto and tensors stored externally relative to `weights` alike. `model` is changed
    to point at the new file."""
    if weights is not None and (weights / data_name).resolve() == (target.parent / data_name).resolve():
        raise ValueError(f"{target.parent / data_name}: would overwrite the weights it is read from")
    with open(target.parent / data_name, "wb") as data:
        for tensor in _initializers(model.graph):
            external = tensor.data_location == onnx.TensorProto.EXTERNAL
            if tensor.data_type == onnx.TensorProto.STRING or (not external and tensor.ByteSize() < SIZE_THRESHOLD):
                continue
            if external and weights is None:
                raise ValueError(f"tensor {tensor.name} is stored externally but no weights folder was given")
            payload = _tensor_bytes(tensor, weights or target.parent)
            offset = data.tell()
            data.write(payload)
            _point_at(tensor, data_name, offset, len(payload))
            del payload
    onnx.save_model(model, str(target))


def gather_external_data(source: Path, target: Path, data_name: str) -> None:
    """`source` (weights inside or in any external files beside it) saved as `target` + `data_name`
    beside it, with every initializer of SIZE_THRESHOLD bytes or more in that one file."""
    save_with_external_data(onnx.load(str(source), load_external_data=False), source.parent, target, data_name)
