"""SRVGGNetCompact (Real-ESRGAN `srvgg_arch.py`): upstream files load, others are refused, ONNX matches.

Key names and shapes are written out from upstream's layout: `body` is a ModuleList of
conv, PReLU, (conv, PReLU) × num_conv, conv; PReLU holds one slope per feature channel.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from prodgen import zoo
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.rrdbnet import RRDBNet
from prodgen.zoo.samples import verification_cases

REGISTERED = {
    "realesr-general-x4v3": (64, 32, 4),
    "realesr-animevideov3": (64, 16, 4),
    "srvgg-x2-small": (32, 8, 2),
}


def srvgg_upstream_shapes(num_feat: int, num_conv: int, upscale: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {
        "body.0.weight": (num_feat, 3, 3, 3),
        "body.0.bias": (num_feat,),
        "body.1.weight": (num_feat,),
    }
    for k in range(1, num_conv + 1):
        shapes[f"body.{2 * k}.weight"] = (num_feat, num_feat, 3, 3)
        shapes[f"body.{2 * k}.bias"] = (num_feat,)
        shapes[f"body.{2 * k + 1}.weight"] = (num_feat,)
    last = 2 * num_conv + 2
    shapes[f"body.{last}.weight"] = (3 * upscale * upscale, num_feat, 3, 3)
    shapes[f"body.{last}.bias"] = (3 * upscale * upscale,)
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        is_prelu = len(shape) == 1 and not key.endswith("bias")
        state[key] = (
            torch.rand(shape, generator=generator) * 0.3 if is_prelu else torch.randn(shape, generator=generator) * 0.03
        )
    return state


@pytest.mark.parametrize("name", sorted(REGISTERED))
def test_real_esrgan_file_loads_preferring_params_ema(tmp_path: Path, name: str) -> None:
    shapes = srvgg_upstream_shapes(*REGISTERED[name])
    params, ema = random_state_dict(shapes, 1), random_state_dict(shapes, 2)
    torch.save({"params": params}, tmp_path / "params.pth")
    state = instantiate(zoo.get(name), tmp_path / "params.pth").state_dict()
    assert set(state) == set(shapes)
    assert all(torch.equal(state[key], params[key]) for key in shapes)
    torch.save({"params": params, "params_ema": ema}, tmp_path / "both.pth")
    state = instantiate(zoo.get(name), tmp_path / "both.pth").state_dict()
    assert all(torch.equal(state[key], ema[key]) for key in shapes)


def test_other_architectures_are_refused(tmp_path: Path) -> None:
    torch.save({"params_ema": RRDBNet(num_block=2).state_dict()}, tmp_path / "RealESRGAN_x4plus.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'realesr-general-x4v3'"):
        instantiate(zoo.get("realesr-general-x4v3"), tmp_path / "RealESRGAN_x4plus.pth")
    torch.save({"params": random_state_dict(srvgg_upstream_shapes(64, 16, 4), 3)}, tmp_path / "anime.pth")
    with pytest.raises(ProdgenError, match="16 body convs, ×4; 'realesr-general-x4v3' has 32 body convs, ×4"):
        instantiate(zoo.get("realesr-general-x4v3"), tmp_path / "anime.pth")


@pytest.mark.parametrize("name", ["realesr-general-x4v3", "srvgg-x2-small"])
def test_onnx_matches_pytorch_on_photos(tmp_path: Path, name: str) -> None:
    registered = zoo.get(name)
    model = dataclasses.replace(registered, bounds=ImageBounds(min_side=16, max_side=512, opt_side=48))
    torch.save({"params": random_state_dict(srvgg_upstream_shapes(*REGISTERED[name]), 4)}, tmp_path / "net.pth")
    graph = serving_module(model, tmp_path / "net.pth")
    cases = verification_cases(model)
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", cases)
    assert parity.fraction_within_one_level >= 0.999, parity.describe()
    outputs = np.concatenate([run_pytorch(graph, model, case)[0].ravel() for case in cases])
    assert np.mean((outputs > 0) & (outputs < 255)) > 0.9
    scale = registered.facts.scale
    assert scale is not None
    for case in cases:
        (image,) = case.values()
        assert run_pytorch(graph, model, case)[0].shape == (
            image.shape[0],
            image.shape[1] * scale,
            image.shape[2] * scale,
            3,
        )
