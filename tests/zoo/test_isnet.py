"""IS-Net (xuebinqin/DIS `IS-Net/models/isnet.py`, `ISNetDIS`): upstream's layout loads, the graph runs.

Key names and shapes are written out from upstream's `ISNetDIS` constructor (a stride-2
`conv_in`, U²-Net's stages with stage1 taking 64 channels, six side convolutions, no
`outconv`), independently of prodgen's modules. At 44 M parameters and 1024² inside, export
and parity run only against upstream's own code: `PRODGEN_UPSTREAM_DIS=/path/to/DIS` (a
checkout of xuebinqin/DIS, never committed here) runs upstream's `Inference.py` itself.
"""

from __future__ import annotations

import dataclasses
import os
import runpy
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import skimage.io
import torch
from cutout_upstream import (
    U2NET_SIDES,
    U2NET_STAGES,
    Stage,
    random_state_dict,
    rsu_shapes,
    upstream_checkout,
    upstream_imports,
)
from PIL import Image

from prodgen import zoo
from prodgen.checkpoints import load_weights
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.photos import fit, photograph
from prodgen.zoo.cutout_graphs import ISNetCutout
from prodgen.zoo.loading import instantiate, serving_module


def isnet_upstream_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"conv_in.weight": (64, 3, 3, 3), "conv_in.bias": (64,)}
    stages: list[Stage] = [("stage1", 7, 64, 32, 64), *U2NET_STAGES[1:]]
    for stage in stages:
        shapes |= rsu_shapes(*stage)
    for index, channels in enumerate(U2NET_SIDES, start=1):
        shapes[f"side{index}.weight"] = (1, channels, 3, 3)
        shapes[f"side{index}.bias"] = (1,)
    return shapes


@pytest.fixture(scope="module")
def isnet_weights() -> dict[str, torch.Tensor]:
    return random_state_dict(isnet_upstream_shapes(), seed=5)


def test_upstream_layout_loads_strictly(isnet_weights: dict[str, torch.Tensor]) -> None:
    network = zoo.get("isnet-dis").build()
    assert {key: tuple(value.shape) for key, value in network.state_dict().items()} == isnet_upstream_shapes()
    load_weights(network, isnet_weights, "isnet-dis")
    assert torch.equal(
        network.state_dict()["stage3d.rebnconv1d.bn_s1.running_var"],
        isnet_weights["stage3d.rebnconv1d.bn_s1.running_var"],
    )
    with pytest.raises(ProdgenError, match="does not match architecture 'isnet-dis': missing conv_in.weight"):
        load_weights(network, {k: v for k, v in isnet_weights.items() if not k.startswith("conv_in")}, "isnet-dis")


def test_matte_has_the_photos_size(isnet_weights: dict[str, torch.Tensor]) -> None:
    """The graph at a small inside side (64², the network's stages as at 1024²): a uint8 matte per photo."""
    model = dataclasses.replace(zoo.get("isnet-dis"), serving_graph=partial(ISNetCutout, side=64))
    network = zoo.get("isnet-dis").build()
    load_weights(network, isnet_weights, "isnet-dis")
    graph = model.serving_graph(network.eval())
    photo = fit(photograph("coffee"), 90, 130)
    with torch.no_grad():
        matte = graph(torch.from_numpy(photo)[None]).numpy()
    assert matte.shape == (1, 90, 130, 1) and matte.dtype == np.uint8
    assert matte.min() == 0 and matte.max() >= 254  # min-max stretched, truncated: 255 only where the maximum is


def run_upstream_inference(
    checkout: Path, weights: Path, photos: dict[str, np.ndarray], work: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, np.ndarray]:
    """Upstream's IS-Net/Inference.py run as a script, in the folder layout its paths expect. Its last
    step, `io.imsave` of an (H, W, 1) array, fails with today's imageio ("Can't write images with one
    color channel"), so the arrays are taken as the script hands them to `imsave`."""
    saved_mattes: dict[str, np.ndarray] = {}
    monkeypatch.setattr(skimage.io, "imsave", lambda path, array: saved_mattes.setdefault(Path(path).stem, array))
    dataset, results, saved = (
        work / "demo_datasets" / "your_dataset",
        work / "demo_datasets" / "your_dataset_result",
        work / "saved_models" / "IS-Net",
    )
    for folder in (dataset, results, saved, work / "IS-Net"):
        folder.mkdir(parents=True, exist_ok=True)
    (saved / "isnet-general-use.pth").write_bytes(weights.read_bytes())
    for name, photo in photos.items():
        Image.fromarray(photo).save(dataset / f"{name}.png")
    here = Path.cwd()
    os.chdir(work / "IS-Net")
    try:
        with upstream_imports(checkout / "IS-Net", "models"):
            runpy.run_path(str(checkout / "IS-Net" / "Inference.py"), run_name="__main__")
    finally:
        os.chdir(here)
    return {name: saved_mattes[name][..., 0] for name in photos}


def test_served_graph_matches_upstream_inference_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's ISNetDIS with seeded weights, saved, loaded through prodgen: the exported ONNX's
    mattes against the PNGs upstream's Inference.py writes for the same photos."""
    checkout = upstream_checkout(
        "PRODGEN_UPSTREAM_DIS", "xuebinqin/DIS", ["IS-Net/Inference.py", "IS-Net/models/isnet.py"]
    )
    with upstream_imports(checkout / "IS-Net", "models") as (upstream,):
        network = upstream.ISNetDIS()
    network.load_state_dict(random_state_dict(isnet_upstream_shapes(), seed=6))
    torch.save(network.state_dict(), tmp_path / "isnet.pth")
    photos = {"coffee": photograph("coffee"), "rocket": fit(photograph("rocket"), 200, 300)}
    expected = run_upstream_inference(checkout, tmp_path / "isnet.pth", photos, tmp_path / "upstream", monkeypatch)
    model = zoo.get("isnet-dis")
    graph = serving_module(model, tmp_path / "isnet.pth")
    export_onnx(graph, model, {"image": photos["rocket"][np.newaxis]}, tmp_path / "model.onnx")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    within, total = 0, 0
    for name, photo in photos.items():
        (served,) = session.run(None, {"image": photo[np.newaxis]})
        difference = np.abs(served[0, :, :, 0].astype(int) - expected[name].astype(int))
        print(
            f"isnet-dis {name} {photo.shape[1]}×{photo.shape[0]}: equal {np.mean(difference == 0):.5f}, "
            f"within one level {np.mean(difference <= 1):.5f}, max {difference.max()}"
        )
        within += int(np.sum(difference <= 1))
        total += difference.size
    assert within / total >= 0.999


def test_a_u2net_file_is_not_an_isnet(tmp_path: Path) -> None:
    torch.save({"outconv.weight": torch.zeros(1, 6, 1, 1)}, tmp_path / "u2net.pth")
    with pytest.raises(ProdgenError, match="does not match architecture 'isnet-dis'"):
        instantiate(zoo.get("isnet-dis"), tmp_path / "u2net.pth")
