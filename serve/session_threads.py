"""How many ONNX Runtime threads each served model instance runs, and whether they spin.

Every instance of a served model is its own python-backend process with its own ONNX Runtime
session. Left to itself each session starts a thread per physical core, so two instances on
a 2-core machine run four compute threads that preempt each other. The default gives each
instance an equal share of the cores (at least one thread), one inter-op thread (prodgen's
graphs are chains with nothing to run side by side), and worker threads that sleep instead of
spinning when a run ends: a spinning pool keeps the cores busy while the stub hands the
response to Triton and gRPC sends it, which is exactly when the request still needs them.
"""

from __future__ import annotations

from prodgen.cores import physical_cores

ALLOW_SPINNING = False
"""ONNX Runtime's `session.intra_op.allow_spinning` in served sessions (measured: see bench/reports/serving-overhead)."""


def intra_op_threads(requested: int, instances: int, cores: int | None = None) -> int:
    """`requested` when given (> 0); else the cores shared out among the model's instances, at least 1."""
    if requested > 0:
        return requested
    available = cores if cores is not None else physical_cores()
    return max(1, available // max(instances, 1))
