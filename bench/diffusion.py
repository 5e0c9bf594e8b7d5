"""`prodgen-bench diffusion`: the served Stable-Diffusion pipeline against its peers, in one run on one machine.

    prodgen-bench diffusion --preset tiny --side 32 --steps 2,6 --repeats 3
    prodgen-bench diffusion --preset sd15 --side 256 --steps 2,4 --openvino-python /path/to/ov-venv/bin/python

Writes a random-weight checkpoint of the preset (or takes `--checkpoint`), exports it with the
pipeline's default batching and serves it on the embedded Triton server. The runners:

- `served`: prodgen serve, one picture a gRPC call (gRPC → pipeline model → BLS → ONNX Runtime, or
  OpenVINO for the components `--components openvino` gated and published: `prodgen-export
  stable-diffusion --openvino`);
- `direct`: the same pipeline model and components in one process, no Triton (what serving adds);
- `diffusers`: diffusers' `StableDiffusionPipeline`, PyTorch eager;
- `openvino`, `openvino-static`: optimum-intel's `OVStableDiffusionPipeline` (dynamic shapes, and
  reshaped to the picture's static shape), in the Python given by `--openvino-python`.

Every peer runs in its own process (bench/diffusion_peers.py) with the same intra-op thread count
and draws from the same initial noise (prodgen's seeding), so the pictures are compared (PSNR
against the served one) before anything is timed. Then one picture at each of two step counts,
every runner in turn, round after round (interleaved, so all see the same machine load): per step
is the difference of the medians over the difference of the steps, and fixed cost what remains at
zero steps (text encoder, VAE decoder, transport). Then the served pipeline at concurrency 1, 2
and 4 (pictures per minute; the slowest picture against a lone one; the UNet's average batch from
Triton's statistics). Peak resident memory is sampled for every peer (for the server: tritonserver
with its python-backend stubs) throughout.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from prodgen.bench.diffusion_peers import MemorySampler, PeerError, PeerProcess, PeerSettings, prodgen_python
from prodgen.bench.machine import describe_machine
from prodgen.bench.stats import percentile
from prodgen.bench.triton_stats import StatisticsReader, difference
from prodgen.client import ProdgenClient, Sampling
from prodgen.client.diffusion import DiffusionWarning
from prodgen.export.fidelity import psnr_db
from prodgen.export.stable_diffusion import export_stable_diffusion
from prodgen.export.stable_diffusion_openvino import publish_openvino_components
from prodgen.model_repository.pipeline_components import component_models, pipeline_instances
from prodgen.serve.options import free_port
from prodgen.serve.processes import listener_pid
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.stable_diffusion_random import write_random_checkpoint

PRESET_TITLES = {
    "sd15": "SD-1.5-sized random weights",
    "tiny": "tiny random-weight checkpoint (tests' size)",
}
PROMPT = "a studio photo of a red sneaker on a white table"
NAME = "sd_bench"
SERVED = "served"
CONCURRENCY = (1, 2, 4)
OPENVINO_PEERS = ("openvino-static", "openvino")
PEERS = ("direct", "diffusers", *OPENVINO_PEERS)
COMPONENTS = ("onnx", "openvino", "openvino-int8")
Draw = Callable[[int, int], tuple[float, np.ndarray]]


@dataclass(frozen=True)
class RunnerFigures:
    runner: str
    per_picture_ms: dict[int, float]
    """Median end-to-end latency of one picture, by step count."""
    per_step_ms: float
    fixed_ms: float
    psnr_vs_served_db: float | None
    peak_rss_mb: float | None
    samples: dict[int, list[float]]


@dataclass(frozen=True)
class ConcurrencyFigures:
    concurrency: int
    pictures: int
    steps: int
    wall_s: float
    pictures_per_minute: float
    median_ms: float
    slowest_ms: float
    slowest_over_lone: float
    """The slowest picture's latency over a lone picture's (the median at concurrency 1)."""
    unet_average_batch: float | None
    """Triton's average batch of the UNet the pipeline calls: rows per execution for a batching UNet
    (2 is one picture's guidance pair); for one without a batcher (`max_batch_size` 0, OpenVINO's)
    Triton counts requests, so 1.00, each one picture's guidance pair."""


def _figures(runner: str, samples: dict[int, list[float]], psnr: float | None, peak: float | None) -> RunnerFigures:
    low, high = sorted(samples)
    medians = {steps: percentile(values, 50) for steps, values in samples.items()}
    per_step = (medians[high] - medians[low]) / (high - low)
    return RunnerFigures(runner, medians, per_step, medians[low] - low * per_step, psnr, peak, samples)


def _served_draw(url: str, side: int, guidance: float, scheduler: str) -> Draw:
    client = ProdgenClient(url, timeout_s=3600)
    # A random checkpoint's toy tokenizer knows none of the prompt's words: said once per picture, from
    # the pictures' threads, it would bury the bench's own lines.
    warnings.filterwarnings("ignore", category=DiffusionWarning)

    def draw(seed: int, steps: int) -> tuple[float, np.ndarray]:
        sampling = Sampling(seed=seed, steps=steps, guidance=guidance, scheduler=scheduler)
        began = time.perf_counter()
        image = client.txt2img(NAME, PROMPT, sampling, side, side)[0]
        return 1000 * (time.perf_counter() - began), image

    return draw


def _concurrency(
    url: str, unet: str, level: int, steps: int, side: int, guidance: float, scheduler: str
) -> tuple[list[float], float, float | None]:
    """(latencies ms, wall s, average batch of the served UNet `unet`) of max(4, 2 × level) pictures,
    `level` at a time."""
    draws = [_served_draw(url, side, guidance, scheduler) for _ in range(level)]
    pictures = max(4, 2 * level)
    reader = StatisticsReader(url, unet)
    before = reader.read()
    began = time.perf_counter()
    with ThreadPoolExecutor(level) as pool:
        latencies = list(pool.map(lambda seed: draws[seed % level](1000 + seed, steps)[0], range(pictures)))
    wall = time.perf_counter() - began
    after = reader.read()
    reader.close()
    batch = difference(before, after).average_batch if before is not None and after is not None else None
    return latencies, wall, batch


def _openvino_components(
    repository: Path, side: int, threads: int, int8: bool, report: Callable[[str], None]
) -> dict[str, object]:
    """The export's OpenVINO step on the bench's pipeline; what its gate and race measured."""
    outcome = publish_openvino_components(repository, NAME, side=side, threads=threads, int8=int8, step=report)
    report(f"OpenVINO components: {outcome.describe_gate()}")
    for line in [race.describe() for race in outcome.races] + outcome.notes:
        report(f"OpenVINO components: {line}")
    return {
        "gate": outcome.describe_gate(),
        "psnr_db": outcome.psnr_db,
        "lowest_ssim": outcome.lowest_ssim,
        "races": [asdict(race) for race in outcome.races],
        "picture_s": {"onnxruntime": outcome.onnxruntime_picture_s, "openvino": outcome.openvino_picture_s},
        "published": sorted(outcome.published),
        "int8": outcome.int8,
        "int8_attempts": outcome.int8_attempts,
        "notes": outcome.notes,
    }


def _rounds(
    draws: dict[str, Draw],
    steps: tuple[int, int],
    repeats: int,
    samples: dict[str, dict[int, list[float]]],
    report: Callable[[str], None],
) -> None:
    """`repeats` rounds of one picture at each step count from every runner in turn, into `samples`."""
    for round_index in range(repeats):
        for count in steps:
            for name, draw in draws.items():
                elapsed_ms, _ = draw(0, count)
                samples[name][count].append(elapsed_ms)
                report(f"round {round_index + 1} steps {count}: {name} {elapsed_ms:.0f} ms")


def measure(
    checkpoint: Path,
    side: int,
    steps: tuple[int, int],
    repeats: int,
    guidance: float,
    scheduler: str,
    threads: int,
    openvino_python: str | None,
    peers: tuple[str, ...] = PEERS,
    report: Callable[[str], None] = print,
    exported: Path | None = None,
    concurrency_levels: tuple[int, ...] = CONCURRENCY,
    components: str = "onnx",
) -> dict[str, object]:
    """Export and serve `checkpoint`, start the peers, check their pictures, then time them interleaved.

    `exported`: a repository where an earlier run (or prodgen-export) published `checkpoint` as
    the pipeline `sd_bench` with the default batching, served as is instead of exporting again.
    `components` "openvino" ("openvino-int8"): gate, publish and switch to the OpenVINO components
    first, as `prodgen-export stable-diffusion --openvino [--int8]` does (in `exported` too), at the
    bench's side."""
    from prodgen.zoo.stable_diffusion import load_stable_diffusion

    model = load_stable_diffusion(checkpoint)
    settings = PeerSettings(PROMPT, side, guidance, scheduler, threads, model.latent_channels, model.vae_scale_factor)
    del model
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-sd-") as work, MemorySampler() as memory:
        repository = exported or Path(work) / "models"
        started = time.perf_counter()
        if exported is None:
            export_stable_diffusion(checkpoint, repository, NAME)
        export_s = time.perf_counter() - started if exported is None else None
        openvino = (
            _openvino_components(repository, side, threads, components == "openvino-int8", report)
            if components != "onnx"
            else None
        )
        served_components = component_models(repository, NAME)
        instances = pipeline_instances(repository, NAME)
        options = ServerOptions(
            repository, grpc_port=free_port(), http_port=free_port(), metrics_port=free_port(), intra_op_threads=threads
        )
        known = {
            "direct": (prodgen_python(), ["--repository", str(repository), "--name", NAME]),
            "diffusers": (prodgen_python(), ["--checkpoint", str(checkpoint)]),
        }
        for runner in OPENVINO_PEERS:
            if openvino_python:
                known[runner] = (openvino_python, ["--checkpoint", str(checkpoint)])
            elif runner in peers:
                notes.append(
                    f"{runner}: not measured (no --openvino-python: optimum-intel needs an environment of its own)"
                )
        wanted = [(label, *known[label]) for label in peers if label in known]
        with EmbeddedServer(options):
            server_pid = listener_pid(options.grpc_port)
            assert server_pid is not None
            memory.watch(SERVED, server_pid)
            idle_rss = memory.sample()[SERVED]
            served = _served_draw(options.grpc_url, side, guidance, scheduler)
            reference = served(0, max(steps))[1]  # also warms the server up
            samples: dict[str, dict[int, list[float]]] = {SERVED: {n: [] for n in steps}}
            psnr: dict[str, float] = {}
            for label, python, extra in wanted:  # one peer at a time beside the server, as memory allows
                report(f"starting {label}")
                try:
                    peer = PeerProcess(label, python, label, extra, settings, Path(work))
                except PeerError as error:
                    notes.append(f"{label}: could not start ({error})")
                    continue
                memory.watch(label, peer.pid)
                try:
                    psnr[label] = psnr_db([reference], [peer.picture(0, max(steps))[1]])  # also warms it up
                    report(f"{label}: PSNR against served {psnr[label]:.1f} dB")
                    samples[label] = {n: [] for n in steps}
                    _rounds({SERVED: served, label: peer.picture}, steps, repeats, samples, report)
                except PeerError as error:  # the others are still measured; this one is reported
                    notes.append(f"{label}: failed ({error})")
                    samples.pop(label, None)
                    psnr.pop(label, None)
                finally:
                    peer.close()
                    memory.forget(label)
            if not wanted:
                _rounds({SERVED: served}, steps, repeats, samples, report)
            after_pictures_rss = memory.sample()[SERVED]
            lone_ms = percentile(samples[SERVED][min(steps)], 50)
            concurrency = []
            for level in concurrency_levels:
                latencies, wall, batch = _concurrency(
                    options.grpc_url, served_components["unet"], level, min(steps), side, guidance, scheduler
                )
                figures = ConcurrencyFigures(
                    level, len(latencies), min(steps), wall, 60 * len(latencies) / wall,
                    percentile(latencies, 50), max(latencies), max(latencies) / lone_ms, batch,
                )  # fmt: skip
                concurrency.append(figures)
                report(
                    f"concurrency {level}: {figures.pictures_per_minute:.2f} pictures/min, slowest "
                    f"{figures.slowest_over_lone:.2f}× a lone picture, UNet average batch {batch}"
                )
            end_rss = memory.sample()[SERVED]
    runners = {
        label: asdict(_figures(label, samples[label], psnr.get(label), memory.peaks.get(label))) for label in samples
    }
    return {
        "checkpoint": str(checkpoint),
        "side": side,
        "scheduler": scheduler,
        "guidance": guidance,
        "steps": list(steps),
        "repeats": repeats,
        "export_s": export_s,
        "intra_op_threads": threads,
        "machine": describe_machine(),
        "runners": runners,
        "concurrency": [asdict(figures) for figures in concurrency],
        "served_rss_mb": {"idle": idle_rss, "after_timed_pictures": after_pictures_rss, "end": end_rss},
        "components": served_components,
        "pipeline_instances": instances,
        "openvino_components": openvino,
        "notes": notes,
    }


def markdown(figures: dict[str, object], title: str) -> str:
    """The report's tables: per runner (fixed cost, per step, PSNR, peak memory), then served concurrency."""
    runners = figures["runners"]
    assert isinstance(runners, dict)
    steps = figures["steps"]
    assert isinstance(steps, list)
    low, high = int(steps[0]), int(steps[1])
    machine = figures.get("machine")
    load = machine.get("load_average_at_start") if isinstance(machine, dict) else None
    cores = machine.get("logical_cpus") if isinstance(machine, dict) else None
    busy = f" Load average at the start {load[0]:.1f} on {cores} CPUs." if load and cores else ""
    lines = [
        f"# {title}",
        "",
        f"{figures['side']}² pictures, {figures['scheduler']}, guidance {figures['guidance']}, "
        f"{figures['intra_op_threads']} intra-op threads for every runner; medians of {figures['repeats']} "
        f"interleaved rounds: compare within this run only.{busy}",
        "",
        f"| runner | {low} steps | {high} steps | per step | fixed | PSNR vs served | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runner in runners.items():
        pictures = runner["per_picture_ms"]
        psnr = runner["psnr_vs_served_db"]
        peak = runner["peak_rss_mb"]
        lines.append(
            f"| {label} | {pictures[low] / 1000:.2f} s | {pictures[high] / 1000:.2f} s | "
            f"{runner['per_step_ms'] / 1000:.2f} s | {runner['fixed_ms'] / 1000:.2f} s | "
            f"{'—' if psnr is None else f'{psnr:.1f} dB'} | {'—' if peak is None else f'{peak / 1024:.2f} GB'} |"
        )
    components = figures.get("components")
    instances = figures.get("pipeline_instances")
    lines += [
        "",
        "Served, concurrent pictures (peers draw one picture at a time: on these cores one picture already",
        "takes every core, so their pictures per minute at any concurrency are those at 1)"
        + (f"; {instances} pipeline instance(s)" if instances else "")
        + (f", calling the UNet `{components['unet']}`" if isinstance(components, dict) else "")
        + ":",
        "",
        "| concurrency | pictures | pictures/min | median | slowest | slowest / lone | UNet average batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for level in figures["concurrency"]:  # type: ignore[attr-defined]
        batch = level["unet_average_batch"]
        lines.append(
            f"| {level['concurrency']} | {level['pictures']} | {level['pictures_per_minute']:.2f} | "
            f"{level['median_ms'] / 1000:.2f} s | {level['slowest_ms'] / 1000:.2f} s | "
            f"{level['slowest_over_lone']:.2f}× | {'—' if batch is None else f'{batch:.2f}'} |"
        )
    rss = figures["served_rss_mb"]
    assert isinstance(rss, dict)
    lines += [
        "",
        f"Server memory (tritonserver + stubs): idle {rss['idle'] / 1024:.2f} GB, after the timed pictures "
        f"{rss['after_timed_pictures'] / 1024:.2f} GB, at the end {rss['end'] / 1024:.2f} GB.",
    ]
    openvino = figures.get("openvino_components")
    if isinstance(openvino, dict):
        published = ", ".join(openvino["published"]) or "none"
        lines += [
            "",
            f"OpenVINO components (the export's gate, at this side): {openvino['gate']}; published: {published}.",
        ]
        lines += [
            f"- {race['part']}: {race['openvino_s']:.2f} s on OpenVINO, {race['onnxruntime_s']:.2f} s on ONNX Runtime "
            "in the gate's timed pictures"
            for race in openvino["races"]
        ]
        lines += [f"- {line}" for line in openvino["notes"]]
    lines += [f"- {note}" for note in figures["notes"]]  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n"


def run(
    preset: str,
    checkpoint: Path | None,
    side: int,
    steps: tuple[int, int],
    repeats: int,
    guidance: float,
    scheduler: str,
    threads: int,
    openvino_python: str | None,
    out: Path | None,
    peers: tuple[str, ...] = PEERS,
    exported: Path | None = None,
    concurrency_levels: tuple[int, ...] = CONCURRENCY,
    components: str = "onnx",
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-checkpoint-") as folder:
        chosen = checkpoint or write_random_checkpoint(Path(folder) / preset, preset)  # type: ignore[arg-type]
        figures = measure(
            chosen,
            side,
            steps,
            repeats,
            guidance,
            scheduler,
            threads,
            openvino_python,
            peers,
            print,
            exported,
            concurrency_levels,
            components,
        )
    figures["preset"] = None if checkpoint else preset
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(figures, indent=2) + "\n")
        size = PRESET_TITLES.get(str(figures["preset"]), f"checkpoint {checkpoint}")
        (out / "report.md").write_text(markdown(figures, f"Stable Diffusion on CPU, {size}, {side}²"))
    return figures
