"""`prodgen-bench`: latency and throughput reports a platform engineer can act on.

    prodgen-bench direct fast-neural-style --batch 1,4 --size 256
    prodgen-bench served fast-neural-style --url localhost:8001 --concurrency 1,2,4,8 --repository models
    prodgen-bench transfer srvgg-x2-small --size 2000   # gRPC vs shared memory, server on this host
    prodgen-bench zoo --out bench/reports/cpu-baseline   # the committed baseline; by default bench-results/
    prodgen-bench peers fast-neural-style --concurrency 1,4,8   # against FastAPI, PyTriton, LitServe peers
    prodgen-bench runtimes --out bench/reports/cpu-runtimes   # FP32 ONNX Runtime vs OpenVINO vs INT8 over the zoo
    prodgen-bench restage --photo-side 1024   # restage from a photo end to end (bench/restage.py)

Every command measures the machine's GEMM ceiling at its start and end, shows a live
table, and writes a report folder (report.json with every sample, report.md, PNG plots).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from prodgen import zoo
from prodgen.bench.baseline import (
    BASELINE_DIRECT,
    BASELINE_SERVED,
    SERVED_MODEL,
    baseline_side,
    run_zoo_direct,
    serve_and_measure,
    served_with_reference,
)
from prodgen.bench.ceiling import CEILING_SECONDS, measure_ceilings
from prodgen.bench.console import LiveView, bench_console
from prodgen.bench.direct import (
    DEFAULT_RUNTIMES,
    RUNTIMES,
    DirectSettings,
    apply_ceilings,
    latest_repository_onnx,
    run_direct,
)
from prodgen.bench.events import Observer
from prodgen.bench.machine import describe_machine, scheduling_note
from prodgen.bench.peers.settings import PeerSettings
from prodgen.bench.report import BenchReport, command_line, report_dict, write_report
from prodgen.bench.served import ServedSettings
from prodgen.bench.transfer import TransferSettings, measure_transfer
from prodgen.cli_support import UrlOption, run_app
from prodgen.errors import ProdgenError
from prodgen.triton_request import DEFAULT_URL

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Benchmark prodgen models: runtimes side by side (direct), a Triton endpoint under load (served), the whole zoo.",
)

T = TypeVar("T", int, float)


def _numbers(text: str, kind: Callable[[str], T], option: str, minimum: float) -> tuple[T, ...]:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ProdgenError(f"{option}: expected comma-separated numbers like 1,4, got '{text}'") from None
    if any(value < minimum for value in values):
        raise ProdgenError(f"{option}: every value must be at least {minimum:g}, got '{text}'")
    return values


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _listed(values: tuple[object, ...]) -> str:
    """A settings tuple as the comma-separated text its option takes."""
    return ",".join(str(value) for value in values)


def _default_out(kind: str, model: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("bench-results") / f"{kind}-{model}-{stamp}"


Batches = Annotated[str, typer.Option("--batch", help="Batch sizes, comma-separated.")]
Sizes = Annotated[
    str | None, typer.Option("--size", help="Image sides, comma-separated (default: the model's tuned side).")
]
Runtimes = Annotated[str, typer.Option("--runtimes", help=f"Comma-separated, from: {', '.join(RUNTIMES)}.")]
Out = Annotated[
    Path | None, typer.Option("--out", help="Report folder (default: bench-results/<command>-<model>-<time>).")
]
Threads = Annotated[int, typer.Option(min=0, help="PyTorch and ONNX Runtime threads (0: physical cores).")]
Url = UrlOption
MinRuns = Annotated[int, typer.Option(min=1, help="Timed runs at least, per runtime and shape.")]
MinSeconds = Annotated[float, typer.Option(min=0.0, help="Timed seconds at least, per runtime and shape.")]
MaxSeconds = Annotated[float, typer.Option(min=0.1, help="Timed seconds at most, per runtime and shape.")]
Compile = Annotated[
    bool, typer.Option("--compile/--no-compile", help="Let torch-best try torch.compile (costs seconds per shape).")
]
Plots = Annotated[bool, typer.Option("--plots/--no-plots", help="Write PNG plots (needs matplotlib).")]
Concurrency = Annotated[
    str, typer.Option("--concurrency", help="Closed-loop levels: concurrent requests, comma-separated; '' for none.")
]
Rates = Annotated[str | None, typer.Option("--rate", help="Open-loop levels: requests per second, comma-separated.")]
Window = Annotated[float, typer.Option("--window", min=0.1, help="Measurement window, seconds (at least).")]
Targets = Annotated[
    bool,
    typer.Option(
        "--targets/--no-targets",
        help="Also judge the run against prodgen's acceptance targets (ONNX Runtime over eager, served over direct, "
        "server overhead, share of the GEMM ceiling).",
    ),
]
Json = Annotated[
    bool,
    typer.Option(
        "--json", help="Print the report (as in report.json) on stdout for machines; tables and progress go to stderr."
    ),
]
CeilingSeconds = Annotated[
    float, typer.Option(min=0.05, help="Seconds spent measuring the GEMM ceiling, at the start and at the end.")
]


def _finish(report: BenchReport, out: Path, plots: bool, view: Observer, ceiling_seconds: float) -> list[Path]:
    view.phase("measuring the GEMM ceiling again (end of run)")
    report.ceilings += measure_ceilings("end", ceiling_seconds)
    for result in report.direct:
        apply_ceilings(result.measurements, report.ceilings)
    above = [m for result in report.direct for m in result.measurements if (m.ceiling_fraction or 0.0) > 1.0]
    if above:
        report.notes.append(
            f"{len(above)} measurement(s) exceed the measured ceiling: it was measured while the machine was busy, or this "
            "CPU's model kernels outrun its GEMM and convolution probes; the ceiling fractions are not trustworthy in this run"
        )
    view.phase(f"writing the report to {out}")
    return write_report(report, out, plots)


def _summary(report: BenchReport, written: list[Path], json_out: bool = False) -> None:
    out = bench_console(stderr=json_out)
    for check in report.targets:
        out.print(f"target {check.target} · {check.model}: {check.verdict} — {check.detail}")
    out.print(f"report: {', '.join(str(path) for path in written)}")
    if json_out:
        print(json.dumps(report_dict(report), ensure_ascii=False))


def _start(view: Observer, ceiling_seconds: float, targets: bool) -> BenchReport:
    notes: list[str] = []
    machine = describe_machine()
    load, cpus = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cpus:
        message = f"the machine was busy at the start (1-min load {load:.1f} on {cpus} CPUs): figures will be noisy; compare within this run"
        notes.append(message)
        view.note(message)
    scheduling = scheduling_note()
    if scheduling is not None:
        notes.append(scheduling)
        view.note(scheduling)
    view.phase("measuring the GEMM ceiling (start of run)")
    return BenchReport(
        command=command_line(),
        machine=machine,
        ceilings=measure_ceilings("start", ceiling_seconds),
        notes=notes,
        check_targets=targets,
    )


@app.command()
def direct(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Zoo model name (prodgen-export --list).")],
    checkpoint: Annotated[Path | None, typer.Option(help="Trained weights; seeded random weights if omitted.")] = None,
    onnx: Annotated[Path | None, typer.Option(help="Use this model.onnx instead of exporting one.")] = None,
    repository: Annotated[
        Path | None, typer.Option(help="Take model.onnx from the latest version of MODEL in this repository.")
    ] = None,
    batch: Batches = _listed(DirectSettings.batches),
    size: Sizes = None,
    runtimes: Runtimes = _listed(DEFAULT_RUNTIMES),
    threads: Threads = DirectSettings.threads,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = DirectSettings.device,
    min_runs: MinRuns = DirectSettings.min_runs,
    min_seconds: MinSeconds = DirectSettings.min_seconds,
    max_seconds: MaxSeconds = DirectSettings.max_seconds,
    compile: Compile = DirectSettings.compile,
    plots: Plots = True,
    targets: Targets = False,
    ceiling_seconds: CeilingSeconds = CEILING_SECONDS,
    out: Out = None,
    json_out: Json = False,
) -> None:
    """One model through every runtime available here, side by side in one run."""
    entry = zoo.get(model)
    if onnx is not None and repository is not None:
        raise ProdgenError("give --onnx or --repository, not both")
    onnx_path = (
        onnx if onnx is not None else latest_repository_onnx(repository, model) if repository is not None else None
    )
    if onnx_path is not None and not onnx_path.is_file():
        raise ProdgenError(f"{onnx_path} does not exist")
    settings = DirectSettings(
        batches=_numbers(batch, int, "--batch", 1),
        sizes=_numbers(size, int, "--size", 1) if size else (),
        runtimes=_names(runtimes),
        threads=threads,
        min_runs=min_runs,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        compile=compile,
        device=device,
    )
    settings.check(entry)
    settings.resolved_device()
    folder = out or _default_out("direct", model)
    with LiveView(bench_console(stderr=json_out)) as view:
        report = _start(view, ceiling_seconds, targets)
        report.direct.append(run_direct(entry, settings, report.ceilings, checkpoint, onnx_path, view))
        written = _finish(report, folder, plots, view, ceiling_seconds)
    _summary(report, written, json_out)


@app.command()
def served(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Served model name (prodgen models).")],
    url: Url = DEFAULT_URL,
    concurrency: Concurrency = _listed(ServedSettings.concurrency),
    rate: Rates = None,
    arrival: Annotated[str, typer.Option(help="Open-loop arrivals: constant or poisson.")] = ServedSettings.arrival,
    request_batch: Annotated[
        int, typer.Option(min=1, help="Images (or latents) per request.")
    ] = ServedSettings.request_batch,
    size: Annotated[
        int | None, typer.Option(help="Image side to send (default: the served model's tuned side).")
    ] = ServedSettings.size,
    warmup: Annotated[float, typer.Option(min=0.0, help="Warm-up seconds per level.")] = ServedSettings.warmup_s,
    window: Window = ServedSettings.window_s,
    min_requests: Annotated[
        int, typer.Option(min=1, help="Requests a window must see at least.")
    ] = ServedSettings.min_window_requests,
    stability: Annotated[float, typer.Option(min=0.1, help="Stability tolerance, percent.")] = 100
    * ServedSettings.stability,
    max_windows: Annotated[int, typer.Option(min=1, help="Windows per level at most.")] = ServedSettings.max_windows,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds per request before it counts as an error.")
    ] = ServedSettings.timeout_s,
    max_requests: Annotated[int, typer.Option(min=1, help="Requests per level at most.")] = ServedSettings.max_requests,
    repository: Annotated[
        Path | None,
        typer.Option(help="Repository holding the served model.onnx: adds a direct ONNX Runtime reference."),
    ] = None,
    onnx: Annotated[
        Path | None, typer.Option(help="The served model.onnx: adds a direct ONNX Runtime reference.")
    ] = None,
    pairs: Annotated[
        int,
        typer.Option(
            min=0,
            help="With a direct reference: interleaved served/direct pairs (at least; and 5 s) that measure what the server adds; 0 for none.",
        ),
    ] = ServedSettings.overhead_pairs,
    plots: Plots = True,
    targets: Targets = False,
    ceiling_seconds: CeilingSeconds = CEILING_SECONDS,
    out: Out = None,
    json_out: Json = False,
) -> None:
    """A model on a Triton gRPC endpoint under a concurrency sweep and/or request rates."""
    from prodgen.client.api import ProdgenClient

    settings = ServedSettings(
        concurrency=_numbers(concurrency, int, "--concurrency", 1),
        rates=_numbers(rate, float, "--rate", 1e-3) if rate else (),
        arrival=arrival,  # type: ignore[arg-type]  # checked in ServedSettings
        request_batch=request_batch,
        size=size,
        warmup_s=warmup,
        window_s=window,
        min_window_requests=min_requests,
        max_window_s=max(window * 6, ServedSettings.max_window_s),
        stability=stability / 100,
        max_windows=max_windows,
        timeout_s=timeout,
        max_requests=max_requests,
        overhead_pairs=pairs,
    )
    onnx_path = (
        onnx if onnx is not None else latest_repository_onnx(repository, model) if repository is not None else None
    )
    with ProdgenClient(url) as client:
        client.model(model)  # an unreachable server or an unknown model fails here, before anything is measured
    folder = out or _default_out("served", model)
    with LiveView(bench_console(stderr=json_out)) as view:
        report = _start(view, ceiling_seconds, targets)
        report.served.append(served_with_reference(url, model, settings, onnx_path, view))
        written = _finish(report, folder, plots, view, ceiling_seconds)
    _summary(report, written, json_out)


@app.command()
def transfer(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Served model name (prodgen models).")],
    url: Url = DEFAULT_URL,
    size: Annotated[
        int | None, typer.Option(help="Image side to send (default: the served model's tuned side).")
    ] = None,
    pairs: Annotated[int, typer.Option(min=2, help="Interleaved gRPC / shared-memory pairs.")] = TransferSettings.pairs,
    pause: Annotated[
        float, typer.Option(min=0.0, help="Untimed seconds after every request.")
    ] = TransferSettings.pause_s,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per request.")] = TransferSettings.timeout_s,
    ceiling_seconds: CeilingSeconds = CEILING_SECONDS,
    out: Out = None,
    json_out: Json = False,
) -> None:
    """Pictures inside gRPC messages vs through Triton's system shared memory, on a server on this machine."""
    from prodgen.bench.payloads import image_side, request_payloads
    from prodgen.client.api import ProdgenClient
    from prodgen.client.shared_memory import check_same_host

    check_same_host(url)
    with ProdgenClient(url) as client:
        served_model = client.model(model)
    payload = request_payloads(served_model, 1, image_side(served_model, size), variants=1)[0]
    settings = TransferSettings(pairs=pairs, pause_s=pause, timeout_s=timeout)
    folder = out or _default_out("transfer", model)
    with LiveView(bench_console(stderr=json_out)) as view:
        report = _start(view, ceiling_seconds, targets=False)
        view.phase(f"{model} · gRPC and shared memory in interleaved pairs")
        report.transfer.append(measure_transfer(url, model, payload, settings, view))
        written = _finish(report, folder, False, view, ceiling_seconds)
    _summary(report, written, json_out)


@app.command(name="zoo")
def zoo_baseline(
    models: Annotated[str | None, typer.Option(help="Comma-separated zoo models (default: the whole zoo).")] = None,
    batch: Batches = _listed(BASELINE_DIRECT.batches),
    runtimes: Runtimes = _listed(BASELINE_DIRECT.runtimes),
    threads: Threads = BASELINE_DIRECT.threads,
    min_runs: MinRuns = BASELINE_DIRECT.min_runs,
    min_seconds: MinSeconds = BASELINE_DIRECT.min_seconds,
    max_seconds: MaxSeconds = BASELINE_DIRECT.max_seconds,
    compile: Annotated[
        bool,
        typer.Option(
            "--compile/--no-compile", help="Let torch-best try torch.compile (about 35 s per shape on 2 cores)."
        ),
    ] = BASELINE_DIRECT.compile,
    served_models: Annotated[
        str,
        typer.Option("--served", help="Comma-separated models to serve on the embedded Triton and load; '' for none."),
    ] = SERVED_MODEL,
    concurrency: Concurrency = _listed(BASELINE_SERVED.concurrency),
    window: Window = BASELINE_SERVED.window_s,
    plots: Plots = True,
    targets: Targets = False,
    ceiling_seconds: CeilingSeconds = CEILING_SECONDS,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Report folder (default: bench-results/zoo-<time>; the committed baseline is "
            "bench/reports/cpu-baseline, written only when named here)."
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    """The baseline: every zoo model in direct mode (heavy ones at a smaller side), then served models under load."""
    names = _names(models) if models else tuple(zoo.names())
    served_names = _names(served_models)
    settings = dataclasses.replace(
        BASELINE_DIRECT,
        batches=_numbers(batch, int, "--batch", 1),
        runtimes=_names(runtimes),
        threads=threads,
        min_runs=min_runs,
        min_seconds=min_seconds,
        max_seconds=max_seconds,
        compile=compile,
    )
    for name in (*names, *served_names):
        settings.check(zoo.get(name))
    served_settings = dataclasses.replace(
        BASELINE_SERVED, concurrency=_numbers(concurrency, int, "--concurrency", 1), window_s=window
    )
    folder = out or _default_out("zoo", "all" if models is None else "-".join(names))
    with LiveView(bench_console(stderr=json_out)) as view:
        report = _start(view, ceiling_seconds, targets)
        sides = ", ".join(f"{name} {side}²" for name in names if (side := baseline_side(zoo.get(name))))
        report.notes.append(f"image sides in direct mode: {sides}; torch.compile {'on' if compile else 'off'}")
        run_zoo_direct(names, settings, report, view)
        if served_names:
            serve_and_measure(served_names, served_settings, report, view, reference_settings=settings)
        written = _finish(report, folder, plots, view, ceiling_seconds)
    _summary(report, written, json_out)


@app.command()
def peers(
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Zoo model name (prodgen-export --list).")],
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(metavar="PATH", help="Trained weights (once per file); seeded random weights if omitted."),
    ] = None,
    peer_names: Annotated[
        str, typer.Option("--peers", help="Comma-separated peers to start beside prodgen.")
    ] = ",".join(PeerSettings.peers),
    concurrency: Concurrency = _listed(PeerSettings.concurrency),
    size: Annotated[
        int | None, typer.Option(help="Image side to send (default: the model's tuned side).")
    ] = PeerSettings.size,
    rounds: Annotated[
        int, typer.Option(min=1, help="Windows per server and concurrency, the servers taking turns.")
    ] = PeerSettings.rounds,
    warmup: Annotated[float, typer.Option(min=0.0, help="Warm-up seconds before each window.")] = PeerSettings.warmup_s,
    window: Window = PeerSettings.window_s,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds per request before it counts as an error.")
    ] = PeerSettings.timeout_s,
    max_batch: Annotated[
        int, typer.Option(min=1, help="prodgen's max_batch_size and the batching peers' largest batch.")
    ] = PeerSettings.max_batch_size,
    seed: Annotated[
        int, typer.Option(help="Seed of the random weights when no checkpoint is given.")
    ] = PeerSettings.seed,
    serve_threads: Annotated[
        int | None,
        typer.Option(help="Run prodgen serve with --threads N (ONNX Runtime threads per instance); default: its own."),
    ] = PeerSettings.serve_threads,
    variant: Annotated[
        str | None,
        typer.Option(
            help="Serve prodgen's <MODEL>_<VARIANT> (int8, openvino, int8_openvino), exported with --int8/--openvino "
            "and published only inside its fidelity gate and where faster; peers stay FP32."
        ),
    ] = PeerSettings.variant,
    plots: Plots = True,
    ceiling_seconds: CeilingSeconds = CEILING_SECONDS,
    out: Out = None,
    json_out: Json = False,
) -> None:
    """prodgen served against what a shop would write instead (FastAPI, PyTriton, LitServe), same model and load."""
    from prodgen.bench.peers.compare import run_peers
    from prodgen.bench.peers.launch import require_peer_packages

    entry = zoo.get(model)
    settings = PeerSettings(
        peers=_names(peer_names),
        concurrency=_numbers(concurrency, int, "--concurrency", 1),
        size=size,
        rounds=rounds,
        warmup_s=warmup,
        window_s=window,
        timeout_s=timeout,
        max_batch_size=max_batch,
        seed=seed,
        serve_threads=serve_threads,
        variant=variant,
    )
    require_peer_packages(settings.peers)
    folder = out or _default_out("peers", entry.name)
    with LiveView(bench_console(stderr=json_out)) as view:
        report = _start(view, ceiling_seconds, targets=False)
        report.peers.append(run_peers(entry.name, settings, checkpoint or [], view))
        written = _finish(report, folder, plots, view, ceiling_seconds)
    _summary(report, written, json_out)


@app.command(name="runtimes")
def cpu_runtimes(
    models: Annotated[str | None, typer.Option(help="Comma-separated zoo models (default: the whole zoo).")] = None,
    demo_weights: Annotated[
        Path, typer.Option(help="Folder of the project's trained demo weights (used where a zoo model has them).")
    ] = Path("demo/weights"),
    out: Annotated[
        Path | None,
        typer.Option(
            help="Report folder (default: bench-results/runtimes-<time>; committed: bench/reports/cpu-runtimes)."
        ),
    ] = None,
    json_out: Json = False,
) -> None:
    """Each zoo model through FP32 ONNX Runtime, OpenVINO and INT8 (ONNX Runtime and OpenVINO): PSNR, SSIM,
    images/s at batch 1 and 4 in turns, and which variants prodgen-export would publish."""
    from prodgen.bench.cpu_runtimes import RuntimesReport, cpu_flags, markdown, measure_model
    from prodgen.openvino_runtime import inference_precision, openvino_available

    names = _names(models) if models else tuple(zoo.names())
    entries = [zoo.get(name) for name in names]
    folder = out or _default_out("runtimes", "all" if models is None else "-".join(names))
    with LiveView(bench_console(stderr=json_out)) as view:
        report = RuntimesReport(
            command=command_line(),
            machine=describe_machine(),
            cpu_flags=cpu_flags(),
            openvino_precision=inference_precision() if openvino_available() else None,
            models=[],
        )
        if not openvino_available():
            report.notes.append("OpenVINO not installed (pip install 'prodgen[openvino]'): its columns are missing")
        for entry in entries:
            report.models.append(measure_model(entry, demo_weights if demo_weights.is_dir() else None, view))
    folder.mkdir(parents=True, exist_ok=True)
    record = json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False, default=str)
    (folder / "report.json").write_text(record + "\n")
    (folder / "report.md").write_text(markdown(report))
    bench_console(stderr=json_out).print(f"report: {folder / 'report.md'}, {folder / 'report.json'}")
    if json_out:
        print(record)


@app.command(name="restage")
def restage_command(
    preset: Annotated[str, typer.Option(help="Random-weight checkpoint size: tiny or sd15.")] = "tiny",
    checkpoint: Annotated[Path | None, typer.Option(help="A save_pretrained folder instead of a preset.")] = None,
    url: Annotated[str | None, typer.Option(help="Time a served pipeline here instead of exporting one.")] = None,
    model: Annotated[str, typer.Option(help="With --url: the served diffusion pipeline.")] = "shop",
    cutout: Annotated[str | None, typer.Option(help="Served cutout model (default: a given alpha).")] = None,
    photo_side: Annotated[int, typer.Option(min=8, help="Side of the square photo restaged.")] = 1024,
    steps: Annotated[int, typer.Option(min=1)] = 2,
    repeats: Annotated[int, typer.Option(min=1)] = 3,
    threads: Annotated[int, typer.Option(min=1, help="Intra-op threads of the local server.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write every sample and the machine as JSON here.")] = None,
) -> None:
    """Restage from a photo-side² photo end to end, against the pipeline's own call at the model's size."""
    from prodgen.bench.restage import measure_local, measure_restage
    from prodgen.client import ProdgenClient

    if url is not None:
        with ProdgenClient(url, timeout_s=3600) as client:
            figures = measure_restage(client, model, photo_side, steps, repeats, cutout)
    else:
        from prodgen.zoo.stable_diffusion_random import write_random_checkpoint

        if preset not in ("tiny", "sd15"):
            raise ProdgenError(f"preset '{preset}': expected tiny or sd15")
        with tempfile.TemporaryDirectory(prefix="prodgen-bench-checkpoint-") as folder:
            source = checkpoint or write_random_checkpoint(Path(folder) / preset, preset)  # type: ignore[arg-type]
            figures = measure_local(source, photo_side, steps, repeats, threads, cutout)
    if out is not None:
        record = {**dataclasses.asdict(figures), "command": command_line(), "machine": describe_machine()}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n")
    bench_console().print(figures.summary())


@app.command(name="batch")
def batch_bench(
    repository: Annotated[Path, typer.Option(help="Model repository the two embedded servers serve.")],
    model: Annotated[str, typer.Option(help="Served model the job calls.")],
    task: Annotated[str, typer.Option(help="The job's task (prodgen batch --task).")] = "upscale",
    rows: Annotated[int, typer.Option(min=1, help="Manifest rows (different photo crops).")] = 200,
    side: Annotated[int, typer.Option(min=16, help="Side of each input picture, pixels.")] = 128,
    concurrency: Concurrency = "1,2,4,8",
    ray_concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Calling actors of the Ray runs (and a local run beside them); omit: no Ray."),
    ] = None,
    rounds: Annotated[int, typer.Option(min=1, help="Rounds; each runs every configuration once, in turn.")] = 3,
    out: Out = None,
) -> None:
    """`prodgen batch` items/s against concurrency, 1 vs 2 servers, and local vs Ray, interleaved in one run."""
    from prodgen.bench.batch import configurations, measure, write_batch_report

    listed = configurations(_numbers(concurrency, int, "--concurrency", 1), ray_concurrency)
    folder = out or _default_out("batch", model)
    header: dict[str, object] = {
        "command": command_line(),
        "machine": describe_machine(),
        "model": model,
        "task": task,
        "rows": rows,
        "side": side,
        "rounds": rounds,
    }
    with LiveView(bench_console()) as view:
        runs = measure(repository, model, task, rows, side, rounds, listed, view.note)
    written = write_batch_report(folder, runs, header)
    bench_console().print(f"report: {', '.join(str(path) for path in written)}")


@app.command()
def diffusion(
    preset: Annotated[
        str, typer.Option(help="Random-weight checkpoint to write: tiny (tests) or sd15 (SD 1.5's architecture).")
    ] = "tiny",
    checkpoint: Annotated[
        Path | None, typer.Option(metavar="DIR", help="A save_pretrained folder instead of a random preset.")
    ] = None,
    side: Annotated[int, typer.Option(min=8, help="Picture side in pixels.")] = 32,
    steps: Annotated[
        str, typer.Option(help="Two step counts: per step and fixed cost come from their difference.")
    ] = "2,6",
    repeats: Annotated[int, typer.Option(min=1, help="Interleaved rounds of every runner.")] = 3,
    threads: Annotated[int, typer.Option(min=1, help="Intra-op threads for every runner.")] = 2,
    openvino_python: Annotated[
        str | None,
        typer.Option(metavar="PYTHON", help="A Python with optimum-intel[openvino] installed, for the OpenVINO peers."),
    ] = None,
    peer_names: Annotated[
        str, typer.Option("--peers", help="Comma-separated peers, each timed in turn beside prodgen served.")
    ] = "direct,diffusers,openvino-static,openvino",
    concurrency: Annotated[str, typer.Option(help="Served pictures at once, comma-separated.")] = "1,2,4",
    repository: Annotated[
        Path | None,
        typer.Option(help="Serve this earlier export of --checkpoint (pipeline sd_bench) instead of exporting again."),
    ] = None,
    components: Annotated[
        str,
        typer.Option(
            help="onnx: serve the FP32 ONNX components; openvino: gate, publish and serve OpenVINO components first "
            "(prodgen-export stable-diffusion --openvino, at --side); openvino-int8: with the UNet's INT8 tried too.",
        ),
    ] = "onnx",
    out: Out = None,
) -> None:
    """The served Stable-Diffusion pipeline against diffusers, its own components in one process and
    optimum-intel's OpenVINO pipeline: pictures checked against each other, then timed interleaved."""
    from prodgen.bench import diffusion as bench_diffusion

    if preset not in ("tiny", "sd15"):
        raise ProdgenError(f"--preset {preset}: expected tiny or sd15")
    counts = sorted(set(_numbers(steps, int, "--steps", 1)))
    if len(counts) != 2:
        raise ProdgenError(f"--steps {steps}: expected two different step counts, e.g. 2,6")
    low, high = counts
    folder = out or _default_out("diffusion", preset if checkpoint is None else checkpoint.name)
    unknown = set(_names(peer_names)) - set(bench_diffusion.PEERS)
    if unknown:
        raise ProdgenError(
            f"--peers: unknown {', '.join(sorted(unknown))}; expected some of {', '.join(bench_diffusion.PEERS)}"
        )
    if repository is not None and checkpoint is None:
        raise ProdgenError("--repository serves an earlier export of --checkpoint: give the checkpoint too")
    levels = _numbers(concurrency, int, "--concurrency", 1)
    if components not in bench_diffusion.COMPONENTS:
        raise ProdgenError(f"--components {components}: expected one of {', '.join(bench_diffusion.COMPONENTS)}")
    bench_diffusion.run(
        preset, checkpoint, side, (low, high), repeats, 7.5, "ddim", threads, openvino_python, folder,
        _names(peer_names), repository, levels, components,
    )  # fmt: skip
    bench_console().print(f"report: {folder / 'report.md'}, {folder / 'report.json'}")


def main() -> None:
    run_app(app)
