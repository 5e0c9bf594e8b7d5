"""PyTorch in eager mode, and PyTorch with the best settings it offers on this machine.

`torch-best` measures its options instead of assuming them, because what helps depends
on the model and the machine: it picks the faster memory format in eager mode,
then compiles that with TorchInductor (with weight freezing, which pre-packs convolution
weights for oneDNN on CPU) and keeps the compiled module only if it is faster. On a GPU
every candidate runs under FP16 autocast with cuDNN autotuning. Each choice and the trial
times are reported.

`torch-bf16` (opt-in) runs channels-last eager under BF16 autocast, for CPUs with AMX or
AVX512-BF16 and for GPUs; its output agreement with FP32 is reported next to its speed.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from prodgen.bench.ceiling import cpu_has_bf16_matrix_units
from prodgen.bench.runtime import Inputs, Outputs, Prepared, Runtime, RuntimeUnavailable, Workload

TRIAL_RUNS = 2


def _autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    return torch.autocast(device_type=device, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def torch_runner(
    module: Callable[..., object],
    workload: Workload,
    inputs: Inputs,
    autocast: torch.dtype | None = None,
    tuned: bool = False,
) -> Callable[[], Outputs]:
    """Host arrays in, host arrays out: one end-to-end call of `module`. `tuned` lets cuDNN
    time its convolution algorithms for the shape (the shape of a measurement never changes)."""
    names = [spec.name for spec in workload.model.inputs]
    host = [torch.from_numpy(inputs[name]) for name in names]
    device = torch.device(workload.device)
    if device.type == "cuda":
        host = [tensor.pin_memory() for tensor in host]
    autotune = tuned and device.type == "cuda"

    def run() -> Outputs:
        cudnn = torch.backends.cudnn.flags(enabled=True, benchmark=True) if autotune else contextlib.nullcontext()
        with torch.inference_mode(), _autocast(device.type, autocast), cudnn:
            result = module(*(tensor.to(device, non_blocking=True) for tensor in host))
            outputs = result if isinstance(result, (tuple, list)) else (result,)
            return [
                output.float().cpu().numpy() if output.is_floating_point() else output.cpu().numpy()
                for output in outputs
            ]

    return run


def _channels_last(module: nn.Module) -> nn.Module:
    """4-D parameters and buffers in NHWC order (in place). `Module.to(memory_format=...)`
    would also try 5-D tensors (StyleGAN2's modulated weights) and fail on them."""
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def _fastest(run: Callable[[], Outputs], runs: int = TRIAL_RUNS) -> float:
    """Best of a few timed runs after one warm-up, in ms: enough to rank settings, not to report."""
    run()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        run()
        best = min(best, (time.perf_counter() - start) * 1000)
    return best


class TorchEager(Runtime):
    name = "torch-eager"
    description = "PyTorch eager, FP32, default (NCHW) memory format"

    def open(self, workload: Workload) -> None:
        super().open(workload)
        self.module = (
            workload.module if workload.device == "cpu" else copy.deepcopy(workload.module).to(workload.device)
        )

    def prepare(self, inputs: Inputs) -> Prepared:
        return Prepared(
            torch_runner(self.module, self.workload, inputs), "fp32", {"threads": str(self.workload.threads)}
        )


class TorchBest(Runtime):
    name = "torch-best"
    description = (
        "PyTorch with the fastest of: channels-last, torch.compile (inductor, frozen weights); FP16 autocast on GPU"
    )

    def __init__(self, compile: bool = True) -> None:
        self.compile = compile

    def open(self, workload: Workload) -> None:
        super().open(workload)
        self.autocast = torch.float16 if workload.device == "cuda" else None
        self.precision = "fp16-autocast" if self.autocast is not None else "fp32"
        self.contiguous = copy.deepcopy(workload.module).to(workload.device)
        self.channels_last = _channels_last(copy.deepcopy(workload.module).to(workload.device))

    def prepare(self, inputs: Inputs) -> Prepared:
        trials: dict[str, float] = {}
        candidates: dict[str, tuple[nn.Module, Callable[[], Outputs]]] = {}
        for label, module in (("contiguous", self.contiguous), ("channels_last", self.channels_last)):
            run = torch_runner(module, self.workload, inputs, self.autocast, tuned=True)
            trials[label] = _fastest(run)
            candidates[label] = (module, run)
        memory_format = min(trials, key=trials.__getitem__)
        settings = {"threads": str(self.workload.threads), "memory_format": memory_format, "compile": "off"}
        best_run = candidates[memory_format][1]
        best_ms = trials[memory_format]
        if self.compile:
            compiled_run, compile_s, reason = self._compiled(candidates[memory_format][0], inputs)
            if compiled_run is None:
                settings["compile"] = f"failed: {reason}"
            else:
                trials[f"{memory_format}+compile"] = compiled_ms = _fastest(compiled_run)
                settings["compile_s"] = f"{compile_s:.1f}"
                if compiled_ms < best_ms:
                    best_run, settings["compile"] = compiled_run, "inductor, freezing"
                else:
                    settings["compile"] = "slower than eager here, not used"
        settings["trials_ms"] = ", ".join(f"{label} {ms:.1f}" for label, ms in trials.items())
        return Prepared(best_run, self.precision, settings)

    def _compiled(self, module: nn.Module, inputs: Inputs) -> tuple[Callable[[], Outputs] | None, float, str]:
        """Compile for this shape (the first call compiles); a failure is reported, not raised."""
        torch._dynamo.reset()
        compiled = torch.compile(module, dynamic=False, options={"freezing": True})
        run = torch_runner(compiled, self.workload, inputs, self.autocast, tuned=True)
        start = time.perf_counter()
        try:
            run()
        except Exception as error:  # noqa: BLE001 - inductor needs a C++ compiler and more; fall back to eager
            return None, 0.0, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        return run, time.perf_counter() - start, ""


class TorchBf16(Runtime):
    name = "torch-bf16"
    description = "PyTorch eager, channels-last, BF16 autocast (AMX/AVX512-BF16 CPUs, GPUs)"

    def open(self, workload: Workload) -> None:
        super().open(workload)
        if workload.device == "cpu" and not cpu_has_bf16_matrix_units():
            raise RuntimeUnavailable("this CPU has no AMX-BF16 or AVX512-BF16 units; BF16 would be slower than FP32")
        if workload.device == "cuda" and not torch.cuda.is_bf16_supported():
            raise RuntimeUnavailable("this GPU does not support BF16")
        self.module = _channels_last(copy.deepcopy(workload.module).to(workload.device))

    def prepare(self, inputs: Inputs) -> Prepared:
        run = torch_runner(self.module, self.workload, inputs, torch.bfloat16)
        return Prepared(run, "bf16-autocast", {"threads": str(self.workload.threads), "memory_format": "channels_last"})
