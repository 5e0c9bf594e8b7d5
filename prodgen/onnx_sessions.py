"""ONNX Runtime sessions: one way to open a model file, bytes or `ModelProto` on chosen providers.

Export verification, the FP16 fidelity gate, FLOP probes and the benchmarks all open
sessions here, so that each runs the graph the way the others do (CPU unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime

CPU_PROVIDERS = ("CPUExecutionProvider",)


def onnx_session(
    model: Path | str | bytes | onnx.ModelProto,
    options: onnxruntime.SessionOptions | None = None,
    providers: Sequence[str] = CPU_PROVIDERS,
) -> onnxruntime.InferenceSession:
    """A session over a model file's path, a serialised model or a `ModelProto`."""
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return onnxruntime.InferenceSession(
        str(source) if isinstance(source, Path) else source, options, providers=list(providers)
    )
