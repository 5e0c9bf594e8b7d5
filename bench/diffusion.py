"""Served Stable-Diffusion pipeline against diffusers' own pipeline, in one run on one machine.

    python -m prodgen.bench.diffusion --preset tiny --side 32 --steps 2,6 --repeats 3
    python -m prodgen.bench.diffusion --preset sd15 --side 256 --steps 2,4 --repeats 2

Writes a random-weight checkpoint of the preset (or takes `--checkpoint`), exports it,
serves it on the embedded Triton server and times one picture end to end at two step
counts, the served call (gRPC → BLS → ONNX Runtime) and diffusers' `StableDiffusionPipeline`
(PyTorch eager) interleaved, so both see the same machine load. Per step is the difference
of the two medians over the difference of the steps; what remains at zero steps is the
text encoder, the VAE decoder and the transport (per picture − steps × per step).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from prodgen.bench.machine import describe_machine
from prodgen.bench.stats import percentile
from prodgen.client import ProdgenClient, Sampling
from prodgen.export.stable_diffusion import export_stable_diffusion
from prodgen.model_repository.config import BatchingOptions
from prodgen.seeding import latent_from_seed
from prodgen.serve.options import free_port
from prodgen.serve.server import EmbeddedServer, ServerOptions
from prodgen.zoo.stable_diffusion_random import write_random_checkpoint

PROMPT = "a studio photo of a red sneaker on a white table"
NAME = "sd_bench"


@dataclass(frozen=True)
class RunnerFigures:
    runner: str
    per_picture_ms: dict[int, float]
    """Median end-to-end latency of one picture, by step count."""
    per_step_ms: float
    fixed_ms: float
    samples: dict[int, list[float]]


def _figures(runner: str, samples: dict[int, list[float]]) -> RunnerFigures:
    low, high = sorted(samples)
    medians = {steps: percentile(values, 50) for steps, values in samples.items()}
    per_step = (medians[high] - medians[low]) / (high - low)
    return RunnerFigures(runner, medians, per_step, medians[low] - low * per_step, samples)


def measure(
    checkpoint: Path, side: int, steps: tuple[int, int], repeats: int, guidance: float, scheduler: str, threads: int
) -> dict[str, object]:
    """Export and serve `checkpoint`, then time served and diffusers' pictures interleaved.

    Both runtimes get the same intra-op thread count: on a machine shared with other work,
    PyTorch's OpenMP pool spinning on more threads than it gets measured 15–80× slower here
    (tiny UNet: 42 ms with 1 thread, 0.7–3.7 s with 2 under a load average of 8)."""
    torch.set_num_threads(threads)
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, StableDiffusionPipeline

    chosen = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpmpp-2m": DPMSolverMultistepScheduler}
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-sd-") as work:
        repository = Path(work) / "models"
        started = time.perf_counter()
        export_stable_diffusion(checkpoint, repository, NAME, BatchingOptions(max_batch_size=1))
        export_s = time.perf_counter() - started
        reference = StableDiffusionPipeline.from_pretrained(
            str(checkpoint), safety_checker=None, requires_safety_checker=False
        )
        reference.scheduler = chosen[scheduler].from_config(reference.scheduler.config)
        reference.set_progress_bar_config(disable=True)
        factor = 2 ** (len(reference.vae.config.block_out_channels) - 1)
        shape = (1, 4, side // factor, side // factor)
        noise = torch.from_numpy(latent_from_seed(0, int(np.prod(shape))).reshape(shape))
        served: dict[int, list[float]] = {count: [] for count in steps}
        direct: dict[int, list[float]] = {count: [] for count in steps}
        with (
            EmbeddedServer(
                ServerOptions(
                    repository,
                    grpc_port=free_port(),
                    http_port=free_port(),
                    metrics_port=free_port(),
                    intra_op_threads=threads,
                )
            ) as server,
            ProdgenClient(server.options.grpc_url, timeout_s=3600) as client,
        ):
            for round_index in range(repeats + 1):  # round 0 warms both up and is not counted
                for count in steps:
                    sampling = Sampling(seed=0, steps=count, guidance=guidance, scheduler=scheduler)
                    began = time.perf_counter()
                    client.txt2img(NAME, PROMPT, sampling, side, side)
                    served_ms = 1000 * (time.perf_counter() - began)
                    began = time.perf_counter()
                    with torch.no_grad():
                        reference(
                            PROMPT,
                            height=side,
                            width=side,
                            num_inference_steps=count,
                            guidance_scale=guidance,
                            latents=noise,
                            output_type="np",
                        )
                    direct_ms = 1000 * (time.perf_counter() - began)
                    if round_index:
                        served[count].append(served_ms)
                        direct[count].append(direct_ms)
                    print(f"round {round_index} steps {count}: served {served_ms:.0f} ms, diffusers {direct_ms:.0f} ms")
    return {
        "checkpoint": str(checkpoint),
        "side": side,
        "scheduler": scheduler,
        "guidance": guidance,
        "export_s": export_s,
        "intra_op_threads": threads,
        "machine": describe_machine(),
        "served": asdict(_figures("served (gRPC → BLS → ONNX Runtime)", served)),
        "diffusers": asdict(_figures("diffusers StableDiffusionPipeline (PyTorch eager)", direct)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "sd15"), default="tiny", help="random-weight checkpoint size")
    parser.add_argument("--checkpoint", type=Path, help="a save_pretrained folder instead of a random preset")
    parser.add_argument("--side", type=int, default=32, help="picture side in pixels")
    parser.add_argument("--steps", default="2,6", help="two step counts, e.g. 2,6")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", choices=("ddim", "euler", "dpmpp-2m"), default="ddim")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads for PyTorch and ONNX Runtime alike")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args()
    low, high = (int(part) for part in args.steps.split(","))
    with tempfile.TemporaryDirectory(prefix="prodgen-bench-checkpoint-") as folder:
        checkpoint = args.checkpoint or write_random_checkpoint(Path(folder) / args.preset, args.preset)
        figures = measure(checkpoint, args.side, (low, high), args.repeats, args.guidance, args.scheduler, args.threads)
    figures["preset"] = None if args.checkpoint else args.preset
    text = json.dumps(figures, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    for key in ("served", "diffusers"):
        runner = figures[key]
        assert isinstance(runner, dict)
        pictures = ", ".join(f"{count} steps {ms:.0f} ms" for count, ms in runner["per_picture_ms"].items())
        print(
            f"{runner['runner']}: per picture {pictures}; per step {runner['per_step_ms']:.1f} ms; rest {runner['fixed_ms']:.0f} ms"
        )


if __name__ == "__main__":
    main()
