"""ONNX Runtime sessions: one way to open a model file, bytes or `ModelProto` on chosen providers.

Export verification, the FP16 fidelity gate, FLOP probes and the benchmarks all open
sessions here, so that each runs the graph the way the others do (CPU unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
import onnxruntime

from prodgen.cores import physical_cores

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


def external_weights_options(folder: Path) -> onnxruntime.SessionOptions:
    """Options for a session over a serialised model whose external data files are in `folder`
    (a model over 2 GB kept as a weightless proto while it is rewritten)."""
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
    return options


def tuned_session_options(threads: int, spinning: bool = True) -> onnxruntime.SessionOptions:
    """Options prodgen measures and races CPU sessions with: `threads` intra-op threads, one inter-op
    thread and sequential execution (the graphs are chains of convolutions), every graph optimisation."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def cpu_session(model: str | bytes, threads: int, spinning: bool = True) -> onnxruntime.InferenceSession:
    """A tuned CPU session on a model file's path or a serialised model; threads 0: physical cores."""
    return onnx_session(model, tuned_session_options(threads or physical_cores(), spinning))
