"""Train the demo cutout network: zoo `u2netp-demo` (U²-NetP reading the photo at 64²) on
product renders composited onto crops of scikit-image's photographs.

Data: one product of `demo/catalogue.py`'s six categories per picture, drawn with PIL in a
random colour with a soft vertical shading, at a random size and place, its silhouette the
target matte; the background a random crop of a training photo (`demo/photos.py`), flipped
and rotated, under a random brightness. The network sees each picture as the served graph
feeds it (`U2NetCutout.network_input`), so training and serving share one preprocessing.
Loss: upstream's `muti_bce_loss_fusion` (binary cross-entropy on the fused map and each of
the six side maps) plus a soft IoU loss on the fused map. Evaluated on held-out composites (backgrounds from the held-out photos,
another seed), through the served graph loaded from the shipped file as `prodgen-export`
loads it: IoU of the matte ≥ 128 against the drawn silhouette.

    python -m demo.train_cutout
"""

from __future__ import annotations

import colorsys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from demo.catalogue import CATEGORIES, draw_product
from demo.common import save_demo_weights, seed_everything, training_steps, write_record
from demo.photos import HELD_OUT_PHOTOS, TRAIN_PHOTOS, random_crop, train_photos
from prodgen import zoo
from prodgen.photos import photograph
from prodgen.zoo.cutout_graphs import U2NetCutout
from prodgen.zoo.loading import instantiate, serving_module

NAME = "cutout"
ARCHITECTURE = "u2netp-demo"
SEED = 0
SIDE = 64
"""The network's input side (zoo `u2netp-demo`): sized so training fits minutes on two shared cores."""
PICTURE = 2 * SIDE
"""The composites' side: larger than the network's, so the served graph's anti-aliased resize is exercised."""
STEPS = 2000
BATCH = 8
LEARNING_RATE = 3e-3
HELD_OUT_COUNT = 48
PRODUCT_LEVEL = 128


def composite(rng: np.random.Generator, backgrounds: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A product drawn over a photo crop: uint8 RGB (PICTURE, PICTURE, 3) and its silhouette's coverage
    of each pixel, float (PICTURE, PICTURE) in 0..1 (drawn at 2× and box-filtered, for soft edges)."""
    draw_side = 2 * PICTURE
    background = random_crop(rng, backgrounds, draw_side).astype(np.float32) * rng.uniform(0.6, 1.2)
    size = rng.uniform(0.45, 0.85) * draw_side
    left = rng.uniform(0.02, 0.98 - size / draw_side) * draw_side
    top = rng.uniform(0.02, 0.98 - size / draw_side) * draw_side
    category = int(rng.integers(len(CATEGORIES)))
    red, green, blue = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.2, 0.95), rng.uniform(0.25, 0.95))
    colour = (round(255 * red), round(255 * green), round(255 * blue))
    product = Image.new("RGB", (draw_side, draw_side), colour)
    draw_product(ImageDraw.Draw(product), category, left, top, size, colour)
    silhouette = Image.new("RGB", (draw_side, draw_side), (0, 0, 0))  # RGB: a shoe's sole has its own colour
    draw_product(ImageDraw.Draw(silhouette), category, left, top, size, (255, 255, 255))
    alpha = (np.asarray(silhouette).max(axis=2) > 0).astype(np.float32)[..., None]
    shading = np.linspace(rng.uniform(0.75, 1.0), rng.uniform(1.0, 1.25), draw_side, dtype=np.float32)[:, None, None]
    pixels = np.clip(np.asarray(product, dtype=np.float32) * shading, 0, 255) * alpha + background * (1 - alpha)
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).resize((PICTURE, PICTURE), Image.Resampling.BOX)
    coverage = Image.fromarray(alpha[..., 0]).resize((PICTURE, PICTURE), Image.Resampling.BOX)
    return np.asarray(picture), np.asarray(coverage)


def composites(rng: np.random.Generator, backgrounds: list[np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    pictures, masks = zip(*(composite(rng, backgrounds) for _ in range(count)), strict=True)
    return np.stack(pictures), np.stack(masks)


def held_out_backgrounds() -> list[np.ndarray]:
    """The held-out photographs, enlarged (PIL bicubic) where a side is short of a composite's drawing side."""
    photos = []
    for name in HELD_OUT_PHOTOS:
        photo = photograph(name)
        scale = max(1.0, 2 * PICTURE / min(photo.shape[:2]))
        size = (round(photo.shape[1] * scale), round(photo.shape[0] * scale))
        photos.append(np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.BICUBIC)))
    return photos


def soft_iou_loss(probability: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - IoU of the fused map with the target, per picture, averaged: pulls edges sharp sooner than BCE alone."""
    intersection = (probability * target).sum(dim=(1, 2, 3))
    union = (probability + target - probability * target).sum(dim=(1, 2, 3))
    return (1.0 - intersection / union.clamp(min=1e-6)).mean()


def train() -> torch.nn.Module:
    rng = seed_everything(SEED)
    model = zoo.get(ARCHITECTURE)
    network = instantiate(model, seed=SEED).train()
    preprocess = U2NetCutout(torch.nn.Identity(), side=SIDE)
    optimizer = torch.optim.Adam(network.parameters(), lr=LEARNING_RATE)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LEARNING_RATE, total_steps=STEPS, pct_start=0.1)
    backgrounds = train_photos()
    for step, progress, task in training_steps(STEPS, "cutout"):
        pictures, masks = composites(rng, backgrounds, BATCH)
        with torch.no_grad():
            inputs = preprocess.network_input(torch.from_numpy(pictures))
        target = F.avg_pool2d(torch.from_numpy(masks)[:, None], PICTURE // SIDE)
        maps = network(inputs)
        loss = sum(F.binary_cross_entropy(probability, target) for probability in maps) + soft_iou_loss(maps[0], target)
        assert isinstance(loss, torch.Tensor)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            progress.update(task, status=f"BCE {loss.item():.3f}")
    return network.eval()


def evaluate(checkpoint: Path) -> dict[str, float]:
    """IoU of the served graph's mattes (≥ 128) against the drawn silhouettes (≥ half covered) on
    held-out composites, at the composites' own size: overall, per picture on average, the lowest."""
    graph = serving_module(zoo.get(ARCHITECTURE), checkpoint)
    pictures, coverages = composites(np.random.default_rng(SEED + 1), held_out_backgrounds(), HELD_OUT_COUNT)
    masks = coverages >= 0.5
    with torch.no_grad():
        mattes = graph(torch.from_numpy(pictures)).numpy()[..., 0] >= PRODUCT_LEVEL
    intersection = (mattes & masks).sum(axis=(1, 2))
    union = (mattes | masks).sum(axis=(1, 2))
    return {
        "iou": round(float(intersection.sum() / union.sum()), 4),
        "mean_iou": round(float(np.mean(intersection / union)), 4),
        "lowest_iou": round(float(np.min(intersection / union)), 4),
        "pictures": HELD_OUT_COUNT,
    }


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
        "side": SIDE,
        "picture_side": PICTURE,
        "data": "demo/catalogue.py products (shaded, random colour, size, place) over photo crops",
        "loss": "BCE on the fused and six side maps (upstream's muti_bce_loss_fusion) + soft IoU on the fused map",
        "optimizer": f"Adam, one-cycle to lr {LEARNING_RATE}",
        "train_photos": TRAIN_PHOTOS,
        "held_out_photos": HELD_OUT_PHOTOS,
        "held_out": results,
    }
    write_record(NAME, record, train_seconds)
    print(f"held-out composites: IoU {results['iou']} (mean {results['mean_iou']}, lowest {results['lowest_iou']})")
    print(f"wrote {checkpoint} ({train_seconds:.0f} s training)")


if __name__ == "__main__":
    main()
