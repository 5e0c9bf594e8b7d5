"""Train the demo ×2 upscaler: zoo `srvgg-x2-small` (Real-ESRGAN SRVGGNetCompact) on
scikit-image's public-domain / CC0 photographs.

Degradation: PIL bicubic ×½ downscaling of random 64² crops; L1 loss against the crop; Adam.
The network adds the nearest-upsampled input to its output, so it learns the residual; it
starts as cubic interpolation (`start_as_cubic_interpolation`) and only has to improve on it.
Evaluated on the held-out photos: PSNR of the served graph (uint8 in and out, loaded from the
shipped file like `prodgen-export` loads it) against PSNR of PIL bicubic upscaling.

    python -m demo.train_upscaler
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from demo.common import psnr, save_demo_weights, seed_everything, training_steps, write_record
from demo.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, random_crop, train_photos
from prodgen import zoo
from prodgen.photos import photograph
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.srvgg import SRVGGNetCompact

NAME = "srvgg-x2-demo"
ARCHITECTURE = "srvgg-x2-small"
SEED = 0
STEPS = 1000
BATCH = 16
CROP = 64
LEARNING_RATE = 5e-4


def downscale(image: np.ndarray) -> np.ndarray:
    """The degradation: PIL bicubic ×½ (antialiased), uint8 in and out."""
    height, width = image.shape[:2]
    return np.array(Image.fromarray(image).resize((width // 2, height // 2), Image.Resampling.BICUBIC))


def bicubic_up(image: np.ndarray) -> np.ndarray:
    """The baseline the network must beat: PIL bicubic ×2."""
    height, width = image.shape[:2]
    return np.asarray(Image.fromarray(image).resize((width * 2, height * 2), Image.Resampling.BICUBIC))


def _cubic_taps(offset: float) -> np.ndarray:
    """Keys' cubic (a = -0.5, PIL's) weights of the LR pixels left, at and right of an output
    pixel `offset` LR pixels from its LR pixel's centre; the fourth tap dropped, renormalised."""

    def weight(d: float) -> float:
        d = abs(d)
        return 1.5 * d**3 - 2.5 * d**2 + 1 if d <= 1 else -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2

    taps = np.array([weight(offset + 1), weight(offset), weight(offset - 1)])
    return taps / taps.sum()


def start_as_cubic_interpolation(network: torch.nn.Module) -> None:
    """A good init: with PReLU slopes at 1 the stack is linear, so RGB can pass through the
    first three features unchanged and the last conv can add exactly (3×3-support) cubic
    interpolation minus the nearest-neighbour base. The other features start small and random,
    so training has something to grow; from here, training only has to improve on cubic."""
    assert isinstance(network, SRVGGNetCompact)
    upscale = network.upscale
    offsets = [(2 * k + 1) / (2 * upscale) - 0.5 for k in range(upscale)]
    convs = [layer for layer in network.body if isinstance(layer, torch.nn.Conv2d)]
    with torch.no_grad():
        for layer in network.body:
            if isinstance(layer, torch.nn.PReLU):
                layer.weight.fill_(1.0)
        for conv in convs:
            conv.weight.mul_(0.1)
            assert conv.bias is not None
            conv.bias.zero_()
        for conv in convs[:-1]:
            for channel in range(3):
                conv.weight[channel, channel, 1, 1] += 1.0
        last = convs[-1]
        for channel in range(3):
            for dy, oy in enumerate(offsets):
                for dx, ox in enumerate(offsets):
                    kernel = np.outer(_cubic_taps(oy), _cubic_taps(ox))
                    kernel[1, 1] -= 1.0
                    last.weight[channel * upscale * upscale + dy * upscale + dx, channel] += torch.from_numpy(
                        kernel
                    ).float()


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def batch(rng: np.random.Generator, photos: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    crops = [random_crop(rng, photos, CROP) for _ in range(BATCH)]
    return to_tensor([downscale(crop) for crop in crops]), to_tensor(crops)


def train() -> torch.nn.Module:
    rng = seed_everything(SEED)
    network = instantiate(zoo.get(ARCHITECTURE), seed=SEED).train()
    start_as_cubic_interpolation(network)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS)
    photos = train_photos()
    for step, progress, task in training_steps(STEPS, "upscaler"):
        low, high = batch(rng, photos)
        loss = F.l1_loss(network(low), high)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 50 == 0:
            progress.update(task, status=f"L1 {loss.item():.4f}")
    return network.eval()


def evaluate(checkpoint: Path) -> dict[str, dict[str, float]]:
    """PSNR against each held-out photo of the shipped network (served graph) and of bicubic."""
    graph = serving_module(zoo.get(ARCHITECTURE), checkpoint)
    results = {}
    for name in HELD_OUT_PHOTOS:
        photo = photograph(name)
        high = photo[: photo.shape[0] // 2 * 2, : photo.shape[1] // 2 * 2]
        low = downscale(high)
        with torch.no_grad():
            upscaled = graph(torch.from_numpy(low)[None]).numpy()[0]
        model_db, bicubic_db = psnr(upscaled, high), psnr(bicubic_up(low), high)
        results[name] = {
            "psnr_model_db": round(model_db, 3),
            "psnr_bicubic_db": round(bicubic_db, 3),
            "gain_db": round(model_db - bicubic_db, 3),
        }
    return results


def main() -> None:
    started = time.perf_counter()
    network = train()
    train_seconds = time.perf_counter() - started
    checkpoint = save_demo_weights(NAME, network)
    results = evaluate(checkpoint)
    record = {
        "architecture": ARCHITECTURE,
        "seed": SEED,
        "steps": STEPS,
        "batch": BATCH,
        "crop": CROP,
        "degradation": "PIL bicubic x1/2",
        "loss": "L1",
        "optimizer": f"Adam lr {LEARNING_RATE}, cosine",
        "train_photos": TRAIN_PHOTOS,
        "held_out_photos": HELD_OUT_PHOTOS,
        "held_out": results,
    }
    write_record(NAME, record, train_seconds)
    for name, numbers in results.items():
        print(
            f"{name}: model {numbers['psnr_model_db']} dB, bicubic {numbers['psnr_bicubic_db']} dB, "
            f"gain {numbers['gain_db']:+} dB"
        )
    print(f"wrote {checkpoint} ({train_seconds:.0f} s training)")


if __name__ == "__main__":
    main()
