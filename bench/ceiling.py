"""The machine's practical compute ceiling: a large GEMM through PyTorch and through ONNX
Runtime, and on CPU a large 3×3 convolution through oneDNN, measured in the run; the best
of them for a device and precision is the ceiling.

Convolutions on CPU and GPU run as (implicit) GEMMs, so the best a large square matrix
product reaches is the practical limit for conv-heavy models; a model's achieved
GFLOP/s is reported as a fraction of it. The ceiling is measured in the same run as
the model, because on a shared or throttled machine yesterday's figure means little.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

CPU_SIDE = 2048
GPU_SIDE = 8192
ONNX_IR_VERSION = 8
"""Opset 17 needs IR ≥ 8; onnx's newest IR version is often newer than an installed ONNX Runtime reads."""


@dataclass(frozen=True)
class Ceiling:
    device: str
    dtype: str
    side: int
    best_gflops: float
    median_gflops: float
    repeats: int
    when: str = ""
    library: str = "torch"
    """Whose GEMM: PyTorch's BLAS (MKL or oneDNN) or ONNX Runtime's MLAS; on AMD CPUs MKL
    may take a slower code path than MLAS, so the CPU ceiling is the better of the two."""

    @property
    def key(self) -> str:
        return f"{self.device}-{self.dtype}"

    @property
    def label(self) -> str:
        return f"{self.key} ({self.library})"


def _rates(
    product: Callable[[], object], flops: float, seconds: float, synchronize: Callable[[], None] = lambda: None
) -> list[float]:
    """GFLOP/s of repeated `product` calls after two untimed ones: at least 3, for `seconds`."""
    for _ in range(2):
        product()
    synchronize()
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < 3 or (time.perf_counter() < deadline and len(rates) < 200):
        start = time.perf_counter()
        product()
        synchronize()
        rates.append(flops / (time.perf_counter() - start) / 1e9)
    return rates


def measure_gemm_onnxruntime(side: int = CPU_SIDE, seconds: float = 1.5, threads: int | None = None) -> Ceiling:
    """FP32 GFLOP/s of a side×side MatMul through ONNX Runtime's CPU provider (MLAS)."""
    import numpy as np
    from onnx import TensorProto, helper

    from prodgen.onnx_sessions import cpu_session

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [side, side]) for name in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [side, side])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ONNX_IR_VERSION)
    session = cpu_session(model.SerializeToString(), threads or 0)
    generator = np.random.default_rng(0)
    feed = {name: generator.standard_normal((side, side), dtype=np.float32) for name in ("a", "b")}
    rates = _rates(lambda: session.run(None, feed), 2.0 * side**3, seconds)
    return Ceiling("cpu", "float32", side, max(rates), statistics.median(rates), len(rates), library="onnxruntime")


def measure_conv_cpu(seconds: float = 1.5, channels: int = 256, side: int = 64) -> Ceiling:
    """FP32 GFLOP/s of a large 3×3 convolution (an implicit GEMM) through PyTorch's oneDNN,
    channels-last. On some CPUs (AMD Zen 5 here: 420-450 GFLOP/s against 190 for a 2048²
    SGEMM through MKL) the convolution kernels reach far more than the BLAS GEMM does, and
    a ceiling that conv-heavy models exceed would be no ceiling."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, side, side, generator=generator).contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, channels, 3, 3, generator=generator).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        rates = _rates(
            lambda: torch.nn.functional.conv2d(x, w, padding=1), 2.0 * channels * channels * 9 * side * side, seconds
        )
    return Ceiling(
        "cpu", "float32", side, max(rates), statistics.median(rates), len(rates), library="torch oneDNN conv3x3"
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_gemm(
    device: str = "cpu", dtype: torch.dtype = torch.float32, side: int | None = None, seconds: float = 1.5
) -> Ceiling:
    """GFLOP/s of side×side @ side×side products (2·side³ FLOPs each); best and median of repeats."""
    target = torch.device(device)
    side = side or (GPU_SIDE if target.type == "cuda" else CPU_SIDE)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=generator).to(target, dtype)
    b = torch.randn(side, side, generator=generator).to(target, dtype)
    out = torch.empty(side, side, device=target, dtype=dtype)
    with torch.inference_mode():
        rates = _rates(lambda: torch.mm(a, b, out=out), 2.0 * side**3, seconds, lambda: _synchronize(target))
    return Ceiling(
        device=target.type,
        dtype=str(dtype).removeprefix("torch."),
        side=side,
        best_gflops=max(rates),
        median_gflops=statistics.median(rates),
        repeats=len(rates),
    )


def cpu_has_bf16_matrix_units() -> bool:
    """True on CPUs with AMX-BF16 or AVX512-BF16, where bf16 GEMMs run several times faster than FP32."""
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return "amx_bf16" in flags.split() or "avx512_bf16" in flags.split()


CEILING_SECONDS = 1.5
"""Seconds spent measuring the ceilings at each end of a run: enough products for a stable best."""


def measure_ceilings(when: str, seconds: float = CEILING_SECONDS) -> list[Ceiling]:
    """FP32 on the CPU (and BF16 where the CPU has matrix units for it); FP32 (TF32 off) and
    FP16 on a CUDA GPU as well, when there is one."""
    ceilings = [
        measure_gemm("cpu", torch.float32, seconds=seconds),
        measure_gemm_onnxruntime(seconds=seconds),
        measure_conv_cpu(seconds),
    ]
    if cpu_has_bf16_matrix_units():
        ceilings.append(measure_gemm("cpu", torch.bfloat16, seconds=seconds))
    if torch.cuda.is_available():
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False
        try:
            ceilings += [
                measure_gemm("cuda", torch.float32, seconds=seconds),
                measure_gemm("cuda", torch.float16, seconds=seconds),
            ]
        finally:
            torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    return [replace(ceiling, when=when) for ceiling in ceilings]


def best_ceiling(ceilings: Sequence[Ceiling], device: str, precision: str) -> Ceiling | None:
    """The highest ceiling measured in the run for this device and precision: the machine's
    capability, which a contended moment can only hide, never raise."""
    dtype = "float16" if precision.startswith("fp16") else "bfloat16" if precision.startswith("bf16") else "float32"
    matching = [c for c in ceilings if c.device == device and c.dtype == dtype]
    return max(matching, key=lambda c: c.best_gflops) if matching else None
