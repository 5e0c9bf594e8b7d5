"""`prodgen-bench runtimes`: each zoo model through the CPU runtimes prodgen can publish, in one run.

Per model: FP32 ONNX Runtime (what `<name>` serves), OpenVINO (`<name>_openvino`), INT8 QDQ
on ONNX Runtime (`<name>_int8`) and on OpenVINO (`<name>_int8_openvino`), each checked against FP32
PyTorch (PSNR, lowest SSIM) and timed in turns at batch 1 and 4, with what `prodgen-export`
would decide: publish a variant only inside its gate and faster than FP32 ONNX Runtime at
both batch sizes. Image models run at the committed baseline's sides (`baseline_side`) so the
whole zoo fits in about twenty minutes on two cores; the INT8 graph is calibrated and the
fidelity measured at that side too. Whether INT8 can be fast is decided by the CPU's integer
dot-product instructions, which the report lists (`INT8_FLAGS`).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prodgen.bench.baseline import baseline_side
from prodgen.bench.direct import DirectSettings
from prodgen.bench.events import Observer
from prodgen.errors import ProdgenError
from prodgen.export.cpu_race import served_session
from prodgen.export.fidelity import DEFAULT_MIN_PSNR_DB, Fidelity, compare_fidelity
from prodgen.export.int8 import Int8Outcome, int8_with_fallback, openvino_int8
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch
from prodgen.model_repository.publish import OPENVINO_FILE
from prodgen.openvino_runtime import inference_precision, openvino_available, openvino_runner, save_ir
from prodgen.turns import time_turns
from prodgen.zoo.loading import serving_module
from prodgen.zoo.samples import sample_inputs, verification_cases
from prodgen.zoo.spec import ZooModel

INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")
"""x86 features that decide how fast INT8 (VNNI/AMX dot products) and bf16 can run."""
DEMO_WEIGHTS = {
    "fast-neural-style": "catalogue-look.safetensors",
    "srvgg-x2-small": "srvgg-x2-demo.safetensors",
    "catalogue-dcgan": "catalogue-dcgan.safetensors",
    "u2netp-demo": "cutout.safetensors",
}
"""Zoo models with weights the project trained (demo/weights): real pictures to compare; the rest run
seeded random weights, whose flat pictures make fidelity figures optimistic."""
TARGET_SPEEDUP = 1.5
TARGET_PSNR_DB = 35.0
TARGET_TASKS = ("stylize", "upscale")
"""The target: ≥ 1.5× FP32 ONNX Runtime at ≥ 35 dB on the conv-heavy upscalers and style networks."""
RUNTIMES_SETTINGS = DirectSettings(warmup=1, min_runs=3, min_seconds=1.5, max_runs=200, max_seconds=8.0)
BATCHES = (1, 4)

Run = Callable[[dict[str, np.ndarray]], Sequence[np.ndarray]]


@dataclass
class RuntimeRow:
    runtime: str
    precision: str
    psnr_db: float | None = None
    lowest_ssim: float | None = None
    gate: str = ""
    inside_gate: bool | None = None
    images_per_s: dict[int, float] = field(default_factory=dict)
    speedup: dict[int, float] = field(default_factory=dict)
    """Images/s over FP32 ONNX Runtime's at the same batch size, timed in the same turns."""
    published: bool | None = None
    """What prodgen-export decides for this variant (None for the FP32 baseline)."""
    note: str = ""


@dataclass
class ModelRow:
    model: str
    task: str
    side: int | None
    weights: str
    runtimes: list[RuntimeRow]
    int8_layers: int | None = None
    int8_kept_fp32: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class RuntimesReport:
    command: str
    machine: dict[str, object]
    cpu_flags: dict[str, bool]
    openvino_precision: str | None
    models: list[ModelRow]
    notes: list[str] = field(default_factory=list)


def cpu_flags() -> dict[str, bool]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return {flag: flag in flags for flag in INT8_FLAGS}


def _fidelity_row(row: RuntimeRow, fidelity: Fidelity, gate: str | None = None) -> None:
    """`gate`: what the row's gate column says, if not the thresholds `fidelity` was judged against."""
    row.psnr_db = fidelity.psnr_db
    row.lowest_ssim = fidelity.lowest_ssim
    row.inside_gate = fidelity.passed
    row.gate = fidelity.gate if gate is None else gate


def _cases(model: ZooModel, side: int | None) -> list[dict[str, np.ndarray]]:
    """Four photographs at the side for image models; the export's seeded latents for generators."""
    if side is None:
        return verification_cases(model)
    return [sample_inputs(model, 2, side, side, seed=0), sample_inputs(model, 2, side, side, seed=2)]


def measure_model(
    model: ZooModel, weights_dir: Path | None, observer: Observer, settings: DirectSettings = RUNTIMES_SETTINGS
) -> ModelRow:
    start = time.perf_counter()
    side = baseline_side(model)
    weights_file = DEMO_WEIGHTS.get(model.name)
    checkpoint = weights_dir / weights_file if weights_dir is not None and weights_file else None
    if checkpoint is not None and not checkpoint.is_file():
        checkpoint = None
    graph = serving_module(model, checkpoint, 0)
    names = [spec.name for spec in model.outputs]
    cases = _cases(model, side)
    reference = [run_pytorch(graph, model, inputs) for inputs in cases]
    fp32 = RuntimeRow("onnxruntime", "fp32", note="what <name> serves")
    result = ModelRow(model.name, model.task, side, str(checkpoint) if checkpoint else "seeded random", [fp32])
    runs: dict[str, Run] = {}
    with tempfile.TemporaryDirectory(prefix="prodgen-runtimes-") as folder:
        work = Path(folder)
        onnx_path = work / "model.onnx"
        observer.phase(f"{model.name}: exporting ONNX")
        export_onnx(graph, model, cases[0], onnx_path)
        session = served_session(onnx_path)
        runs["onnxruntime"] = lambda feed: session.run(names, feed)
        _fidelity_row(fp32, compare_fidelity(runs["onnxruntime"], len(names), cases, reference, 0.0), "-")
        if openvino_available():
            observer.phase(f"{model.name}: OpenVINO IR")
            row = RuntimeRow("openvino", inference_precision(), note="<name>_openvino")
            save_ir(onnx_path, work / OPENVINO_FILE)
            runs["openvino"] = openvino_runner(work / OPENVINO_FILE, names)
            fidelity = compare_fidelity(runs["openvino"], len(names), cases, reference, DEFAULT_MIN_PSNR_DB)
            _fidelity_row(row, fidelity)
            result.runtimes.append(row)
        observer.phase(f"{model.name}: INT8 quantisation and its gate")
        int8 = RuntimeRow("onnxruntime-int8", "int8 (QDQ)", note="<name>_int8")
        result.runtimes.append(int8)
        try:
            outcome = int8_with_fallback(onnx_path, work, model, cases, reference, calibration_side=side)
        except ProdgenError as refusal:
            int8.note = str(refusal).split(": ", 1)[-1]
            int8.inside_gate = False
            int8.published = False
            outcome = None
        if outcome is not None:
            _fidelity_row(int8, outcome.final)
            result.int8_layers, result.int8_kept_fp32 = outcome.quantised_layers, outcome.kept_fp32
            int8_session = served_session(outcome.path)
            runs["onnxruntime-int8"] = lambda feed: int8_session.run(names, feed)
        if openvino_available():
            runs_openvino_int8 = _openvino_int8(onnx_path, work, model, cases, reference, outcome, side, result)
            if runs_openvino_int8 is not None:
                runs["openvino-int8"] = runs_openvino_int8
        _time(model, side, runs, result, observer, settings)
    for row in result.runtimes:
        if row.runtime != "onnxruntime" and row.published is None:
            faster = bool(row.speedup) and all(value > 1.0 for value in row.speedup.values())
            row.published = bool(row.inside_gate) and faster
    result.seconds = time.perf_counter() - start
    return result


def _openvino_int8(
    onnx_path: Path,
    work: Path,
    model: ZooModel,
    cases: list[dict[str, np.ndarray]],
    reference: list[list[np.ndarray]],
    onnx_runtime_int8: Int8Outcome | None,
    side: int | None,
    result: ModelRow,
) -> Run | None:
    """The row of `<name>_int8_openvino`: the INT8 graph export would convert for OpenVINO, through its gate."""
    row = RuntimeRow("openvino-int8", "int8 (QDQ)", note="<name>_int8_openvino (a QDQ graph as IR)")
    result.runtimes.append(row)
    try:
        graph = openvino_int8(onnx_path, work / "int8-openvino", model, cases, reference, onnx_runtime_int8,
                              calibration_side=side)  # fmt: skip
    except ProdgenError as refusal:
        row.note, row.inside_gate, row.published = str(refusal).split(": ", 1)[-1], False, False
        return None
    if graph is not onnx_runtime_int8:
        row.note = f"<name>_int8_openvino ({graph.describe_layers()})"
    try:
        run = openvino_runner(graph.path, [spec.name for spec in model.outputs])
        fidelity = compare_fidelity(
            run, len(model.outputs), cases, reference, graph.final.min_psnr_db, graph.final.min_ssim
        )
    except Exception as error:  # noqa: BLE001 - a runtime that cannot run the graph is a finding, not the end of the run
        row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"
        return None
    _fidelity_row(row, fidelity)
    return run


def _time(
    model: ZooModel,
    side: int | None,
    runs: dict[str, Run],
    result: ModelRow,
    observer: Observer,
    settings: DirectSettings,
) -> None:
    rows = {row.runtime: row for row in result.runtimes}
    order = list(runs)
    for batch in BATCHES:
        feed = sample_inputs(model, batch, side, side)
        observer.phase(f"{model.name} · batch {batch} · {', '.join(order)} in turns")
        for name in order:
            runs[name](feed)
        series = time_turns([_bound(runs[name], feed) for name in order], settings.turn_limits, observer.progress)
        for name, latencies in zip(order, series, strict=True):
            rows[name].images_per_s[batch] = batch / (float(np.median(latencies)) / 1000)
        for name in order:
            rows[name].speedup[batch] = rows[name].images_per_s[batch] / rows["onnxruntime"].images_per_s[batch]


def _bound(run: Run, feed: dict[str, np.ndarray]) -> Callable[[], object]:
    return lambda: run(feed)


def best_variant(model: ModelRow) -> RuntimeRow | None:
    """The fastest runtime at batch 1 and 4 together (geometric mean of the speedups) with PSNR ≥ the target."""
    candidates = [
        row
        for row in model.runtimes
        if row.runtime != "onnxruntime" and row.speedup and (row.psnr_db or 0.0) >= TARGET_PSNR_DB
    ]
    return max(candidates, key=lambda row: math.prod(row.speedup.values()) ** (1 / len(row.speedup)), default=None)


def _number(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def _ssim(value: float | None) -> str:
    return "n/a" if value is None else f"{math.floor(value * 100_000) / 100_000:.5f}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def target_lines(report: RuntimesReport) -> list[str]:
    lines = [
        "| model | best runtime at PSNR ≥ 35 dB | PSNR dB | × FP32 ORT b1 | × FP32 ORT b4 | ≥ 1.5× at both |",
        "|---|---|---|---|---|---|",
    ]
    for model in report.models:
        if model.task not in TARGET_TASKS:
            continue
        best = best_variant(model)
        if best is None:
            lines.append(f"| {model.model} | none | - | - | - | missed |")
            continue
        met = all(value >= TARGET_SPEEDUP for value in best.speedup.values())
        lines.append(
            f"| {model.model} | {best.runtime} ({best.precision}) | {_number(best.psnr_db)} | "
            f"{best.speedup.get(1, 0):.2f}× | {best.speedup.get(4, 0):.2f}× | {'met' if met else 'missed'} |"
        )
    return lines


def markdown(report: RuntimesReport) -> str:
    machine = report.machine
    flags = ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in report.cpu_flags.items())
    versions = ", ".join(f"{k} {v}" for k, v in dict(machine.get("versions", {})).items())  # type: ignore[call-overload]
    out = [
        "# CPU runtimes over the zoo: FP32 ONNX Runtime, OpenVINO, INT8",
        "",
        f"`{report.command}`",
        "",
        f"- CPU: {machine.get('cpu')}; {flags}",
        f"- OpenVINO's CPU plugin runs FP32 models in: {report.openvino_precision or 'not installed'}",
        f"- Versions: {versions}",
        f"- Load average at the start (1, 5, 15 min): {machine.get('load_average_at_start')}",
        "- Weights: demo = trained by the project (demo/weights); random = seeded random weights, whose flat "
        "pictures make PSNR/SSIM optimistic (inf where the output is constant)",
        *[f"- {note}" for note in report.notes],
        "",
        "Images/s are medians of runs taken in turns (all runtimes of a model, one run each, again and again); "
        "× is images/s over FP32 ONNX Runtime's at the same batch size in the same turns. PSNR and lowest SSIM "
        "against FP32 PyTorch on photographs (latents for generators) at the side shown. Published: what "
        "`prodgen-export --int8 --openvino` decides (inside the gate and faster than FP32 ONNX Runtime at batch 1 and 4).",
        "",
        "| model | side | weights | runtime | precision | PSNR dB | lowest SSIM | img/s b1 | img/s b4 | × b1 | × b4 | gate | inside | published | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in report.models:
        weights = "demo" if model.weights != "seeded random" else "random"
        for row in model.runtimes:
            out.append(
                f"| {model.model} | {model.side or '-'} | {weights} | {row.runtime} | {row.precision} | "
                f"{_number(row.psnr_db)} | {_ssim(row.lowest_ssim)} | {_number(row.images_per_s.get(1), 1)} | "
                f"{_number(row.images_per_s.get(4), 1)} | {_number(row.speedup.get(1))} | {_number(row.speedup.get(4))} | "
                f"{row.gate} | {_yes(row.inside_gate)} | {_yes(row.published)} | {row.note} |"
            )
    out += ["", "## Target: ≥ 1.5× FP32 ONNX Runtime at PSNR ≥ 35 dB (upscalers and style networks)", ""]
    out += target_lines(report)
    out += ["", "## INT8 layers", ""]
    for model in report.models:
        kept = ", ".join(f"{name} ({why})" for name, why in model.int8_kept_fp32.items()) or "none"
        summary = (
            "no INT8 model (see the table)"
            if model.int8_layers is None
            else f"{model.int8_layers} layers in INT8; kept in FP32: {kept}"
        )
        out.append(f"- {model.model}: {summary} ({model.seconds:.0f} s for this model)")
    return "\n".join(out) + "\n"
