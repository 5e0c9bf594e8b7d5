"""RRDBNet (BasicSR `rrdbnet_arch.py`): upstream files load, other files are refused, ONNX matches.

Key names and shapes are written out from BasicSR's layout (`conv_first`, `body.N.rdbK.convJ`,
`conv_body`, `conv_up1`, `conv_up2`, `conv_hr`, `conv_last`), independently of prodgen's module.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prodgen import zoo
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.photos import photo_batch
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.rrdbnet import RRDBNet, check_rrdb_checkpoint
from prodgen.zoo.samples import verification_cases
from prodgen.zoo.spec import ZooModel
from prodgen.zoo.srvgg import SRVGGNetCompact


def rrdbnet_upstream_shapes(
    scale: int, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32
) -> dict[str, tuple[int, ...]]:
    in_ch = {4: 3, 2: 12, 1: 48}[scale]
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, 3, 3)
        shapes[f"{name}.bias"] = (cout,)

    conv("conv_first", in_ch, num_feat)
    for block in range(num_block):
        for rdb in (1, 2, 3):
            for j in range(1, 5):
                conv(f"body.{block}.rdb{rdb}.conv{j}", num_feat + (j - 1) * num_grow_ch, num_grow_ch)
            conv(f"body.{block}.rdb{rdb}.conv5", num_feat + 4 * num_grow_ch, num_feat)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        conv(name, num_feat, num_feat)
    conv("conv_last", num_feat, 3)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=generator) * 0.02 for key, shape in shapes.items()}


def assert_network_holds(network: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    state = network.state_dict()
    assert set(state) == set(saved)
    for key, value in state.items():
        assert torch.equal(value, saved[key]), key


@pytest.mark.parametrize(("name", "scale"), [("realesrgan-x4", 4), ("realesrgan-x2", 2)])
def test_basicsr_file_loads_preferring_params_ema(tmp_path: Path, name: str, scale: int) -> None:
    shapes = rrdbnet_upstream_shapes(scale)
    ema, plain = random_state_dict(shapes, 1), random_state_dict(shapes, 2)
    torch.save({"params_ema": ema, "params": plain}, tmp_path / "both.pth")
    assert_network_holds(instantiate(zoo.get(name), tmp_path / "both.pth"), ema)
    torch.save({"params": plain}, tmp_path / "params.pth")
    assert_network_holds(instantiate(zoo.get(name), tmp_path / "params.pth"), plain)


def test_other_architectures_and_variants_are_refused(tmp_path: Path) -> None:
    torch.save({"params": SRVGGNetCompact(num_conv=4).state_dict()}, tmp_path / "srvgg.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'realesrgan-x4'"):
        instantiate(zoo.get("realesrgan-x4"), tmp_path / "srvgg.pth")
    torch.save({"params_ema": random_state_dict(rrdbnet_upstream_shapes(4, num_block=2), 3)}, tmp_path / "x4.pth")
    with pytest.raises(ProdgenError, match=r"RRDBNet ×4 .*'realesrgan-x2' is ×2"):
        instantiate(zoo.get("realesrgan-x2"), tmp_path / "x4.pth")
    with pytest.raises(ProdgenError, match="2 RRDB blocks; 'realesrgan-x4' has 23"):
        instantiate(zoo.get("realesrgan-x4"), tmp_path / "x4.pth")


def test_pixel_unshuffle_is_basicsr_channel_order() -> None:
    """BasicSR's own `pixel_unshuffle` (view → permute(0, 1, 3, 5, 2, 4) → reshape), written out."""
    x = torch.randn(2, 3, 8, 12)
    for factor in (2, 4):
        b, c, hh, hw = x.shape
        reference = (
            x.view(b, c, hh // factor, factor, hw // factor, factor)
            .permute(0, 1, 3, 5, 2, 4)
            .reshape(b, c * factor**2, hh // factor, hw // factor)
        )
        assert torch.equal(F.pixel_unshuffle(x, factor), reference)


def small_rrdbnet(scale: int) -> ZooModel:
    """A one-block, narrow RRDBNet behind the registered entry's loader and serving graph."""
    registered = zoo.get("realesrgan-x2" if scale == 2 else "realesrgan-x4")
    return dataclasses.replace(
        registered,
        name=f"rrdbnet-test-x{scale}",
        build=partial(RRDBNet, scale=scale, num_feat=16, num_block=1, num_grow_ch=8),
        prepare_state_dict=partial(check_rrdb_checkpoint, name="rrdbnet-test", scale=scale, num_block=1),
        bounds=ImageBounds(min_side=16, max_side=512, opt_side=48),
    )


def in_range_weights(model: ZooModel, seed: int) -> dict[str, torch.Tensor]:
    """Upstream-named random weights whose outputs mostly land inside 0..1 on photos, so the
    parity check compares real pixel values rather than clamped ones."""
    network = instantiate(model, seed=seed)
    assert isinstance(network, RRDBNet)
    last = network.conv_last
    assert last.bias is not None
    photo = torch.from_numpy(photo_batch(1, 48, 48)).permute(0, 3, 1, 2).float() / 255.0
    with torch.no_grad():
        last.bias.zero_()
        output = network(photo)
        gain = 0.15 / output.std(dim=(0, 2, 3)).clamp_min(1e-6)
        last.weight.mul_(gain.reshape(-1, 1, 1, 1))
        last.bias.copy_(0.5 - output.mean(dim=(0, 2, 3)) * gain)
    return network.state_dict()


@pytest.mark.parametrize("scale", [4, 2, 1])
def test_onnx_matches_pytorch_on_photos(tmp_path: Path, scale: int) -> None:
    model = small_rrdbnet(scale)
    torch.save({"params_ema": in_range_weights(model, seed=scale)}, tmp_path / "net_g.pth")
    graph = serving_module(model, tmp_path / "net_g.pth")
    cases = verification_cases(model)
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", cases)
    assert parity.fraction_within_one_level >= 0.999, parity.describe()
    outputs = np.concatenate([run_pytorch(graph, model, case)[0].ravel() for case in cases])
    assert np.mean((outputs > 0) & (outputs < 255)) > 0.9
    for case in cases:
        (image,) = case.values()
        (output,) = run_pytorch(graph, model, case)
        assert output.shape == (image.shape[0], image.shape[1] * scale, image.shape[2] * scale, 3)
