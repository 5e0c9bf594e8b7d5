"""The FP16 fidelity gate: FP16 ONNX against FP32 PyTorch on the inputs export verifies on.

How FP16 is judged on a CPU. ONNX Runtime's CPU provider has no FP16 kernel for most ops:
it computes them in FP32 and, measured with ORT 1.32, drops the FP16 rounding *between*
consecutive such nodes (a chain of FP16 `Conv`s scaling by 1000 gave 1e6, not inf). Running
the FP16 ONNX on CPU therefore hides both rounding and overflow. The gate runs an
*emulation* of it instead: the same graph with every FP16 tensor computed in FP32 and then
rounded through an explicit `Cast`→FP16→`Cast`→FP32 pair (ORT keeps explicit casts:
measured, 1e6 through that pair is inf), FP16 weights as their exact FP32 values. That is
FP16 storage with FP32 arithmetic inside each op, what TensorRT's FP16 kernels do.

When the gate fails, the layers at risk stay FP32 and the gate runs again: normalisation
statistics (mean/variance chains, instance/layer/group norm) and every node whose output
or input reaches a safety fraction of FP16's range on the calibration inputs, measured by
running the FP32 ONNX with those intermediate tensors exposed.

A layer can also lose precision without coming near overflow (an offset added and taken
away again, a small difference of large values). If the gate still fails, each FP16 node
is ranked by the relative error it adds (the RMS difference between emulation and FP32 on
its output, relative to the output's RMS, minus the same on its inputs), and the worst are
kept in FP32 with the nodes that feed them, 1, 2, 4, … at a time, until the gate passes.

Graphs over 2 GB: every function takes `weights`, the folder of the graph's external data
(fp16_graph.py); the graphs built here stay weightless protos (the emulation casts FP16 weights
stored outside with a `Cast` node instead of rewriting them), and their sessions read the
weights from that folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from skimage.metrics import structural_similarity

from prodgen.errors import ProdgenError
from prodgen.export.fp16_graph import FP16_MAX, Fp16Graph, convert_to_fp16, data_dependent, plan_fp16, value_types
from prodgen.onnx_sessions import external_weights_options, onnx_session
from prodgen.zoo.spec import ZooModel

DEFAULT_MIN_PSNR_DB = 40.0
DEFAULT_INT8_MIN_PSNR_DB = 35.0
"""INT8 rounds every activation to 256 levels per tensor: 35 dB against FP32 PyTorch is a
picture a shopper cannot tell apart (about 4.5 uint8 levels RMS), where FP16 is held to 40."""
DEFAULT_INT8_MIN_SSIM = 0.95
"""INT8 error can gather in structure (banding in flat areas) that PSNR averages away, so the
INT8 gate also asks the least similar picture for this SSIM."""
DEFAULT_RANGE_FRACTION = 0.25
"""A tensor whose FP32 magnitude reaches this fraction of 65504 on the calibration inputs is
at risk: other inputs (brighter photos, other latents) can push it over."""

NORMALISATION_OPS = frozenset({"InstanceNormalization", "LayerNormalization", "GroupNormalization"})
STATISTICS_OPS = frozenset({"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "Pow", "Sqrt", "Reciprocal"})
"""Mean/variance chains written out as ops (AdaIN, pixel norm): the statistic and the
element-wise op applying it (`_STATISTICS_FOLLOWERS`) stay FP32 together."""
_STATISTICS_FOLLOWERS = frozenset({"Sub", "Div", "Mul", "Add"})
_POSTPROCESSING_OPS = frozenset({"Cast", "Clip", "Round", "Transpose", "Reshape", "Identity", "Squeeze", "Unsqueeze"})
_RANGE_CHUNK = 48
MAX_WORST_FRACTION = 0.25
"""The error-ranked fallback keeps at most this share of the FP16 nodes (with their feeders):
a model that needs more in FP32 is not an FP16 model, and the gate says so."""

Cases = Sequence[dict[str, np.ndarray]]


@dataclass(frozen=True)
class Fidelity:
    """FP16 outputs against FP32 PyTorch, over all cases."""

    psnr_db: float
    max_abs_diff: float
    nonfinite: int
    """NaN/Inf values in the float tensors the outputs are quantised from."""
    min_psnr_db: float
    lowest_ssim: float | None
    """SSIM of the least similar picture over all cases; None when the outputs are smaller than its window."""
    min_ssim: float | None = None
    """The lowest SSIM the gate accepts; None: PSNR alone decides."""

    @property
    def gate(self) -> str:
        """The thresholds judged against: `PSNR ≥ 35 dB, SSIM ≥ 0.95`."""
        return f"PSNR ≥ {self.min_psnr_db:g} dB" + (f", SSIM ≥ {self.min_ssim:g}" if self.min_ssim is not None else "")

    @property
    def passed(self) -> bool:
        ssim_ok = self.min_ssim is None or self.lowest_ssim is None or self.lowest_ssim >= self.min_ssim
        return self.nonfinite == 0 and self.psnr_db >= self.min_psnr_db and ssim_ok

    def describe(self) -> str:
        psnr = "inf" if math.isinf(self.psnr_db) else f"{self.psnr_db:.2f}"
        ssim_gate = f" (required ≥ {self.min_ssim:g})" if self.min_ssim is not None else ""
        return (
            f"PSNR {psnr} dB (required ≥ {self.min_psnr_db:g} dB), {describe_ssim(self.lowest_ssim)}{ssim_gate}, "
            f"max |Δ| {self.max_abs_diff:g}, NaN/Inf {self.nonfinite}"
        )


@dataclass(frozen=True)
class Fp16Outcome:
    """The FP16 graph that passed the gate, and how it got there."""

    graph: Fp16Graph
    first: Fidelity
    final: Fidelity
    kept_by_fallback: dict[str, str] = field(default_factory=dict)
    """Node name → why it was kept in FP32 after the first gate failed."""

    @property
    def kept_fp32(self) -> tuple[str, ...]:
        return self.graph.kept_fp32


def emulation_graph(fp16_model: onnx.ModelProto) -> onnx.ModelProto:
    """`fp16_model` with each FP16 tensor computed in FP32 and rounded to FP16 explicitly."""
    model = onnx.ModelProto()
    model.CopyFrom(fp16_model)
    graph = model.graph
    types = {info.name: info.type.tensor_type.elem_type for info in [*graph.value_info, *graph.output]}
    nodes: list[onnx.NodeProto] = []
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT16:
            continue
        if init.data_location == TensorProto.EXTERNAL:  # left where it is: cast to its exact FP32 value in-graph
            stored = f"{init.name}__stored_fp16"
            nodes.append(helper.make_node("Cast", [stored], [init.name], to=TensorProto.FLOAT))
            init.name = stored
        else:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in graph.node:
        nodes.append(node)
        for index, name in enumerate(node.output):
            if types.get(name) != TensorProto.FLOAT16:
                continue
            rounded = f"{name}__emulated_fp16"
            if node.op_type == "Cast":
                node.output[index] = rounded
            else:
                node.output[index] = f"{name}__emulated_fp32"
                nodes.append(helper.make_node("Cast", [node.output[index]], [rounded], to=TensorProto.FLOAT16))
            nodes.append(helper.make_node("Cast", [rounded], [name], to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    return onnx.shape_inference.infer_shapes(model)


def _prequantised(graph: onnx.GraphProto) -> list[str]:
    """For each graph output, the last float tensor before post-processing (Round, Clip,
    Cast to uint8, layout): where a NaN or Inf would still be visible."""
    producers = {name: node for node in graph.node for name in node.output}
    found: list[str] = []
    for output in graph.output:
        name = output.name
        while name in producers and producers[name].op_type in _POSTPROCESSING_OPS and producers[name].input:
            name = producers[name].input[0]
        found.append(name)
    return found


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {info.name for info in exposed.graph.output}
    exposed.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names if name not in present
    )
    return exposed


def _data_range(reference: np.ndarray) -> float:
    """The peak PSNR and SSIM measure against: 255 for uint8 images, the reference's own range for floats."""
    if reference.dtype == np.uint8:
        return 255.0
    ref = reference.astype(np.float64)
    return float(ref.max() - ref.min()) or 1.0


def _psnr(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float]:
    """(squared error sum, peak²) of one output."""
    ref = reference.astype(np.float64)
    got = candidate.astype(np.float64)
    peak = _data_range(reference)
    return float(np.square(ref - got).sum()), peak * peak


SSIM_WINDOW = 11
"""SSIM as Wang et al. (2004) define it: an 11×11 gaussian window (σ = 1.5), K1 = 0.01, K2 = 0.03."""


def lowest_ssim(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """SSIM of the least similar picture in one batched output, through scikit-image.

    uint8 outputs are NHWC images: SSIM per channel over the range 255, averaged over the channels. Float
    outputs (latents, noise predictions: NCHW) count each plane of their last two axes as a picture, over
    the reference's data range as PSNR uses. None when the pictures are smaller than the window.
    """
    if reference.ndim < 2:
        return None
    colour = reference.dtype == np.uint8 and reference.ndim == 4
    spatial = reference.shape[1:3] if colour else reference.shape[-2:]
    if min(spatial) < SSIM_WINDOW:
        return None
    if colour:
        pictures = zip(reference, candidate, strict=True)
    else:
        pictures = zip(reference.reshape(-1, *spatial), candidate.reshape(-1, *spatial), strict=True)
    data_range = _data_range(reference)
    channel_axis = -1 if colour else None
    values = [
        structural_similarity(
            want,
            got,
            data_range=data_range,
            channel_axis=channel_axis,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        for want, got in pictures
    ]
    return float(np.min(values))


def lowest_of(values: Iterable[float | None]) -> float | None:
    """The lowest SSIM over several outputs; a NaN (from a non-finite output) wins, None ones are skipped."""
    known = [value for value in values if value is not None]
    return float(np.min(known)) if known else None


def ssim_text(value: float | None) -> str:
    """Five decimals rounded down, so that 0.9999998 does not print as a perfect 1.00000."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "nan"
    return f"{math.floor(value * 100_000) / 100_000:.5f}"


def describe_ssim(value: float | None) -> str:
    if value is None:
        return f"SSIM n/a (outputs smaller than its {SSIM_WINDOW}×{SSIM_WINDOW} window)"
    return f"lowest SSIM {ssim_text(value)}"


def measure_fidelity(
    fp16_model: onnx.ModelProto,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB,
    weights: Path | None = None,
) -> Fidelity:
    """Run the FP16 emulation on `cases` and compare with `reference` (FP32 PyTorch outputs)."""
    emulated = emulation_graph(fp16_model)
    watched = [name for name in _prequantised(emulated.graph) if name not in {spec.name for spec in model.outputs}]
    session = _session(_with_outputs(emulated, watched), weights)
    output_names = [spec.name for spec in model.outputs]
    return compare_fidelity(
        lambda inputs: session.run(output_names + watched, inputs), len(output_names), cases, reference, min_psnr_db
    )


def compare_fidelity(
    run: Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]],
    output_count: int,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float,
    min_ssim: float | None = None,
) -> Fidelity:
    """PSNR, lowest SSIM, max |Δ| and NaN/Inf of `run` against `reference` (FP32 PyTorch) over `cases`.

    `run` returns the model's outputs first; any tensors after them are only checked for NaN/Inf."""
    squared, count, worst, nonfinite = 0.0, 0, 0.0, 0
    peak_squared = 0.0
    ssims: list[float | None] = []
    for inputs, expected in zip(cases, reference, strict=True):
        results = run(inputs)
        for want, got in zip(expected, results[:output_count], strict=True):
            if want.shape != got.shape:
                raise RuntimeError(f"the candidate gave shape {got.shape}, PyTorch {want.shape}")
            error, peak2 = _psnr(want, got)
            squared += error
            count += want.size
            peak_squared = max(peak_squared, peak2)
            worst = max(worst, float(np.abs(want.astype(np.float64) - got.astype(np.float64)).max()))
            ssims.append(lowest_ssim(want, got))
            if got.dtype.kind == "f":
                nonfinite += int(np.count_nonzero(~np.isfinite(got)))
        nonfinite += sum(int(np.count_nonzero(~np.isfinite(extra))) for extra in results[output_count:])
    return Fidelity(_decibels(squared, count, peak_squared), worst, nonfinite, min_psnr_db, lowest_of(ssims), min_ssim)


def _decibels(squared: float, count: int, peak_squared: float) -> float:
    mse = squared / max(count, 1)
    return math.inf if mse == 0 else 10 * math.log10(peak_squared / mse)


def psnr_db(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray]) -> float:
    """PSNR of `candidate` against `reference` over all their arrays together (peak 255 for uint8 pictures)."""
    squared, count, peak_squared = 0.0, 0, 0.0
    for want, got in zip(reference, candidate, strict=True):
        error, peak2 = _psnr(want, got)
        squared += error
        count += want.size
        peak_squared = max(peak_squared, peak2)
    return _decibels(squared, count, peak_squared)


def _session(model: onnx.ModelProto, weights: Path | None) -> Any:
    return onnx_session(model, external_weights_options(weights) if weights is not None else None)


def _tensor_values(
    models: Sequence[onnx.ModelProto], names: Sequence[str], cases: Cases, weights: Path | None = None
) -> Iterator[tuple[str, list[np.ndarray]]]:
    """(name, its value in each of `models`) for every named tensor and case, exposing at
    most `_RANGE_CHUNK` intermediate tensors per session to bound memory."""
    for start in range(0, len(names), _RANGE_CHUNK):
        chunk = list(names[start : start + _RANGE_CHUNK])
        sessions: list[Any] = [_session(_with_outputs(model, chunk), weights) for model in models]
        for inputs in cases:
            runs = [session.run(chunk, inputs) for session in sessions]
            for index, name in enumerate(chunk):
                yield name, [run[index] for run in runs]


def activation_ranges(
    fp32_model: onnx.ModelProto, names: Sequence[str], cases: Cases, weights: Path | None = None
) -> dict[str, float]:
    """max |x| of each named FP32 tensor over `cases`, from the FP32 graph with them exposed."""
    ranges = dict.fromkeys(names, 0.0)
    for name, (value,) in _tensor_values([fp32_model], names, cases, weights):
        finite = np.abs(value[np.isfinite(value)]) if value.size else value
        ranges[name] = max(ranges[name], float(finite.max()) if finite.size else math.inf)
    return ranges


def layers_at_risk(
    fp32_model: onnx.ModelProto,
    cases: Cases,
    range_fraction: float = DEFAULT_RANGE_FRACTION,
    weights: Path | None = None,
) -> dict[str, str]:
    """Node name → reason, for FP16 candidates that should stay FP32."""
    fp16_names, _ = plan_fp16(fp32_model, weights=weights)
    candidates = set(fp16_names)
    graph = fp32_model.graph
    named = [node for node in graph.node if node.name in candidates]
    risky: dict[str, str] = {}
    statistics_outputs: set[str] = set()
    for node in named:
        if node.op_type in NORMALISATION_OPS | STATISTICS_OPS:
            risky[node.name] = f"normalisation statistics ({node.op_type})"
        if node.op_type in STATISTICS_OPS:
            statistics_outputs.update(node.output)
    for node in named:
        if node.op_type in _STATISTICS_FOLLOWERS and node.name not in risky and statistics_outputs & set(node.input):
            risky[node.name] = f"normalisation statistics ({node.op_type} of a statistic)"
    types = value_types(fp32_model)
    tensors = [name for node in named for name in node.output if types.get(name) == TensorProto.FLOAT]
    limit = range_fraction * FP16_MAX
    ranges = activation_ranges(fp32_model, tensors, cases, weights)
    large = {name for name, value in ranges.items() if value >= limit}
    for node in named:
        hot = [name for name in [*node.output, *node.input] if name in large]
        if hot and node.name not in risky:
            risky[node.name] = f"|x| up to {max(ranges[name] for name in hot):.4g} (≥ {range_fraction:g} × 65504)"
    return risky


def precision_losses(
    fp32_model: onnx.ModelProto,
    fp16_model: onnx.ModelProto,
    names: Sequence[str],
    cases: Cases,
    weights: Path | None = None,
) -> dict[str, float]:
    """Each named tensor's RMS difference between the FP16 emulation and the FP32 graph,
    relative to its FP32 RMS, over `cases` (inf where the emulation is not finite)."""
    return relative_errors(fp32_model, emulation_graph(fp16_model), names, cases, weights)


def relative_errors(
    fp32_model: onnx.ModelProto,
    candidate: onnx.ModelProto,
    names: Sequence[str],
    cases: Cases,
    weights: Path | None = None,
) -> dict[str, float]:
    """Each named tensor's RMS difference between `candidate` and the FP32 graph, relative to
    its FP32 RMS, over `cases` (inf where the candidate is not finite)."""
    squared_error = dict.fromkeys(names, 0.0)
    squared_value = dict.fromkeys(names, 0.0)
    for name, (want, got) in _tensor_values([fp32_model, candidate], names, cases, weights):
        difference = got.astype(np.float64) - want.astype(np.float64)
        squared_error[name] += float(np.square(difference).sum()) if np.isfinite(difference).all() else math.inf
        squared_value[name] += float(np.square(want.astype(np.float64)).sum())
    return {name: math.sqrt(squared_error[name] / max(squared_value[name], 1e-30)) for name in names}


def layers_losing_precision(fp32_model: onnx.ModelProto, fp16: Fp16Graph, cases: Cases) -> list[tuple[str, float]]:
    """(node name, relative error it adds) for the FP16 nodes of `fp16`, worst first (weights: `fp16.weights`)."""
    types = value_types(fp32_model)
    computed = data_dependent(fp32_model.graph) - {info.name for info in fp32_model.graph.input}

    def floats(names: Sequence[str]) -> list[str]:
        """The computed float tensors among `names`: not weights, not graph inputs."""
        return [n for n in names if n in computed and types.get(n) == TensorProto.FLOAT]

    nodes = {node.name: node for node in fp32_model.graph.node}
    fp16_nodes = [nodes[name] for name in fp16.fp16_nodes if name in nodes]
    watched = sorted({n for node in fp16_nodes for n in floats([*node.output, *node.input])})
    losses = precision_losses(fp32_model, fp16.model, watched, cases, fp16.weights)
    added = []
    for node in fp16_nodes:
        outputs, inputs = floats(node.output), floats(node.input)
        if not outputs:
            continue
        out_error = max(losses[n] for n in outputs)
        in_error = max((losses[n] for n in inputs), default=0.0)
        if out_error > in_error:
            added.append((node.name, out_error - in_error))
    return sorted(added, key=lambda item: item[1], reverse=True)


def _keep_worst(
    fp32_model: onnx.ModelProto,
    ranked: Sequence[tuple[str, float]],
    count: int,
    fp16_nodes: set[str],
    kept: dict[str, str],
) -> dict[str, str]:
    """`kept` plus the `count` worst nodes of `ranked` and the FP16 nodes feeding them: an FP32
    layer fed by an already rounded tensor would keep the loss."""
    producers = {out: node.name for node in fp32_model.graph.node for out in node.output}
    nodes = {node.name: node for node in fp32_model.graph.node}
    keep = dict(kept)
    for name, loss in ranked[:count]:
        keep.setdefault(name, f"adds {loss:.3g} relative RMS error in FP16")
        for tensor in nodes[name].input:
            producer = producers.get(tensor)
            if producer in fp16_nodes:
                keep.setdefault(producer, f"feeds {name}")
    return keep


def fp16_with_fallback(
    fp32_model: onnx.ModelProto,
    model: ZooModel,
    cases: Cases,
    reference: Sequence[Sequence[np.ndarray]],
    min_psnr_db: float = DEFAULT_MIN_PSNR_DB,
    served_name: str | None = None,
    weights: Path | None = None,
) -> Fp16Outcome:
    """FP16 graph that passes the gate, keeping layers at risk in FP32 if the first try fails
    and, if that is not enough, the layers that add the most FP16 error. `weights`: the folder of
    `fp32_model`'s external data, for graphs over 2 GB loaded without it (fp16_graph.py).

    Raises `ProdgenError` when even the fallback graph fails the gate.
    """
    graph = convert_to_fp16(fp32_model, weights=weights)
    first = measure_fidelity(graph.model, model, cases, reference, min_psnr_db, weights)
    if first.passed:
        return Fp16Outcome(graph, first, first)
    risky = layers_at_risk(fp32_model, cases, weights=weights)
    fallback = convert_to_fp16(fp32_model, keep_node_names=risky, weights=weights)
    final = measure_fidelity(fallback.model, model, cases, reference, min_psnr_db, weights)
    if not final.passed:
        ranked = layers_losing_precision(fp32_model, fallback, cases)
        fp16_nodes = set(fallback.fp16_nodes)
        most = min(len(ranked), max(1, int(MAX_WORST_FRACTION * len(fp16_nodes))))
        for count in sorted({min(2**power, most) for power in range(most.bit_length() + 1)} - {0}):
            risky = _keep_worst(fp32_model, ranked, count, fp16_nodes, risky)
            fallback = convert_to_fp16(fp32_model, keep_node_names=risky, weights=weights)
            final = measure_fidelity(fallback.model, model, cases, reference, min_psnr_db, weights)
            if final.passed:
                break
    if not final.passed:
        raise ProdgenError(
            f"{served_name or model.name}: FP16 fidelity gate failed: {final.describe()} even with "
            f"{len(risky)} layers kept in FP32 (first try: {first.describe()}); nothing was published"
        )
    return Fp16Outcome(fallback, first, final, risky)
