"""Upstream-format checkpoints load unchanged.

The key names and shapes below are written out from the upstream repositories'
`state_dict()` layouts (pytorch/examples dcgan `netG`, fast_neural_style
`TransformerNet`, pytorch-CycleGAN-and-pix2pix `ResnetGenerator` resnet_9blocks),
independently of prodgen's modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.zoo.loading import instantiate


def dcgan_upstream_shapes(nz: int = 100, ngf: int = 64) -> dict[str, tuple[int, ...]]:
    convs = {0: (nz, ngf * 8), 3: (ngf * 8, ngf * 4), 6: (ngf * 4, ngf * 2), 9: (ngf * 2, ngf), 12: (ngf, 3)}
    shapes: dict[str, tuple[int, ...]] = {f"main.{i}.weight": (cin, cout, 4, 4) for i, (cin, cout) in convs.items()}
    for index, channels in {1: ngf * 8, 4: ngf * 4, 7: ngf * 2, 10: ngf}.items():
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"main.{index}.{buffer}"] = (channels,)
        shapes[f"main.{index}.num_batches_tracked"] = ()
    return shapes


def transformer_net_upstream_shapes(legacy_running_stats: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(prefix: str, cin: int, cout: int, k: int) -> None:
        shapes[f"{prefix}.conv2d.weight"] = (cout, cin, k, k)
        shapes[f"{prefix}.conv2d.bias"] = (cout,)

    def norm(prefix: str, channels: int) -> None:
        shapes[f"{prefix}.weight"] = (channels,)
        shapes[f"{prefix}.bias"] = (channels,)
        if legacy_running_stats:
            shapes[f"{prefix}.running_mean"] = (channels,)
            shapes[f"{prefix}.running_var"] = (channels,)

    conv("conv1", 3, 32, 9)

    norm("in1", 32)
    conv("conv2", 32, 64, 3)
    norm("in2", 64)
    conv("conv3", 64, 128, 3)
    norm("in3", 128)
    for block in range(1, 6):
        conv(f"res{block}.conv1", 128, 128, 3)
        norm(f"res{block}.in1", 128)
        conv(f"res{block}.conv2", 128, 128, 3)
        norm(f"res{block}.in2", 128)
    conv("deconv1", 128, 64, 3)
    norm("in4", 64)
    conv("deconv2", 64, 32, 3)
    norm("in5", 32)
    conv("deconv3", 32, 3, 9)
    return shapes


def cyclegan_upstream_shapes(dropout: bool) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(index: str, cin: int, cout: int, k: int, transposed: bool = False) -> None:
        shapes[f"model.{index}.weight"] = (cin, cout, k, k) if transposed else (cout, cin, k, k)
        shapes[f"model.{index}.bias"] = (cout,)

    conv("1", 3, 64, 7)
    conv("4", 64, 128, 3)
    conv("7", 128, 256, 3)
    second = 6 if dropout else 5
    for block in range(10, 19):
        conv(f"{block}.conv_block.1", 256, 256, 3)
        conv(f"{block}.conv_block.{second}", 256, 256, 3)
    conv("19", 256, 128, 3, transposed=True)
    conv("22", 128, 64, 3, transposed=True)
    conv("26", 64, 3, 7)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.05
    return state


def assert_loaded(name: str, path: Path, saved: dict[str, torch.Tensor]) -> None:
    network_state = instantiate(zoo.get(name), path).state_dict()
    compared = 0
    for key, value in network_state.items():
        source = saved.get(key)
        if source is None and name == "cyclegan":
            source = saved.get(key.replace("conv_block.5.", "conv_block.6."))
        assert source is not None, key
        assert torch.equal(value, source), key
        compared += 1
    assert compared == len(network_state)


def test_dcgan_netg_file_loads(tmp_path: Path) -> None:
    saved = random_state_dict(dcgan_upstream_shapes())
    torch.save(saved, tmp_path / "netG_epoch_24.pth")
    assert_loaded("dcgan", tmp_path / "netG_epoch_24.pth", saved)


@pytest.mark.parametrize("legacy_running_stats", [False, True], ids=["current", "legacy-instance-norm-stats"])
def test_transformer_net_file_loads(tmp_path: Path, legacy_running_stats: bool) -> None:
    saved = random_state_dict(transformer_net_upstream_shapes(legacy_running_stats))
    torch.save(saved, tmp_path / "candy.pth")
    assert_loaded("fast-neural-style", tmp_path / "candy.pth", saved)


@pytest.mark.parametrize("dropout", [False, True], ids=["no-dropout", "dropout"])
def test_cyclegan_generator_file_loads(tmp_path: Path, dropout: bool) -> None:
    saved = random_state_dict(cyclegan_upstream_shapes(dropout))
    torch.save(saved, tmp_path / "latest_net_G_A.pth")
    assert_loaded("cyclegan", tmp_path / "latest_net_G_A.pth", saved)


def test_wrapped_dataparallel_and_safetensors_variants_load(tmp_path: Path) -> None:
    saved = random_state_dict(dcgan_upstream_shapes())
    torch.save({"state_dict": {f"module.{k}": v for k, v in saved.items()}, "epoch": 3}, tmp_path / "wrapped.pth")
    assert_loaded("dcgan", tmp_path / "wrapped.pth", saved)
    save_file(saved, str(tmp_path / "netG.safetensors"))
    assert_loaded("dcgan", tmp_path / "netG.safetensors", saved)


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    torch.save(random_state_dict(dcgan_upstream_shapes()), tmp_path / "netG.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'cyclegan'"):
        instantiate(zoo.get("cyclegan"), tmp_path / "netG.pth")
