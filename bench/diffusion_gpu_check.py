"""The Stable-Diffusion GPU check's last part (docker/gpu_check_diffusion.sh): the pipeline on its
TensorRT plans against the same pipeline on its FP32 components, on one GPU Triton.

    python -m prodgen.bench.diffusion_gpu_check --url localhost:8001 --repository models --name gpu_check

Publishes `NAME_on_trt`, a copy of the pipeline `NAME` pointed at the `_trt` components
(prodgen.model_repository.pipeline_components), loads it (the server runs with explicit model
control), draws the same seeded pictures on both, checks every TensorRT picture against its FP32
twin (PSNR at least `--min-psnr`), then times both, interleaved. Exit status 1 when a picture is
outside the gate. It needs a GPU Triton serving the repository; nothing here runs it on this CPU
machine's embedded server, which cannot load plans.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from prodgen.bench.stats import percentile
from prodgen.client import ProdgenClient, Sampling
from prodgen.export.fidelity import psnr_db
from prodgen.model_repository.config import parse_pbtxt, to_pbtxt
from prodgen.model_repository.pipeline_components import switch_components
from prodgen.model_repository.publish import CONFIG_FILE, write_text_atomically

PROMPT = "a studio photo of a red sneaker on a white table"
SEEDS = (0, 1, 2, 3)
MIN_PSNR_DB = 30.0
"""FP16 plans against FP32 over a whole denoising run: a first gate, to be set from measured pictures."""


def publish_trt_pipeline(repository: Path, name: str) -> str:
    """`NAME_on_trt`: the pipeline's files and config, renamed and pointed at the `_trt` components."""
    copy = f"{name}_on_trt"
    target = repository / copy
    staging = repository / f".{copy}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(repository / name, staging)
    config = parse_pbtxt((staging / CONFIG_FILE).read_text())
    config.name = copy
    write_text_atomically(staging / CONFIG_FILE, to_pbtxt(config))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    switch_components(repository, copy, "trt")
    return copy


def _draw(client: ProdgenClient, model: str, seed: int, steps: int, side: int) -> tuple[float, np.ndarray]:
    began = time.perf_counter()
    image = client.txt2img(model, PROMPT, Sampling(seed=seed, steps=steps, scheduler="ddim"), side, side)[0]
    return 1000 * (time.perf_counter() - began), image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="localhost:8001")
    parser.add_argument("--repository", type=Path, required=True, help="the repository the GPU Triton serves")
    parser.add_argument("--name", required=True, help="the FP32 pipeline model")
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--min-psnr", type=float, default=MIN_PSNR_DB)
    args = parser.parse_args()
    import tritonclient.grpc as grpcclient

    trt = publish_trt_pipeline(args.repository, args.name)
    control = grpcclient.InferenceServerClient(args.url)
    control.load_model(trt)
    control.close()
    figures: dict[str, object] = {"side": args.side, "steps": args.steps, "pipelines": [args.name, trt]}
    with ProdgenClient(args.url, timeout_s=600) as client:
        psnr = {}
        for seed in SEEDS:
            reference = _draw(client, args.name, seed, args.steps, args.side)[1]
            psnr[seed] = psnr_db([reference], [_draw(client, trt, seed, args.steps, args.side)[1]])
        figures["psnr_db_by_seed"] = psnr
        samples: dict[str, list[float]] = {args.name: [], trt: []}
        for _ in range(args.repeats):
            for model in samples:
                samples[model].append(_draw(client, model, 0, args.steps, args.side)[0])
        figures["median_ms"] = {model: percentile(values, 50) for model, values in samples.items()}
        figures["samples_ms"] = samples
    print(json.dumps(figures, indent=2))
    worst = min(psnr.values())
    if worst < args.min_psnr:
        print(
            f"Error: a TensorRT picture is {worst:.1f} dB from its FP32 twin (gate {args.min_psnr:g} dB)",
            file=sys.stderr,
        )
        raise SystemExit(1)


if __name__ == "__main__":
    main()
