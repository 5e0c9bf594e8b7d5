"""pix2pix UnetGenerator (pytorch-CycleGAN-and-pix2pix `networks.py`, unet_256/unet_128, batch norm).

Key names and shapes are written out from upstream's nesting, independently of prodgen's
module: the outermost block's Sequential is [downconv, submodule, ReLU, upconv, Tanh], a middle
block's [LeakyReLU, downconv, norm, submodule, ReLU, upconv, norm(, Dropout)], the innermost
block's [LeakyReLU, downconv, ReLU, upconv, norm]; convolutions next to batch norm have no bias.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from prodgen import zoo
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import verify_onnx
from prodgen.photos import photo_batch
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.pix2pix import Statistics, UnetGenerator, pix2pix_zoo_model
from prodgen.zoo.samples import verification_cases
from prodgen.zoo.spec import ZooModel


def unet_upstream_shapes(num_downs: int, ngf: int = 64, legacy: bool = False) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def norm(key: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{key}.{name}"] = (channels,)
        if not legacy:
            shapes[f"{key}.num_batches_tracked"] = ()

    # (outer_nc, inner_nc) from the outermost level inwards
    levels = [(3, ngf), (ngf, ngf * 2), (ngf * 2, ngf * 4), (ngf * 4, ngf * 8)]
    levels += [(ngf * 8, ngf * 8)] * (num_downs - 4)
    prefix = "model.model."
    shapes[prefix + "0.weight"] = (ngf, 3, 4, 4)
    shapes[prefix + "3.weight"] = (ngf * 2, 3, 4, 4)
    shapes[prefix + "3.bias"] = (3,)
    for depth, (outer, inner) in enumerate(levels[1:], start=1):
        prefix += "1.model." if depth == 1 else "3.model."
        shapes[prefix + "1.weight"] = (inner, outer, 4, 4)
        if depth == len(levels) - 1:
            shapes[prefix + "3.weight"] = (inner, outer, 4, 4)
            norm(prefix + "4", outer)
        else:
            norm(prefix + "2", inner)
            shapes[prefix + "5.weight"] = (inner * 2, outer, 4, 4)
            norm(prefix + "6", outer)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        elif key.endswith(".weight") and len(shape) == 1:
            state[key] = 1.0 + 0.1 * torch.randn(shape, generator=generator)
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def test_keys_nest_as_upstream() -> None:
    keys = set(UnetGenerator(num_downs=8).state_dict())
    assert keys == set(unet_upstream_shapes(8))
    assert "model.model.1.model.3.model.3.model.3.model.3.model.3.model.3.model.4.running_mean" in keys


def test_unet_256_file_loads(tmp_path: Path) -> None:
    saved = random_state_dict(unet_upstream_shapes(8))
    save_file(saved, str(tmp_path / "latest_net_G.safetensors"))
    state = instantiate(zoo.get("pix2pix-unet256"), tmp_path / "latest_net_G.safetensors").state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[key], saved[key]) for key in saved)


def small(name: str, num_downs: int) -> ZooModel:
    """The registered entry (loader, serving graph) around a narrow network (ngf 8)."""
    return dataclasses.replace(zoo.get(name), build=partial(UnetGenerator, num_downs=num_downs, ngf=8))


@pytest.mark.parametrize(("name", "num_downs"), [("pix2pix-unet128", 7), ("pix2pix-unet256", 8)])
def test_pre_0_4_file_without_batch_counters_loads(tmp_path: Path, name: str, num_downs: int) -> None:
    saved = random_state_dict(unet_upstream_shapes(num_downs, ngf=8, legacy=True))
    torch.save(saved, tmp_path / "latest_net_G.pth")
    state = instantiate(small(name, num_downs), tmp_path / "latest_net_G.pth").state_dict()
    assert all(torch.equal(state[key], saved[key]) for key in saved)


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    torch.save(random_state_dict(unet_upstream_shapes(7, ngf=8)), tmp_path / "unet_128.pth")
    with pytest.raises(ProdgenError, match=r"7 levels \(unet_128\); 'pix2pix-unet256' has 8 \(unet_256\)"):
        instantiate(small("pix2pix-unet256", 8), tmp_path / "unet_128.pth")
    resnet = {"model.1.weight": torch.zeros(64, 3, 7, 7), "model.1.bias": torch.zeros(64)}
    torch.save(resnet, tmp_path / "latest_net_G_A.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'pix2pix-unet256'"):
        instantiate(zoo.get("pix2pix-unet256"), tmp_path / "latest_net_G_A.pth")


def test_per_image_statistics_equal_upstream_default_test_mode() -> None:
    """Upstream's test.py without --eval: BatchNorm2d in train mode on one image at a time.
    The served network gives each image of a batch exactly that, whatever else is in the batch."""
    saved = random_state_dict(unet_upstream_shapes(7, ngf=8))
    served = UnetGenerator(num_downs=7, ngf=8, statistics="per-image")
    served.load_state_dict(saved)
    upstream_default = UnetGenerator(num_downs=7, ngf=8, statistics="running")
    upstream_default.load_state_dict(saved)
    upstream_default.train()
    images = torch.from_numpy(photo_batch(3, 128, 128)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        batched = served.eval()(images)
        one_at_a_time = torch.cat([upstream_default(image[None]) for image in images])
    torch.testing.assert_close(batched, one_at_a_time, atol=1e-5, rtol=0)

    upstream_eval = UnetGenerator(num_downs=7, ngf=8, statistics="running")
    upstream_eval.load_state_dict(saved)
    with torch.no_grad():
        assert (upstream_eval.eval()(images) - batched).abs().max() > 0.01


def test_mode_is_published() -> None:
    model = zoo.get("pix2pix-unet256")
    assert model.facts.notes["batch_norm_statistics"] == "per-image"
    assert model.facts.notes["dropout"] == "off"


@pytest.mark.parametrize("statistics", ["per-image", "running"])
def test_onnx_matches_pytorch_on_photos(tmp_path: Path, statistics: Statistics) -> None:
    """A 6-level, narrow U-Net (sides multiples of 64) through the registered entries' factory."""
    model = dataclasses.replace(
        pix2pix_zoo_model("pix2pix-test", num_downs=6, statistics=statistics),
        build=partial(UnetGenerator, num_downs=6, ngf=8, statistics=statistics),
        bounds=ImageBounds(min_side=64, max_side=512, opt_side=128),
    )
    torch.save(random_state_dict(unet_upstream_shapes(6, ngf=8)), tmp_path / "latest_net_G.pth")
    graph = serving_module(model, tmp_path / "latest_net_G.pth")
    cases = verification_cases(model)
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", cases)
    assert parity.fraction_within_one_level >= 0.999, parity.describe()
