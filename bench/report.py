"""The report folder: report.json (every figure and every sample), report.md, PNG plots.

JSON carries every latency sample of every measurement (ms, to 6 decimals), so
any figure in the Markdown can be recomputed or re-plotted from it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prodgen.bench.ceiling import Ceiling
from prodgen.bench.direct import DirectResult
from prodgen.bench.overhead import PairedOverhead
from prodgen.bench.served import ServedResult
from prodgen.bench.stats import summarize
from prodgen.bench.tables import DIRECT_COLUMNS, REPORT_DIRECT, REPORT_SERVED, SERVED_COLUMNS, cells
from prodgen.bench.targets import TargetCheck, evaluate
from prodgen.bench.transfer import TransferComparison

if TYPE_CHECKING:  # the peers need their optional extra; a report without them never imports it
    from prodgen.bench.peers.compare import PeersResult

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class BenchReport:
    command: str
    machine: dict[str, object]
    ceilings: list[Ceiling] = field(default_factory=list)
    direct: list[DirectResult] = field(default_factory=list)
    served: list[ServedResult] = field(default_factory=list)
    transfer: list[TransferComparison] = field(default_factory=list)
    peers: list[PeersResult] = field(default_factory=list)
    """prodgen served against the peers a shop would build instead (`prodgen-bench peers`)."""
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    check_targets: bool = False
    """Judge the figures against the acceptance targets (`prodgen.bench.targets`); off unless asked for."""
    created: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def targets(self) -> list[TargetCheck]:
        return evaluate(self.direct, self.served) if self.check_targets else []


def command_line() -> str:
    return " ".join(["prodgen-bench", *sys.argv[1:]])


def jsonable(value: Any) -> Any:
    """Dataclasses, paths and non-finite floats as plain JSON (inf and nan become null)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value


def report_dict(report: BenchReport) -> dict[str, Any]:
    data = jsonable(report)
    if report.check_targets:
        data["targets"] = [{**jsonable(check), "verdict": check.verdict} for check in report.targets]
    data["schema"] = "prodgen-bench/1"
    return data


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _machine_lines(report: BenchReport) -> list[str]:
    m = report.machine
    versions = m.get("versions", {})
    lines = [
        f"- CPU: {m.get('cpu')} — {m.get('physical_cores')} physical cores, {m.get('logical_cpus')} logical; {m.get('memory_gib')} GiB",
        f"- GPU: {m.get('gpu') or 'none'}; OS: {m.get('os')}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else "",
        f"- Load average at start: {m.get('load_average_at_start')}",
    ]
    for ceiling in report.ceilings:
        lines.append(
            f"- GEMM ceiling ({ceiling.when}): {ceiling.device} {ceiling.dtype} {ceiling.side}² through {ceiling.library} — best {ceiling.best_gflops:.0f} GFLOP/s, "
            f"median {ceiling.median_gflops:.0f} over {ceiling.repeats} products"
        )
    return lines + [""]


def _direct_section(result: DirectResult) -> list[str]:
    lines = [f"### {result.model} — direct", ""]
    lines.append(
        f"Weights: {result.weights}. ONNX: {result.onnx_source}. Device {result.device}, {result.threads} threads; "
        f"timed runs per runtime: ≥ {result.settings.min_runs} and ≥ {result.settings.min_seconds:g} s (≤ {result.settings.max_seconds:g} s), "
        f"after a first run and {result.settings.warmup} warm-up, the runtimes taking turns. Agreement: share of output values within one uint8 level of "
        f"{result.reference_runtime}'s output on the same photos."
    )
    lines.append("")
    lines += _table(REPORT_DIRECT, [cells(DIRECT_COLUMNS, REPORT_DIRECT, m) for m in result.measurements])
    for label, count in result.flops.items():
        ops = ", ".join(f"{op} {flops / 1e9:.3f}" for op, flops in list(count.by_op.items())[:6])
        lines.append(
            f"- FLOPs per image at {label}: {count.dense / 1e9:.3f} GFLOP dense (Conv/ConvTranspose/Gemm/MatMul), "
            f"{count.elementwise / 1e9:.3f} GFLOP elementwise; by op: {ops} (shapes from {count.shapes_from})"
        )
    for m in result.measurements:
        if m.settings.get("trials_ms"):
            lines.append(
                f"- {m.runtime} batch {m.batch} {m.shape_label}: chose {m.settings.get('memory_format')}, "
                f"compile {m.settings.get('compile')}; trials (ms): {m.settings['trials_ms']}"
            )
    for skipped in result.skipped:
        lines.append(f"- {skipped.runtime} skipped: {skipped.reason}")
    return lines + [""]


def _served_section(result: ServedResult) -> list[str]:
    s = result.settings
    lines = [f"### {result.model} — served at {result.url}", ""]
    lines.append(
        f"Triton {result.server_version}, max_batch_size {result.max_batch_size}. Payload: {result.payload}. "
        f"Windows ≥ {s.window_s:g} s and ≥ {s.min_window_requests} requests after {s.warmup_s:g} s warm-up; stable when the last "
        f"{s.stable_windows} agree within ±{100 * s.stability:.0f} % on throughput and p50 (at most {s.max_windows} windows). "
        "Latency columns are client-measured; server, queue, infer and in+out are Triton's own statistics per request over the "
        "same windows; client+network is the client mean minus the server's."
    )
    lines.append("")
    lines += _table(REPORT_SERVED, [cells(SERVED_COLUMNS, REPORT_SERVED, level) for level in result.levels])
    if result.reference is not None:
        for point in result.reference.points:
            lines.append(
                f"- Direct ONNX Runtime on the same ONNX and payload, batch {point.batch}: {point.images_per_s:.1f} images/s, "
                f"p50 {point.latency.p50_ms:.2f} ms, p99 {point.latency.p99_ms:.2f} ms ({result.reference.threads} threads)"
            )
    if result.overhead is not None:
        lines.append(_overhead_line(result.overhead))
    for level in result.levels:
        for message, count in level.error_messages.items():
            lines.append(f"- {level.label}: {count}× {message}")
        if level.late_fraction:
            lines.append(
                f"- {level.label}: {100 * level.late_fraction:.0f} % of requests left > 10 ms behind schedule (client-bound)"
            )
    return lines + [""]


def _overhead_line(overhead: PairedOverhead) -> str:
    line = (
        f"- Interleaved pairs (one served request and one direct ONNX Runtime call, rotating in turn with an empty "
        f"call to the server), {overhead.pairs} pairs: "
        f"served p50 {overhead.served.p50_ms:.2f} ms, direct p50 {overhead.direct.p50_ms:.2f} ms, "
        f"added p50 {overhead.added_p50.text(' ms', signed=True)}, p90 {overhead.added_p90.text(' ms', signed=True)} "
        "(bootstrap over the pairs' differences)"
    )
    if overhead.empty_call is not None and overhead.beyond_empty_call_p50 is not None:
        line += (
            f"; an empty gRPC call to the same server (ServerLive, timed in the same rounds) p50 "
            f"{overhead.empty_call.p50_ms:.2f} ms, and served − direct − that call "
            f"{overhead.beyond_empty_call_p50.text(' ms', signed=True)}"
        )
    server = overhead.server
    if server is not None and server.server_ms is not None and server.compute_infer_ms is not None:
        line += (
            f"; Triton per request: {server.server_ms:.2f} ms in the server, of which compute_infer {server.compute_infer_ms:.2f} ms "
            f"(python backend + its ONNX Runtime), queue {server.queue_ms or 0:.2f} ms"
        )
    return line


def _transfer_section(comparison: TransferComparison) -> list[str]:
    shapes = ", ".join(f"{name} {'×'.join(str(d) for d in shape)}" for name, shape in comparison.shapes.items())
    lines = [
        f"### {comparison.model} at {comparison.url}",
        "",
        f"{comparison.pairs} interleaved pairs of the same request ({shapes}: {comparison.input_bytes / 1e6:.1f} MB in, "
        f"{comparison.output_bytes / 1e6:.1f} MB out); the same pictures both ways: {'yes' if comparison.identical else 'NO'}. "
        "Outside the model: client latency minus Triton's compute_infer of the same request.",
        "",
    ]
    rows = []
    for mode in comparison.modes:
        outside = summarize(mode.outside_model_ms) if mode.outside_model_ms else None
        infer = summarize(mode.compute_infer_ms) if mode.compute_infer_ms else None
        rows.append(
            [
                mode.mode,
                f"{mode.latency.p50_ms:.1f}",
                f"{mode.latency.max_ms:.1f}",
                f"{infer.p50_ms:.1f}" if infer else "–",
                f"{outside.p50_ms:.1f}" if outside else "–",
            ]
        )
    lines += _table(["mode", "p50 ms", "max ms", "compute_infer p50 ms", "outside the model p50 ms"], rows)
    lines.append(
        f"- Shared memory saves per request: {comparison.saved_ms.text(' ms', signed=True)} (grpc − shared memory)"
    )
    if comparison.saved_outside_model_ms is not None:
        lines.append(f"- Outside the model's run: {comparison.saved_outside_model_ms.text(' ms', signed=True)}")
    return lines + [""]


def _targets_lines(report: BenchReport) -> list[str]:
    checks = report.targets
    if not checks:
        return []
    rows = [[c.target, c.model, _measured(c), c.required, c.verdict, c.detail] for c in checks]
    return [
        "## Acceptance targets",
        "",
        *_table(["target", "model", "measured", "required", "verdict", "detail"], rows),
    ]


def _measured(check: TargetCheck) -> str:
    """The figure with its confidence interval when it has one (a time difference always has one)."""
    if check.measured is None:
        return "–"
    interval = check.interval
    if check.required.endswith("%"):
        figure = f"{100 * check.measured:.0f} %"
        return figure if interval is None else f"{figure} ({100 * interval.low:.0f}..{100 * interval.high:.0f} %)"
    if check.required.endswith("ms"):
        figure = f"{check.measured:+.2f} ms"
        return figure if interval is None else f"{figure} ({interval.low:+.2f}..{interval.high:+.2f} ms)"
    figure = f"{check.measured:.2f}×"
    return figure if interval is None else f"{figure} ({interval.low:.2f}..{interval.high:.2f}×)"


def markdown(report: BenchReport) -> str:
    lines = ["# prodgen-bench report", "", f"`{report.command}` — {report.created}", "", "## Machine", ""]
    lines += _machine_lines(report)
    lines += _targets_lines(report)
    if report.direct:
        lines += ["## Direct mode", ""]
        for result in report.direct:
            lines += _direct_section(result)
    if report.served:
        lines += ["## Served mode", ""]
        for served in report.served:
            lines += _served_section(served)
    if report.transfer:
        lines += ["## Transfer: gRPC messages vs system shared memory", ""]
        for comparison in report.transfer:
            lines += _transfer_section(comparison)
    if report.peers:
        from prodgen.bench.peers.report import peers_section

        lines += ["## prodgen against its peers", ""]
        for peers in report.peers:
            lines += peers_section(peers)
    if report.plots:
        lines += ["## Plots", ""] + [f"![{name}]({name})" for name in report.plots] + [""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {note}" for note in report.notes] + [""]
    return "\n".join(lines)


def write_report(report: BenchReport, folder: Path, plots: bool = True) -> list[Path]:
    """Write report.json, the plots (when matplotlib is installed) and report.md into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        from prodgen.bench.plots import PlotsUnavailable, write_plots

        try:
            report.plots = [path.name for path in write_plots(report, folder)]
        except PlotsUnavailable as reason:
            report.notes.append(str(reason))
    json_path = folder / REPORT_JSON
    json_path.write_text(json.dumps(report_dict(report), indent=1, ensure_ascii=False) + "\n")
    md_path = folder / REPORT_MD
    md_path.write_text(markdown(report))
    written += [json_path, md_path] + [folder / name for name in report.plots]
    return written
