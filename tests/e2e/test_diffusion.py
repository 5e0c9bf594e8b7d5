"""The served Stable-Diffusion pipeline against diffusers' own pipelines, over real gRPC.

Both sides get the same checkpoint, prompt, scheduler, steps, guidance and initial noise
(prodgen's seeded noise, handed to diffusers as `latents` or through its noise function);
diffusers runs the PyTorch components, the server the exported ONNX ones through BLS.
Image latents for diffusers are the VAE posterior's mean, which is what the served VAE
encoder returns (diffusers would otherwise draw a sample from its own RNG).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from prodgen.client import ProdgenClient, Sampling
from prodgen.client.diffusion import PictureFittedWarning, PromptTruncatedWarning
from prodgen.errors import ProdgenError
from prodgen.export.fidelity import psnr_db
from prodgen.photos import photo_batch
from prodgen.seeding import latent_from_seed
from prodgen.serve.server import EmbeddedServer
from tests_support import console_script

pytestmark = pytest.mark.e2e

SCHEDULERS = ("ddim", "euler", "dpmpp-2m")
SIDE = 32
STEPS = 4
GUIDANCE = 7.5
PROMPT = "a studio photo of a red sneaker on a white table"
MIN_PSNR_DB = 40.0


def psnr(reference: np.ndarray, candidate: np.ndarray) -> float:
    assert reference.shape == candidate.shape and reference.dtype == candidate.dtype == np.uint8
    return psnr_db([reference], [candidate])


def seeded_noise(seed: int, side: int = SIDE, factor: int = 2) -> torch.Tensor:
    shape = (4, side // factor, side // factor)
    return torch.from_numpy(latent_from_seed(seed, int(np.prod(shape))).reshape(1, *shape))


def diffusers_scheduler(kind: str, config: dict) -> object:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if kind == "ddim":
        return DDIMScheduler.from_config(config)
    if kind == "euler":
        return EulerDiscreteScheduler.from_config(config)
    return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", solver_order=2)


PIPELINE_MODULES = {
    "StableDiffusionPipeline": "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion",
    "StableDiffusionImg2ImgPipeline": "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img",
    "StableDiffusionInpaintPipeline": "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint",
}


def load_reference(kind: str, folder: Path, scheduler: str) -> Any:
    import diffusers

    pipeline = getattr(diffusers, kind).from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    pipeline.scheduler = diffusers_scheduler(scheduler, pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def as_uint8(pictures: np.ndarray) -> np.ndarray:
    return (pictures * 255).round().astype(np.uint8)


def pixels_of(image: np.ndarray) -> torch.Tensor:
    """A uint8 (H, W, 3) picture as diffusers' image processor gives it to the VAE: (1, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0 * 2.0 - 1.0


def image_latents(pipeline: Any, pixels: torch.Tensor) -> torch.Tensor:
    vae = pipeline.vae
    with torch.no_grad():
        return vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor


@contextmanager
def noise_for(module_name: str, noise: torch.Tensor) -> Iterator[None]:
    """diffusers' img2img/inpaint draw their noise inside; hand them prodgen's seeded noise instead."""
    import importlib

    module = importlib.import_module(module_name)
    original = getattr(module, "randn_tensor")  # noqa: B009 - diffusers builds the module's names at run time
    setattr(module, "randn_tensor", lambda shape, **_: noise.reshape(shape).clone())  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "randn_tensor", original)  # noqa: B010


@pytest.fixture(scope="module")
def client(diffusion_server: EmbeddedServer) -> Iterator[ProdgenClient]:
    with ProdgenClient(diffusion_server.options.grpc_url, timeout_s=300) as connected:
        yield connected


def test_components_match_pytorch(diffusion_exports: dict) -> None:
    for export in diffusion_exports.values():
        for component in export.components:
            assert component.parity.passed, f"{component.name}: {component.parity.describe()}"
            print(f"{component.name}: {component.parity.describe()}")
        unet = next(c for c in export.components if c.name.endswith("_unet"))
        assert (unet.published.version_dir / "model.onnx.data").is_file(), "the UNet's weights are external data"


def diffusers_picture(
    kind: str, folder: Path, scheduler: str, seed: int, arguments: Callable[[Any], dict[str, Any]]
) -> np.ndarray:
    """diffusers' own `kind` pipeline on `folder` with prodgen's seeded noise; `arguments(pipeline)`
    gives the mode's call arguments (it may need the pipeline's VAE for image latents)."""
    pipeline = load_reference(kind, folder, scheduler)
    module = PIPELINE_MODULES[kind]
    with noise_for(module, seeded_noise(seed)):
        pictures = pipeline(PROMPT, guidance_scale=GUIDANCE, output_type="np", **arguments(pipeline)).images
    return as_uint8(pictures)


def kept_put_back(expected: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """diffusers' inpainting with the kept area (mask < 128) set back to the photo's pixels, as prodgen answers."""
    return np.where((mask < 128)[None, ..., None], photo[None], expected)


def assert_close(label: str, expected: np.ndarray, served: np.ndarray) -> None:
    value = psnr(expected, served)
    print(f"{label}: PSNR {value:.2f} dB")
    assert value >= MIN_PSNR_DB


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_txt2img_matches_diffusers(
    client: ProdgenClient, diffusion_checkpoints: dict[str, Path], scheduler: str
) -> None:
    seed = 11
    served = client.txt2img("sd", PROMPT, Sampling(seed, 1, STEPS, GUIDANCE, scheduler), SIDE, SIDE)
    expected = diffusers_picture(
        "StableDiffusionPipeline",
        diffusion_checkpoints["sd"],
        scheduler,
        seed,
        lambda _: {"height": SIDE, "width": SIDE, "num_inference_steps": STEPS, "latents": seeded_noise(seed)},
    )
    assert_close(f"txt2img {scheduler}", expected, served)


@pytest.mark.parametrize(("scheduler", "strength"), [(kind, 0.7) for kind in SCHEDULERS] + [("euler", 1.0)])
def test_img2img_matches_diffusers(
    client: ProdgenClient, diffusion_checkpoints: dict[str, Path], scheduler: str, strength: float
) -> None:
    """Strength 1 with Euler too: diffusers noises the picture to the first timestep even then."""
    seed, steps = 5, 10  # 10 × 0.7 keeps 7 steps only if the FP32 strength is read as the 0.7 sent
    photo = photo_batch(1, SIDE, SIDE)[0]
    served = client.img2img("sd", PROMPT, photo, strength, Sampling(seed, 1, steps, GUIDANCE, scheduler))
    expected = diffusers_picture(
        "StableDiffusionImg2ImgPipeline",
        diffusion_checkpoints["sd"],
        scheduler,
        seed,
        lambda pipeline: {
            "image": image_latents(pipeline, pixels_of(photo)),
            "strength": strength,
            "num_inference_steps": steps,
        },
    )
    assert_close(f"img2img {scheduler} strength {strength}", expected, served)


def square_mask(side: int = SIDE) -> np.ndarray:
    mask = np.zeros((side, side), dtype=np.uint8)
    mask[side // 4 : 3 * side // 4, side // 8 : side // 2] = 255
    return mask


def inpaint_arguments(photo: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    return {
        "image": Image.fromarray(photo),
        "mask_image": Image.fromarray(mask),
        "height": SIDE,
        "width": SIDE,
        "num_inference_steps": STEPS,
    }


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_inpaint_matches_diffusers(
    client: ProdgenClient, diffusion_checkpoints: dict[str, Path], scheduler: str
) -> None:
    """The masked picture's latents are given to diffusers (from its own formula, in float), so it does not
    draw a VAE sample; the server fills the masked area with uint8 128 where diffusers has 127.5."""
    seed = 3
    photo = photo_batch(1, SIDE, SIDE, offset=1)[0]
    mask = square_mask()
    served = client.inpaint("sd_inpaint", PROMPT, photo, mask, sampling=Sampling(seed, 1, STEPS, GUIDANCE, scheduler))
    keep = torch.from_numpy(mask < 128)[None, None]
    expected = diffusers_picture(
        "StableDiffusionInpaintPipeline",
        diffusion_checkpoints["sd_inpaint"],
        scheduler,
        seed,
        lambda pipeline: {
            **inpaint_arguments(photo, mask),
            "masked_image_latents": image_latents(pipeline, pixels_of(photo) * keep),
            "strength": 1.0,
        },
    )
    assert_close(f"inpaint {scheduler}", kept_put_back(expected, photo, mask), served)


def test_inpaint_with_a_plain_unet_matches_diffusers(
    client: ProdgenClient, diffusion_checkpoints: dict[str, Path]
) -> None:
    """A 4-channel UNet inpaints by re-noising the kept area's latents after every step, as diffusers does."""
    seed, scheduler = 9, "euler"
    photo = photo_batch(1, SIDE, SIDE, offset=3)[0]
    mask = square_mask()
    served = client.inpaint("sd", PROMPT, photo, mask, sampling=Sampling(seed, 1, STEPS, GUIDANCE, scheduler))

    def arguments(pipeline: Any) -> dict[str, Any]:
        pipeline._encode_vae_image = lambda image, generator: image_latents(pipeline, image)
        return inpaint_arguments(photo, mask)

    expected = diffusers_picture(
        "StableDiffusionInpaintPipeline", diffusion_checkpoints["sd"], scheduler, seed, arguments
    )
    assert_close(f"inpaint (4-channel UNet) {scheduler}", kept_put_back(expected, photo, mask), served)


def test_seed_gives_the_same_picture_alone_or_in_a_batch(client: ProdgenClient) -> None:
    batch = client.txt2img("sd", PROMPT, Sampling(seed=20, count=2, steps=2), SIDE, SIDE)
    alone = client.txt2img("sd", PROMPT, Sampling(seed=21, count=1, steps=2), SIDE, SIDE)
    assert batch.shape == (2, SIDE, SIDE, 3)
    np.testing.assert_array_equal(batch[1], alone[0])
    assert not np.array_equal(batch[0], batch[1])


def test_restage_keeps_the_opaque_product(client: ProdgenClient) -> None:
    photo = photo_batch(1, SIDE, SIDE, offset=2)[0]
    alpha = np.zeros((SIDE, SIDE), dtype=np.uint8)
    alpha[8:24, 10:22] = 255
    alpha[8:24, 9] = 128  # a soft edge
    cutout = np.dstack([photo, alpha])
    for model in ("sd_inpaint", "sd"):
        sampling = Sampling(seed=1, steps=3, count=2)
        result = client.restage(model, "the same product in a kitchen", cutout, sampling).images
        assert result.shape == (2, SIDE, SIDE, 3)
        opaque = alpha == 255
        for picture in result:
            np.testing.assert_array_equal(picture[opaque], photo[opaque])
            assert not np.array_equal(picture[~opaque], photo[~opaque]), "the background was regenerated"
        assert not np.array_equal(result[0], result[1]), "picture i uses seed + i"


def test_long_prompt_is_truncated_with_a_warning(client: ProdgenClient) -> None:
    with pytest.warns(PromptTruncatedWarning, match="tokens beyond"):
        client.txt2img("sd", "a red sneaker " * 40, Sampling(steps=1), SIDE, SIDE)


def test_bad_requests_get_one_clear_line_and_the_server_stays_up(client: ProdgenClient) -> None:
    photo = photo_batch(1, SIDE, SIDE)[0]
    with pytest.raises(ProdgenError, match="prompt: empty"):
        client.txt2img("sd", "  ")
    with pytest.raises(ProdgenError, match="mask: .*expected the image's size 32×32"):
        client.inpaint("sd_inpaint", PROMPT, photo, np.zeros((16, 32), dtype=np.uint8))
    with pytest.raises(ProdgenError, match="image height 30 pixels: model 'sd' takes multiples of 4"):
        client.img2img("sd", PROMPT, photo_batch(1, 30, 32)[0], fit=False)
    with pytest.raises(ProdgenError, match="inpainting model"):
        client.txt2img("sd_inpaint", PROMPT)
    with pytest.raises(ProdgenError, match="no alpha|RGBA"):
        client.restage("sd_inpaint", PROMPT, photo)
    with pytest.raises(ProdgenError, match="input 'guidance'.*expected 0..50"):
        client.infer("sd", {"prompt": np.array([[b"x"]], dtype=object), "guidance": np.array([[99.0]], np.float32)})
    assert client.txt2img("sd", PROMPT, Sampling(steps=1), SIDE, SIDE).shape == (1, SIDE, SIDE, 3)


def test_cli_writes_one_png_per_picture(diffusion_server: EmbeddedServer, tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "shoe.png"
    command = [
        console_script("prodgen"), "txt2img", "sd", PROMPT, "--seed", "4", "--steps", "2", "--count", "2",
        "--height", str(SIDE), "--width", str(SIDE), "--out", str(out), "--url", diffusion_server.options.grpc_url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pictures = [np.asarray(Image.open(tmp_path / f"shoe-{i}.png")) for i in range(2)]
    assert all(picture.shape == (SIDE, SIDE, 3) for picture in pictures)
    bad = subprocess.run(
        [
            console_script("prodgen"),
            "txt2img",
            "sd",
            PROMPT,
            "--height",
            "30",
            "--url",
            diffusion_server.options.grpc_url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "height 30 pixels" in bad.stderr and "Traceback" not in bad.stderr


# ── photos of any size: fitted to the model's bounds, answered at their own size ──

PHOTO = Path(__file__).parents[2] / "examples" / "photos" / "coffee.jpg"


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    from prodgen.client.images import read_image

    photo = read_image(PHOTO)
    assert photo.shape == (341, 512, 3)
    return photo


def test_img2img_of_a_photo_larger_than_the_model_answers_at_its_size(
    client: ProdgenClient, coffee: np.ndarray
) -> None:
    with pytest.warns(PictureFittedWarning, match="image 512×341 → 64×44 at the model"):
        result = client.img2img("sd", PROMPT, coffee, 0.5, Sampling(seed=2, steps=2))
    assert result.shape == (1, 341, 512, 3)
    assert psnr(coffee, result[0]) < 60, "the picture was re-drawn, not handed back"


def test_inpaint_of_a_photo_keeps_every_unmasked_pixel_exactly(client: ProdgenClient, coffee: np.ndarray) -> None:
    mask = np.zeros((341, 512), dtype=np.uint8)
    mask[100:300, 50:250] = 255
    mask[100:300, 250] = 100  # soft, below 128: kept
    for model in ("sd_inpaint", "sd"):
        with pytest.warns(PictureFittedWarning, match="kept pixels put back"):
            result = client.inpaint(model, PROMPT, coffee, mask, sampling=Sampling(seed=3, steps=2))
        assert result.shape == (1, 341, 512, 3)
        kept = mask < 128
        np.testing.assert_array_equal(result[0][kept], coffee[kept])
        assert not np.array_equal(result[0][~kept], coffee[~kept]), "the masked area was regenerated"


def test_no_fit_refuses_a_photo_outside_the_bounds(client: ProdgenClient, coffee: np.ndarray) -> None:
    with pytest.raises(ProdgenError, match="image height 341 pixels: model 'sd' takes multiples of 4 in 4..64"):
        client.img2img("sd", PROMPT, coffee, fit=False)
    inputs = {
        "prompt": np.array([[PROMPT.encode()]], dtype=object),
        "image": coffee[None],
        "fit": np.array([[False]]),
    }
    with pytest.raises(ProdgenError, match="height 341 pixels: expected a multiple of 4 in 4..64"):
        client.infer("sd", inputs)


def test_cli_no_fit_refuses_and_fit_answers_at_the_photo_size(diffusion_server: EmbeddedServer, tmp_path: Path) -> None:
    import subprocess

    out = tmp_path / "coffee.png"
    command = [
        console_script("prodgen"), "img2img", "sd", PROMPT, str(PHOTO), "--steps", "2", "--out", str(out),
        "--url", diffusion_server.options.grpc_url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fitting: image 512×341 → 64×44" in done.stdout
    assert np.asarray(Image.open(out)).shape == (341, 512, 3)
    refused = subprocess.run([*command, "--no-fit"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "height 341 pixels" in refused.stderr and "Traceback" not in refused.stderr
