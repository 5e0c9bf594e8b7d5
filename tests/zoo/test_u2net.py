"""U²-Net and U²-NetP (xuebinqin/U-2-Net `model/u2net.py`): upstream files load, the served graph matches.

The key names and shapes below are written out from upstream's `U2NET`/`U2NETP` constructors
(stage table, RSU-L layout, REBNCONV = conv_s1 + bn_s1), independently of prodgen's modules.
`PRODGEN_UPSTREAM_U2NET=/path/to/U-2-Net` (a checkout of upstream, never committed here) adds
the test against upstream's own modules and inference script.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from upstream_checkouts import upstream_checkout, upstream_imports

from prodgen import zoo
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.photos import fit, photograph
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.samples import verification_cases

Shapes = dict[str, tuple[int, ...]]

# (stage, RSU height or "4F", in, mid, out), as upstream's U2NET / U2NETP constructors list them
U2NET_STAGES = [
    ("stage1", 7, 3, 32, 64), ("stage2", 6, 64, 32, 128), ("stage3", 5, 128, 64, 256), ("stage4", 4, 256, 128, 512),
    ("stage5", "4F", 512, 256, 512), ("stage6", "4F", 512, 256, 512), ("stage5d", "4F", 1024, 256, 512),
    ("stage4d", 4, 1024, 128, 256), ("stage3d", 5, 512, 64, 128), ("stage2d", 6, 256, 32, 64),
    ("stage1d", 7, 128, 16, 64),
]  # fmt: skip
U2NET_SIDES = (64, 64, 128, 256, 512, 512)
U2NETP_STAGES = [
    ("stage1", 7, 3, 16, 64), ("stage2", 6, 64, 16, 64), ("stage3", 5, 64, 16, 64), ("stage4", 4, 64, 16, 64),
    ("stage5", "4F", 64, 16, 64), ("stage6", "4F", 64, 16, 64), ("stage5d", "4F", 128, 16, 64),
    ("stage4d", 4, 128, 16, 64), ("stage3d", 5, 128, 16, 64), ("stage2d", 6, 128, 16, 64),
    ("stage1d", 7, 128, 16, 64),
]  # fmt: skip
U2NETP_SIDES = (64,) * 6


def rebnconv_shapes(prefix: str, cin: int, cout: int) -> Shapes:
    shapes: Shapes = {f"{prefix}.conv_s1.weight": (cout, cin, 3, 3), f"{prefix}.conv_s1.bias": (cout,)}
    for buffer in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.bn_s1.{buffer}"] = (cout,)
    shapes[f"{prefix}.bn_s1.num_batches_tracked"] = ()
    return shapes


def rsu_shapes(prefix: str, height: int | str, cin: int, mid: int, cout: int) -> Shapes:
    """RSU-L: rebnconvin, rebnconv1..L, rebnconv(L-1)d..1d; RSU-4F has the keys of RSU-4."""
    levels = 4 if height == "4F" else int(height)
    shapes = rebnconv_shapes(f"{prefix}.rebnconvin", cin, cout)
    shapes |= rebnconv_shapes(f"{prefix}.rebnconv1", cout, mid)
    for level in range(2, levels + 1):
        shapes |= rebnconv_shapes(f"{prefix}.rebnconv{level}", mid, mid)
    for level in range(levels - 1, 1, -1):
        shapes |= rebnconv_shapes(f"{prefix}.rebnconv{level}d", 2 * mid, mid)
    shapes |= rebnconv_shapes(f"{prefix}.rebnconv1d", 2 * mid, cout)
    return shapes


def u2net_upstream_shapes(stages: list[tuple[str, int | str, int, int, int]], sides: tuple[int, ...]) -> Shapes:
    shapes: Shapes = {}
    for stage in stages:
        shapes |= rsu_shapes(*stage)
    for index, channels in enumerate(sides, start=1):
        shapes[f"side{index}.weight"] = (1, channels, 3, 3)
        shapes[f"side{index}.bias"] = (1,)
    shapes["outconv.weight"] = (1, 6, 1, 1)
    shapes["outconv.bias"] = (1,)
    return shapes


def random_state_dict(shapes: Shapes, seed: int) -> dict[str, torch.Tensor]:
    """Upstream-shaped weights: small random convolutions, batch-norm statistics near identity."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(100)
        elif key.endswith("running_var") or key.endswith("bn_s1.weight"):
            state[key] = 0.5 + torch.rand(shape, generator=generator)
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) * (2.0 / (shape[1] * shape[2] * shape[3])) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state


UPSTREAM = {"u2net": (U2NET_STAGES, U2NET_SIDES), "u2netp": (U2NETP_STAGES, U2NETP_SIDES)}


@pytest.mark.parametrize("name", ["u2net", "u2netp", "u2netp-demo"])
def test_upstream_file_loads_strictly(tmp_path: Path, name: str) -> None:
    shapes = u2net_upstream_shapes(*UPSTREAM["u2net" if name == "u2net" else "u2netp"])
    network = zoo.get(name).build()
    assert {key: tuple(value.shape) for key, value in network.state_dict().items()} == shapes
    if name == "u2net":
        return  # 44 M parameters: the layout above is the check; saving and loading them adds nothing
    weights = random_state_dict(shapes, seed=1)
    torch.save(weights, tmp_path / f"{name}.pth")
    state = instantiate(zoo.get(name), tmp_path / f"{name}.pth").state_dict()
    assert all(torch.equal(state[key], weights[key]) for key in shapes)


def test_a_u2net_file_is_refused_by_u2netp(tmp_path: Path) -> None:
    shapes = u2net_upstream_shapes(U2NET_STAGES, U2NET_SIDES)
    torch.save({key: torch.zeros(shape) for key, shape in shapes.items()}, tmp_path / "u2net.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'u2netp'"):
        instantiate(zoo.get("u2netp"), tmp_path / "u2net.pth")


@pytest.fixture(scope="module")
def u2netp_demo_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("u2netp") / "u2netp.pth"
    torch.save(random_state_dict(u2net_upstream_shapes(U2NETP_STAGES, U2NETP_SIDES), seed=2), path)
    return path


def test_onnx_matches_pytorch_on_photos(tmp_path: Path, u2netp_demo_weights: Path) -> None:
    """The graph (resize matrices, stretch, 8-bit resize back) exports with dynamic H×W and matches."""
    model = dataclasses.replace(zoo.get("u2netp-demo"), bounds=ImageBounds(min_side=16, max_side=512, opt_side=64))
    graph = serving_module(model, u2netp_demo_weights)
    cases = verification_cases(model)
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", cases)
    assert parity.fraction_within_one_level >= 0.999, parity.describe()
    for case in cases:
        (photos,) = case.values()
        (matte,) = run_pytorch(graph, model, case)
        assert matte.shape == (*photos.shape[:3], 1) and matte.dtype == np.uint8
        assert matte.min() == 0 and matte.max() >= 254  # normPRED stretches every matte to the full range


def upstream_inference(checkout: Path, network: torch.nn.Module, photo_path: Path, out: Path) -> np.ndarray:
    """u2net_test.py's loop for one photo: its dataset and transforms (RescaleT(320), ToTensorLab(flag=0),
    applied in turn as its transforms.Compose does), the network's first map, normPRED, save_output."""
    with upstream_imports(checkout, "data_loader", "u2net_test") as (loader, script):
        dataset = loader.SalObjDataset(img_name_list=[str(photo_path)], lbl_name_list=[], transform=None)
        sample = loader.ToTensorLab(flag=0)(loader.RescaleT(320)(dataset[0]))
        inputs = torch.as_tensor(sample["image"]).unsqueeze(0).type(torch.FloatTensor)
        with torch.no_grad():
            d1 = network(inputs)[0]
        script.save_output(str(photo_path), script.normPRED(d1[:, 0, :, :]), str(out) + os.sep)
    return np.asarray(Image.open(out / f"{photo_path.stem}.png"))[..., 0]


@pytest.mark.parametrize("upstream_class, name", [("U2NETP", "u2netp"), ("U2NET", "u2net")])
def test_served_graph_matches_upstream_script(tmp_path: Path, upstream_class: str, name: str) -> None:
    """Upstream's modules with seeded weights, saved, loaded through prodgen: the exported ONNX's
    mattes against u2net_test.py's own output (skimage resize, normPRED, PIL resize back)."""
    checkout = upstream_checkout("PRODGEN_UPSTREAM_U2NET", "xuebinqin/U-2-Net", ["model/u2net.py", "u2net_test.py"])
    with upstream_imports(checkout, "model") as (upstream_model,):
        network = getattr(upstream_model, upstream_class)(3, 1)
    network.load_state_dict(random_state_dict(u2net_upstream_shapes(*UPSTREAM[name]), seed=3))
    network.eval()
    torch.save(network.state_dict(), tmp_path / f"{name}.pth")
    model = zoo.get(name)
    graph = serving_module(model, tmp_path / f"{name}.pth")
    photos = {
        "coffee": photograph("coffee"),
        "chelsea": photograph("chelsea"),
        "rocket": fit(photograph("rocket"), 200, 300),
    }
    export_onnx(graph, model, {"image": photos["chelsea"][np.newaxis]}, tmp_path / "model.onnx")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    within, total = 0, 0
    for label, photo in photos.items():
        path = tmp_path / f"{label}.png"
        Image.fromarray(photo).save(path)
        expected = upstream_inference(checkout, network, path, tmp_path)
        (served,) = session.run(None, {"image": photo[np.newaxis]})
        difference = np.abs(served[0, :, :, 0].astype(int) - expected.astype(int))
        print(
            f"{name} {label} {photo.shape[1]}×{photo.shape[0]}: equal {np.mean(difference == 0):.5f}, within one level {np.mean(difference <= 1):.5f}, max {difference.max()}"
        )
        within += int(np.sum(difference <= 1))
        total += difference.size
    assert within / total >= 0.999
