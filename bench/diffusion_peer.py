"""One peer of `prodgen-bench diffusion`, in a process of its own: it loads a pipeline, then draws
pictures on request, so that its memory is its own and its Python environment may differ.

    PYTHON diffusion_peer.py --runner diffusers|openvino|openvino-static|direct --checkpoint DIR ...

Requests arrive on stdin as JSON lines {"seed", "steps", "latents": .npy path, "out": .npy path};
each answer is one JSON line {"ok": true} once the uint8 picture (H, W, 3) is saved at "out", or
{"error": "..."}. The first line written is {"ready": true} (or {"error": ...}). The initial noise
comes from the bench (prodgen's seeding) as `latents`, so every peer draws the same picture for
a seed. Only `direct` imports prodgen: `openvino` runs in optimum-intel's own environment (numpy 2,
its own diffusers), which prodgen's serving environment cannot hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Draw = Callable[[int, int, np.ndarray], np.ndarray]
"""(seed, steps, latents) → uint8 picture (H, W, 3)."""


def _diffusers_scheduler(pipeline: Any, scheduler: str) -> None:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    chosen = {"ddim": DDIMScheduler, "euler": EulerDiscreteScheduler, "dpmpp-2m": DPMSolverMultistepScheduler}
    pipeline.scheduler = chosen[scheduler].from_config(pipeline.scheduler.config)


def _to_uint8(images: Any) -> np.ndarray:
    return np.asarray(np.round(np.clip(np.asarray(images)[0], 0, 1) * 255), dtype=np.uint8)


def _pipeline_draw(pipeline: Any, args: argparse.Namespace) -> Draw:
    """A diffusers-style pipeline (diffusers' own or optimum-intel's) drawing from the bench's latents."""
    import torch  # optimum-intel 2.2 moves the given latents with `.to`: a torch tensor, not numpy

    _diffusers_scheduler(pipeline, args.scheduler)
    pipeline.set_progress_bar_config(disable=True)

    def draw(seed: int, steps: int, latents: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            result = pipeline(
                args.prompt,
                height=args.side,
                width=args.side,
                num_inference_steps=steps,
                guidance_scale=args.guidance,
                latents=torch.from_numpy(latents),
                output_type="np",
            )
        return _to_uint8(result.images)

    return draw


def _diffusers(args: argparse.Namespace) -> Draw:
    import torch
    from diffusers import StableDiffusionPipeline

    torch.set_num_threads(args.threads)
    pipeline = StableDiffusionPipeline.from_pretrained(
        str(args.checkpoint), safety_checker=None, requires_safety_checker=False
    )
    return _pipeline_draw(pipeline, args)


def _openvino(args: argparse.Namespace, static: bool) -> Draw:
    from optimum.intel import OVStableDiffusionPipeline  # type: ignore[import-not-found]  # its own environment

    config = {"INFERENCE_NUM_THREADS": str(args.threads), "PERFORMANCE_HINT": "LATENCY"}
    pipeline = OVStableDiffusionPipeline.from_pretrained(
        str(args.checkpoint), export=True, compile=False, ov_config=config
    )
    if static:
        pipeline.reshape(batch_size=1, height=args.side, width=args.side, num_images_per_prompt=1)
    pipeline.compile()
    return _pipeline_draw(pipeline, args)


def _direct(args: argparse.Namespace) -> Draw:
    from prodgen.model_repository.direct_pipeline import DirectPipeline

    pipeline = DirectPipeline(args.repository, args.name, args.threads)
    return lambda seed, steps, _latents: pipeline.picture(
        args.prompt, seed, steps, args.guidance, args.scheduler, args.side
    )[0]


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runner", choices=("diffusers", "openvino", "openvino-static", "direct"), required=True)
    parser.add_argument("--checkpoint", type=Path, help="a save_pretrained folder (diffusers, openvino)")
    parser.add_argument("--repository", type=Path, help="prodgen's model repository (direct)")
    parser.add_argument("--name", help="the pipeline model's name in --repository (direct)")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--side", type=int, required=True)
    parser.add_argument("--guidance", type=float, required=True)
    parser.add_argument("--scheduler", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    try:
        if args.runner == "diffusers":
            draw = _diffusers(args)
        elif args.runner == "direct":
            draw = _direct(args)
        else:
            draw = _openvino(args, static=args.runner == "openvino-static")
    except Exception as error:  # noqa: BLE001 - the bench reports a peer that cannot start and goes on
        _say({"error": f"{type(error).__name__}: {error}"})
        return
    _say({"ready": True})
    for line in sys.stdin:
        request = json.loads(line)
        try:
            image = draw(int(request["seed"]), int(request["steps"]), np.load(request["latents"]))
            np.save(request["out"], image)
            _say({"ok": True})
        except Exception as error:  # noqa: BLE001 - one failed picture is reported, the peer stays up
            _say({"error": f"{type(error).__name__}: {error}"})


if __name__ == "__main__":
    main()
