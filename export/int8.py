"""`--int8`: static INT8 quantisation of the verified FP32 ONNX, gated like FP16.

The graph is quantised with ONNX Runtime's `quantize_static` in QDQ form: each quantised
layer reads its activation and weights through explicit QuantizeLinear/DequantizeLinear
pairs (activations uint8 per tensor, weights int8 per output channel), the explicit
quantisation form TensorRT builds INT8 engines from and ONNX Runtime's CPU provider fuses
into integer kernels (VNNI's u8×s8 dot products where the CPU has them). Only the
multiply-accumulate layers (`QUANTISED_OPS`) are quantised: they are where the time goes,
and a QDQ pair around an element-wise op costs more than the op saves. ConvTranspose is left
in FP32 in the graph ONNX Runtime serves: its 1.32 CPU provider ran a QDQ ConvTranspose slower
than the FP32 one (measured here: DCGAN 0.58× at batch 1 and 4; pix2pix-unet128 0.67× with its
ConvTransposes quantised, 1.18× with its Convs alone). OpenVINO's CPU plugin runs them as int8
deconvolutions, so the graph converted for `<name>_int8_openvino` quantises ConvTranspose too
(`OPENVINO_QUANTISED_OPS`; measured here against FP32 ONNX Runtime at batch 1 / 4: pix2pix-unet256
3.02× / 3.68× against 1.25× / 1.39× with its Convs alone, DCGAN 1.58× / 2.47×).

Calibration (the activation ranges) runs on real photographs for image models and on seeded
latents for generators, drawn with seeds the verification cases do not use. The gate then
compares the INT8 graph, run by ONNX Runtime exactly as it will be served, with FP32 PyTorch
on the verification inputs: PSNR and the lowest SSIM (`DEFAULT_INT8_MIN_PSNR_DB`,
`DEFAULT_INT8_MIN_SSIM`). When it fails, each quantised layer is ranked by the relative error
it adds (RMS difference between the INT8 and FP32 graphs on its output, relative to the
output's RMS, minus the same on its input), and the worst are kept in FP32, 1, 2, 4, … at a
time, until the gate passes or half the layers would be kept (then it is not an INT8 model).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from prodgen.errors import ProdgenError
from prodgen.export.fidelity import (
    DEFAULT_INT8_MIN_PSNR_DB,
    DEFAULT_INT8_MIN_SSIM,
    Cases,
    Fidelity,
    compare_fidelity,
    relative_errors,
)
from prodgen.onnx_sessions import onnx_session
from prodgen.zoo.samples import sample_inputs
from prodgen.zoo.spec import ZooModel

QUANTISED_OPS = ("Conv", "MatMul", "Gemm")
OPENVINO_QUANTISED_OPS = (*QUANTISED_OPS, "ConvTranspose")
CALIBRATION_SEEDS = tuple(range(1000, 1008))
"""Eight single-item batches, seeds far from the verification cases' 0..100."""
MAX_KEPT_FRACTION = 0.5


@dataclass(frozen=True)
class Int8Outcome:
    """The INT8 graph that passed the gate, and how it got there."""

    path: Path
    first: Fidelity
    final: Fidelity
    quantised_layers: int
    """Layers running in INT8 in the published graph."""
    kept_fp32: dict[str, str] = field(default_factory=dict)
    """Layer name → why it stays FP32."""
    quantised_ops: tuple[str, ...] = QUANTISED_OPS
    """The kinds of layer quantised (the rest of the graph stays FP32)."""

    def describe_layers(self) -> str:
        kept = ", ".join(f"{layer} ({why})" for layer, why in self.kept_fp32.items()) or "none"
        return f"{self.quantised_layers} {'/'.join(self.quantised_ops)} layers in INT8; kept in FP32: {kept}"


def calibration_inputs(model: ZooModel, side: int | None = None) -> list[dict[str, np.ndarray]]:
    """Photographs (image models) or seeded latents (generators), one item per batch, at `side` or the tuned side."""
    return [sample_inputs(model, 1, side, side, seed=seed) for seed in CALIBRATION_SEEDS]


class _Calibration:
    """onnxruntime.quantization's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # the protocol's optional method; one pass is all quantize_static makes
        pass


def quantisable_layers(fp32_model: onnx.ModelProto, ops: Sequence[str] = QUANTISED_OPS) -> list[str]:
    return [node.name for node in fp32_model.graph.node if node.op_type in ops]


def quantise(
    fp32_path: Path,
    out_path: Path,
    calibration: Sequence[dict[str, np.ndarray]],
    keep: Sequence[str],
    ops: Sequence[str] = QUANTISED_OPS,
) -> None:
    """QDQ INT8 of the `ops` layers of `fp32_path` at `out_path`, with the layers named in `keep` left in FP32."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quiet = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)  # per-channel axis notes for 1-D weights of layers not quantised
    try:
        quantize_static(
            str(fp32_path),
            str(out_path),
            _Calibration(calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=list(ops),
            nodes_to_exclude=list(keep),
        )
    finally:
        logging.getLogger().setLevel(quiet)


def measure_int8(
    int8_path: Path,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float = DEFAULT_INT8_MIN_PSNR_DB,
    min_ssim: float = DEFAULT_INT8_MIN_SSIM,
) -> Fidelity:
    """The INT8 graph, run by ONNX Runtime's CPU kernels as served, against FP32 PyTorch."""
    session = onnx_session(int8_path)
    names = [spec.name for spec in model.outputs]
    return compare_fidelity(
        lambda inputs: session.run(names, inputs), len(names), cases, reference, min_psnr_db, min_ssim
    )


def layers_adding_error(
    fp32_model: onnx.ModelProto, int8_model: onnx.ModelProto, layers: Sequence[str], cases: Cases
) -> list[tuple[str, float]]:
    """(layer, relative RMS error it adds in INT8) for the quantised `layers`, worst first."""
    nodes = {node.name: node for node in fp32_model.graph.node if node.name in set(layers)}
    graph_inputs = {info.name for info in fp32_model.graph.input}
    initializers = {init.name for init in fp32_model.graph.initializer}
    activations = {name: node.input[0] for name, node in nodes.items()}
    watched = sorted(
        {node.output[0] for node in nodes.values()}
        | {tensor for tensor in activations.values() if tensor not in graph_inputs | initializers}
    )
    errors = relative_errors(fp32_model, int8_model, watched, cases)
    added = [(name, errors[node.output[0]] - errors.get(activations[name], 0.0)) for name, node in nodes.items()]
    return sorted(added, key=lambda item: item[1], reverse=True)


def int8_with_fallback(
    fp32_path: Path,
    work: Path,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float = DEFAULT_INT8_MIN_PSNR_DB,
    min_ssim: float = DEFAULT_INT8_MIN_SSIM,
    served_name: str | None = None,
    calibration_side: int | None = None,
    ops: Sequence[str] = QUANTISED_OPS,
) -> Int8Outcome:
    """An INT8 graph of the `ops` layers inside the gate, keeping the layers that add the most error
    in FP32 if needed; written to `work`/model_int8.onnx.

    Raises `ProdgenError` when even half the layers kept in FP32 does not bring it inside the gate."""
    fp32_model = onnx.load(str(fp32_path))
    layers = quantisable_layers(fp32_model, ops)
    if not layers:
        raise ProdgenError(f"{served_name or model.name}: no {'/'.join(ops)} layers to quantise to INT8")
    calibration = calibration_inputs(model, calibration_side)
    work.mkdir(parents=True, exist_ok=True)
    path = work / "model_int8.onnx"
    quantise(fp32_path, path, calibration, [], ops)
    first = measure_int8(path, model, cases, reference, min_psnr_db, min_ssim)
    final, kept = first, {}
    if not first.passed:
        ranked = layers_adding_error(fp32_model, onnx.load(str(path)), layers, cases)
        most = max(1, int(MAX_KEPT_FRACTION * len(layers)))
        for count in sorted({min(2**power, most) for power in range(most.bit_length() + 1)}):
            kept = {name: f"adds {loss:.3g} relative RMS error in INT8" for name, loss in ranked[:count]}
            quantise(fp32_path, path, calibration, list(kept), ops)
            final = measure_int8(path, model, cases, reference, min_psnr_db, min_ssim)
            if final.passed:
                break
    if not final.passed:
        raise ProdgenError(
            f"{served_name or model.name}: INT8 fidelity gate failed: {final.describe()} even with "
            f"{len(kept)} of {len(layers)} layers kept in FP32 (first try: {first.describe()}); no INT8 model was published"
        )
    return Int8Outcome(path, first, final, len(layers) - len(kept), kept, tuple(ops))


def openvino_int8(
    fp32_path: Path,
    work: Path,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    onnx_runtime_int8: Int8Outcome | None,
    min_psnr_db: float = DEFAULT_INT8_MIN_PSNR_DB,
    min_ssim: float = DEFAULT_INT8_MIN_SSIM,
    served_name: str | None = None,
    calibration_side: int | None = None,
) -> Int8Outcome:
    """The INT8 QDQ graph to convert for OpenVINO: quantised again with `OPENVINO_QUANTISED_OPS` where
    the model has layers only OpenVINO runs faster in INT8 (ConvTranspose), through the same gate and
    fallback; otherwise the ONNX Runtime graph `onnx_runtime_int8` itself.

    Raises `ProdgenError` when no graph is inside the gate."""
    fp32_model = onnx.load(str(fp32_path))
    if set(quantisable_layers(fp32_model, OPENVINO_QUANTISED_OPS)) == set(quantisable_layers(fp32_model)):
        if onnx_runtime_int8 is None:
            raise ProdgenError(
                f"{served_name or model.name}: OpenVINO would quantise the same layers as the INT8 graph for "
                "ONNX Runtime, which was refused"
            )
        return onnx_runtime_int8
    return int8_with_fallback(
        fp32_path, work / "openvino", model, cases, reference, min_psnr_db, min_ssim, served_name, calibration_side,
        OPENVINO_QUANTISED_OPS,
    )  # fmt: skip
