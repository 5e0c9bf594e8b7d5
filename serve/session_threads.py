"""How many ONNX Runtime threads each served model instance runs, and whether they spin.

Every instance of a served model is its own python-backend process with its own ONNX Runtime
session. Each session gets a thread per physical core, as Triton's onnxruntime backend gives
each instance by default, one inter-op thread (prodgen's graphs are chains with nothing to run
side by side), and worker threads that sleep instead of spinning when a run ends.

Sleeping threads are what make a thread per core right for every instance. With two
instances, fast-neural-style at 256² on 2 cores (`prodgen-bench served --concurrency 1,8`,
one server each, in turn): a core each (the cores shared out among the instances) answered a
lone request in 252 ms p50 and gave 7.7 images/s at concurrency 8; both cores each answered it
in 151 ms and gave 7.5 images/s. A lone request gets every core, and under load the instances
take turns on them instead of spinning against each other. A spinning pool keeps the cores busy
while the stub hands the response to Triton and gRPC sends it, which is exactly when the request
still needs them (bench/reports/serving-overhead).
"""

from __future__ import annotations

from prodgen.cores import physical_cores

ALLOW_SPINNING = False
"""ONNX Runtime's `session.intra_op.allow_spinning` in served sessions (measured: see bench/reports/serving-overhead)."""


def intra_op_threads(requested: int, cores: int | None = None) -> int:
    """`requested` when given (> 0); else a thread per physical core, at least 1."""
    if requested > 0:
        return requested
    return max(1, cores if cores is not None else physical_cores())
