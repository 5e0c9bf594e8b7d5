"""The shipped demo checkpoints do what demo/README.md claims, loaded the way a user loads
them (`prodgen-export <zoo model> --checkpoint demo/weights/...`: the zoo's checkpoint loading),
measured here with numpy, never by the demo's own evaluation code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from demo.catalogue import CATEGORIES, catalogue
from demo.looks import catalogue_look
from demo.train_cutout import composites, held_out_backgrounds
from prodgen import zoo
from prodgen.seeding import latents_from_seed
from prodgen.zoo.loading import serving_module

WEIGHTS = Path(__file__).parents[2] / "demo" / "weights"
LOOK_CLAIMED_PSNR_DB = 23.37
"""demo/README.md's claim for the look network on the held-out photo chelsea (full size)."""


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def run(graph: torch.nn.Module, *inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return graph(*(torch.from_numpy(x) for x in inputs)).numpy()


def test_upscaler_beats_bicubic_on_a_held_out_photo() -> None:
    graph = serving_module(zoo.get("srvgg-x2-small"), WEIGHTS / "srvgg-x2-demo.safetensors")
    high = skimage.data.coffee()[100:292, 150:438]  # cup and saucer rim, wood grain
    low = np.array(Image.fromarray(high).resize((144, 96), Image.Resampling.BICUBIC))
    bicubic = np.asarray(Image.fromarray(low).resize((288, 192), Image.Resampling.BICUBIC))
    upscaled = run(graph, low[None])[0]
    assert upscaled.shape == high.shape
    assert psnr(upscaled, high) > psnr(bicubic, high) + 0.1


def test_cutout_network_finds_products_on_held_out_backgrounds() -> None:
    """The issue's bar for the demo cutout: IoU ≥ 0.95 on composites over photos it never saw."""
    graph = serving_module(zoo.get("u2netp-demo"), WEIGHTS / "cutout.safetensors")
    pictures, coverages = composites(np.random.default_rng(1), held_out_backgrounds(), 48)
    mattes = run(graph, pictures)[..., 0]
    assert mattes.dtype == np.uint8 and mattes.shape == coverages.shape
    product, silhouette = mattes >= 128, coverages >= 0.5
    iou = (product & silhouette).sum() / (product | silhouette).sum()
    assert iou >= 0.95


def test_look_network_reproduces_the_look_on_a_held_out_photo() -> None:
    graph = serving_module(zoo.get("fast-neural-style"), WEIGHTS / "catalogue-look.safetensors")
    photo = skimage.data.chelsea()
    target = catalogue_look(photo)
    styled = run(graph, photo[None])[0]
    assert psnr(styled, target) >= LOOK_CLAIMED_PSNR_DB - 0.05
    assert psnr(styled, target) > psnr(photo, target) + 2.0


def _foreground(images: np.ndarray) -> np.ndarray:
    """Pixels that differ clearly from each picture's light background (its top-left corner)."""
    corner = images[:, :2, :2].astype(np.float64).mean(axis=(1, 2))
    return np.abs(images.astype(np.float64) - corner[:, None, None]).sum(-1) > 90


@pytest.fixture(scope="module")
def generated() -> np.ndarray:
    """16 pictures per category, (categories, 16, 64, 64, 3), the same 16 latents for each."""
    graph = serving_module(zoo.get("catalogue-dcgan"), WEIGHTS / "catalogue-dcgan.safetensors")
    z = latents_from_seed(100, 16, 100)
    return np.stack([run(graph, z, np.full((16, 1), k, dtype=np.int64)) for k in range(len(CATEGORIES))])


def test_generator_draws_the_category_it_is_asked_for(generated: np.ndarray) -> None:
    """Each category's mean silhouette from the generator correlates best with the same
    category's mean silhouette in a freshly rendered catalogue (by chance: one in six)."""
    rendered, labels = catalogue(40, seed=12345)
    rendered_masks = np.stack([_foreground(rendered[labels == k]).mean(0).ravel() for k in range(len(CATEGORIES))])
    generated_masks = np.stack([_foreground(pictures).mean(0).ravel() for pictures in generated])
    correlation = np.corrcoef(generated_masks, rendered_masks)[: len(CATEGORIES), len(CATEGORIES) :]
    matched = correlation.argmax(axis=1) == np.arange(len(CATEGORIES))
    assert matched.sum() >= len(CATEGORIES) - 1, correlation.round(2)


def test_same_latent_different_category_gives_a_different_picture(generated: np.ndarray) -> None:
    means = generated.astype(np.float64).mean(axis=1)
    within = np.abs(generated[:, :8].astype(np.float64).mean(1) - generated[:, 8:].astype(np.float64).mean(1)).mean()
    between = min(np.abs(means[a] - means[b]).mean() for a in range(len(means)) for b in range(a + 1, len(means)))
    assert between > within


def test_diffusion_folder_loads_as_prodgen_export_loads_a_checkpoint() -> None:
    """The shipped save_pretrained folder passes `prodgen-export stable-diffusion`'s loading checks,
    as FP32 modules, with a word-level tokenizer that knows every caption word."""
    from demo.captioned_catalogue import SIDE, caption_words
    from prodgen.zoo.stable_diffusion import load_stable_diffusion
    from prodgen.zoo.stable_diffusion_graphs import picture_bounds

    model = load_stable_diffusion(WEIGHTS / "catalogue-diffusion")
    for module in (model.unet, model.vae, model.text_encoder):
        assert {parameter.dtype for parameter in module.parameters()} == {torch.float32}
    assert not model.inpainting and picture_bounds(model).opt_side == SIDE
    unknown = model.tokenizer.unk_token_id
    for word in caption_words():
        assert unknown not in model.tokenizer(word).input_ids[1:-1]
        assert len(model.tokenizer(word).input_ids) == 3
