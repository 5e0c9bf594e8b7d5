"""U²-Net and U²-NetP (xuebinqin/U-2-Net `model/u2net.py`): upstream files load, the served graph matches.

The key names and shapes (tests/cutout_upstream.py) are written out from upstream's `U2NET`/`U2NETP`
constructors (stage table, RSU-L layout, REBNCONV = conv_s1 + bn_s1), independently of prodgen's modules.
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
from cutout_upstream import (
    U2NET_SIDES,
    U2NET_STAGES,
    U2NETP_SIDES,
    U2NETP_STAGES,
    Stage,
    random_state_dict,
    u2net_upstream_shapes,
    upstream_checkout,
    upstream_imports,
)
from PIL import Image

from prodgen import zoo
from prodgen.contract import ImageBounds
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import run_pytorch, verify_onnx
from prodgen.photos import fit, photograph
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.samples import verification_cases

UPSTREAM: dict[str, tuple[list[Stage], tuple[int, ...]]] = {
    "u2net": (U2NET_STAGES, U2NET_SIDES),
    "u2netp": (U2NETP_STAGES, U2NETP_SIDES),
}


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
    torch.save(
        {key: torch.zeros(()).expand(shape) for key, shape in shapes.items()}, tmp_path / "u2net.pth"
    )  # 1 value each
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
        inputs = torch.as_tensor(sample["image"]).unsqueeze(0).to(torch.float32)  # `.type(torch.FloatTensor)`
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
