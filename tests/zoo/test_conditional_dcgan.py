"""Conditional DCGAN: the DCGAN stack with a class embedding concatenated to z."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from prodgen import zoo
from prodgen.errors import ProdgenError
from prodgen.export.onnx_export import export_onnx
from prodgen.export.verify import onnx_session, run_pytorch, verify_onnx
from prodgen.model_repository.config import BatchingOptions, onnxruntime_config
from prodgen.seeding import latents_from_seed
from prodgen.zoo.loading import instantiate, serving_module
from prodgen.zoo.samples import verification_cases

NUM_CLASSES, EMBEDDING_DIM, NZ, NGF = 10, 32, 100, 64


def conditional_dcgan_shapes(nz: int = NZ + EMBEDDING_DIM) -> dict[str, tuple[int, ...]]:
    """`class_embedding.weight` plus pytorch/examples' netG layout (`main.N.*`) for an nz-channel input."""
    shapes: dict[str, tuple[int, ...]] = {"class_embedding.weight": (NUM_CLASSES, EMBEDDING_DIM)}
    convs = {0: (nz, NGF * 8), 3: (NGF * 8, NGF * 4), 6: (NGF * 4, NGF * 2), 9: (NGF * 2, NGF), 12: (NGF, 3)}
    shapes.update({f"main.{i}.weight": (cin, cout, 4, 4) for i, (cin, cout) in convs.items()})
    for index, channels in {1: NGF * 8, 4: NGF * 4, 7: NGF * 2, 10: NGF}.items():
        for buffer in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"main.{index}.{buffer}"] = (channels,)
        shapes[f"main.{index}.num_batches_tracked"] = ()
    return shapes


def random_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Random weights scaled to keep activations near unit variance, as a trained net's are."""
    generator = torch.Generator().manual_seed(5)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(3)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) * 0.5 + 0.5
        elif len(shape) == 4:
            state[key] = torch.randn(shape, generator=generator) / (shape[0] * 4) ** 0.5
        elif key.startswith("class_embedding") or key.endswith(".weight"):
            state[key] = torch.randn(shape, generator=generator) * 0.2 + (0.0 if key.startswith("class") else 1.0)
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state


def test_checkpoint_loads_and_plain_dcgan_is_refused(tmp_path: Path) -> None:
    saved = random_state_dict(conditional_dcgan_shapes())
    torch.save({"state_dict": saved}, tmp_path / "cdcgan.pth")
    state = instantiate(zoo.get("conditional-dcgan"), tmp_path / "cdcgan.pth").state_dict()
    assert set(state) == set(saved)
    assert all(torch.equal(state[key], saved[key]) for key in saved)

    plain = {k: v for k, v in random_state_dict(conditional_dcgan_shapes(nz=NZ)).items() if k.startswith("main.")}
    torch.save(plain, tmp_path / "netG_epoch_24.pth")
    with pytest.raises(
        ProdgenError, match=r"does not match architecture 'conditional-dcgan': missing class_embedding\.weight"
    ):
        instantiate(zoo.get("conditional-dcgan"), tmp_path / "netG_epoch_24.pth")


def test_served_contract_names_the_class_input_and_count() -> None:
    model = zoo.get("conditional-dcgan")
    assert [(s.name, s.dtype, s.dims) for s in model.inputs] == [("z", "FP32", (100,)), ("class_id", "INT64", (1,))]
    config = onnxruntime_config(model, "conditional-dcgan", BatchingOptions())
    assert config.parameters["prodgen.num_classes"].string_value == str(NUM_CLASSES)


def test_onnx_matches_pytorch_and_the_class_steers_the_image(tmp_path: Path) -> None:
    model = zoo.get("conditional-dcgan")
    torch.save(random_state_dict(conditional_dcgan_shapes()), tmp_path / "cdcgan.pth")
    graph = serving_module(model, tmp_path / "cdcgan.pth")
    cases = verification_cases(model)
    assert len({int(c) for case in cases for c in case["class_id"].ravel()}) > 3
    export_onnx(graph, model, cases[0], tmp_path / "model.onnx")
    parity = verify_onnx(graph, model, tmp_path / "model.onnx", cases)
    assert parity.fraction_within_one_level >= 0.999, parity.describe()

    z = np.repeat(latents_from_seed(7, 1, NZ), NUM_CLASSES, axis=0)
    classes = np.arange(NUM_CLASSES, dtype=np.int64).reshape(-1, 1)
    (served,) = onnx_session(tmp_path / "model.onnx").run(None, {"z": z, "class_id": classes})
    (reference,) = run_pytorch(graph, model, {"z": z, "class_id": classes})
    assert served.shape == (NUM_CLASSES, 64, 64, 3)
    assert np.mean(np.abs(served.astype(int) - reference.astype(int)) <= 1) >= 0.999
    assert len({image.tobytes() for image in served}) == NUM_CLASSES


@pytest.mark.parametrize("class_id", [-1, NUM_CLASSES])
def test_a_category_out_of_range_fails_rather_than_drawing_another(tmp_path: Path, class_id: int) -> None:
    model = zoo.get("conditional-dcgan")
    graph = serving_module(model)
    export_onnx(graph, model, verification_cases(model)[0], tmp_path / "model.onnx")
    inputs = {"z": latents_from_seed(1, 1, NZ), "class_id": np.array([[class_id]], dtype=np.int64)}
    with pytest.raises(InvalidArgument, match="out of data bounds"):
        onnx_session(tmp_path / "model.onnx").run(None, inputs)
    with pytest.raises(IndexError):
        run_pytorch(graph, model, inputs)
