"""Train the demo style network: zoo `fast-neural-style` (Johnson et al. TransformerNet) to
reproduce the warm catalogue look of `demo/looks.py`.

Random 48² crops of scikit-image's public-domain / CC0 photographs (some first shrunk, for
scale variety), each paired with the look applied to that crop; MSE loss, Adam. The network
is fully convolutional, so it applies to any photo size. Evaluated on the held-out photos at
full size: PSNR of the served graph (uint8 in and out, loaded from the shipped file) against
the look computed by `catalogue_look`.

    python -m demo.train_look
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from demo.common import psnr, save_demo_weights, seed_everything, training_steps, write_record
from demo.looks import MID_TONE, catalogue_look
from demo.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, random_crop, train_photos
from prodgen import zoo
from prodgen.photos import photograph
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.transformer_net import TransformerNet

NAME = "catalogue-look"
ARCHITECTURE = "fast-neural-style"
SEED = 0
STEPS = 2000
BATCH = 4
CROP = 48
LEARNING_RATE = 1e-3
OUTPUT_GAIN = 80.0
"""Upstream's init times this gives an output spread near the look's (255 · SPREAD ≈ 54)."""


def shrunk(photo: np.ndarray, factor: float) -> np.ndarray:
    height, width = photo.shape[:2]
    size = (round(width * factor), round(height * factor))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC))


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()


def start_at_the_look_scale(network: torch.nn.Module) -> None:
    """Upstream's init puts the output near 0 with a spread of about 1 on a 0..255 scale; Adam's
    small steps would take thousands of steps to reach the look's mid-tone and spread, so the
    last layer starts there: bias at the look's mid-tone, weights scaled towards its spread."""
    assert isinstance(network, TransformerNet)
    with torch.no_grad():
        last = network.deconv3.conv2d
        assert last.bias is not None
        last.bias.copy_(torch.from_numpy(255.0 * MID_TONE))
        last.weight.mul_(OUTPUT_GAIN)


def train() -> torch.nn.Module:
    rng = seed_everything(SEED)
    network = instantiate(zoo.get(ARCHITECTURE), seed=SEED).train()
    start_at_the_look_scale(network)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS)
    photos = [scaled for photo in train_photos() for scaled in (photo, shrunk(photo, 0.5))]
    for step, progress, task in training_steps(STEPS, "catalogue look"):
        crops = [random_crop(rng, photos, CROP) for _ in range(BATCH)]
        inputs, targets = to_tensor(crops), to_tensor([catalogue_look(crop) for crop in crops])
        loss = F.mse_loss(network(inputs) / 255.0, targets / 255.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 25 == 0:
            progress.update(task, status=f"PSNR {-10 * np.log10(loss.item()):.1f} dB")
    return network.eval()


def evaluate(checkpoint: Path) -> dict[str, dict[str, float]]:
    """PSNR against the look on each held-out photo: the shipped network's and, as the
    reference point, the untouched photo's."""
    graph = serving_module(zoo.get(ARCHITECTURE), checkpoint)
    results = {}
    for name in HELD_OUT_PHOTOS:
        photo = photograph(name)
        target = catalogue_look(photo)
        with torch.no_grad():
            styled = graph(torch.from_numpy(photo)[None]).numpy()[0]
        results[name] = {
            "psnr_model_db": round(psnr(styled, target), 3),
            "psnr_unstyled_photo_db": round(psnr(photo, target), 3),
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
        "target": "demo.looks.catalogue_look",
        "loss": "MSE",
        "optimizer": f"Adam lr {LEARNING_RATE}, cosine",
        "train_photos": TRAIN_PHOTOS,
        "held_out_photos": HELD_OUT_PHOTOS,
        "held_out": results,
    }
    write_record(NAME, record, train_seconds)
    for name, numbers in results.items():
        print(
            f"{name}: network {numbers['psnr_model_db']} dB to the look "
            f"(the unstyled photo: {numbers['psnr_unstyled_photo_db']} dB)"
        )
    print(f"wrote {checkpoint} ({train_seconds:.0f} s training)")


if __name__ == "__main__":
    main()
