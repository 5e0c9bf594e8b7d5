"""Tiny served models that keep the cutout and upscale contracts, for restage tests (the zoo's cutout models
land with another branch; a real upscaler would cost an export per test session).

The contract of every served cutout model: input `image` UINT8 (N, H, W, 3) RGB within the model's bounds,
output `matte` UINT8 (N, H, W, 1) (0 background … 255 product) of the same H×W, and `prodgen.task` = "cutout"
in its config. This one's "product" is an ellipse in the middle of the frame, half its width and height, with
a soft rim, whatever the photo shows: a real ONNX graph served by Triton's onnxruntime backend, so the restage
model's BLS call, its fitting into the bounds and the matte resizing are exercised for real.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tritonclient.grpc import model_config_pb2 as mc

from prodgen.contract import ImageBounds
from prodgen.model_facts import PARAMETER_PREFIX, ModelFacts, PublishedFacts, to_parameters
from prodgen.model_repository.config import to_pbtxt
from prodgen.model_repository.publish import publish

CUTOUT_STAND_IN = "cutout_stand_in"
UPSCALER_STAND_IN = "upscaler_stand_in"
"""The names the diffusion server fixture (tests/conftest.py) serves the stand-ins under."""
BOUNDS = ImageBounds(min_side=16, max_side=256, opt_side=128)
"""Smaller than the 600×400 test photo, so the restage model must fit the photo into them."""


class EllipseCutout(nn.Module):
    """Matte 255 inside an ellipse of half the frame's width and height, falling to 0 over its rim."""

    def __init__(self) -> None:
        super().__init__()
        self.radius = nn.Parameter(torch.tensor(0.5))
        self.rim = nn.Parameter(torch.tensor(0.1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[1], image.shape[2]
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height - 0.5
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width - 0.5
        distance = torch.sqrt((2 * ys[:, None]) ** 2 + (2 * xs[None, :]) ** 2) / self.radius
        alpha = torch.clamp((1.0 - distance) / self.rim, 0.0, 1.0)
        rows = image[..., :1].to(torch.float32) * 0.0  # one matte per photo: the batch comes from the image
        return torch.round(alpha[None, :, :, None] * 255.0 + rows).to(torch.uint8)


class NearestTwice(nn.Module):
    """An upscaler of the zoo's contract (`input_image` → `output_image`, uint8 NHWC): each pixel repeated 2×2."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return image.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)


def _publish(
    repository: Path, name: str, module: nn.Module, names: tuple[str, str], channels: int, facts: PublishedFacts
) -> None:
    """Export `module` (uint8 NHWC in, uint8 NHWC out) to ONNX and publish it as `name` with `facts`."""
    source, target = names

    def write_version(folder: Path) -> None:
        example = torch.zeros((1, 40, 60, 3), dtype=torch.uint8)
        torch.onnx.export(
            module.eval(),
            (example,),
            str(folder / "model.onnx"),
            input_names=[source],
            output_names=[target],
            dynamic_axes={source: {0: "n", 1: "h", 2: "w"}, target: {0: "n", 1: "h", 2: "w"}},
            opset_version=18,
            dynamo=False,
        )

    def config_text(_version: int) -> str:
        config = mc.ModelConfig(name=name, backend="onnxruntime", default_model_filename="model.onnx", max_batch_size=2)
        config.input.add(name=source, data_type=mc.TYPE_UINT8, dims=[-1, -1, 3])
        config.output.add(name=target, data_type=mc.TYPE_UINT8, dims=[-1, -1, channels])
        config.dynamic_batching.max_queue_delay_microseconds = 0
        config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
        for key, value in to_parameters(facts).items():
            config.parameters[PARAMETER_PREFIX + key].string_value = value
        return to_pbtxt(config)

    publish(repository, name, write_version, config_text)


def publish_stand_ins(repository: Path) -> None:
    """The cutout stand-in and the upscaler stand-in, published into `repository`."""
    _publish(
        repository, CUTOUT_STAND_IN, EllipseCutout(), ("image", "matte"), 1, PublishedFacts("cutout", bounds=BOUNDS)
    )
    upscale = PublishedFacts("upscale", bounds=ImageBounds(8, 128, 64), facts=ModelFacts(scale=2))
    _publish(repository, UPSCALER_STAND_IN, NearestTwice(), ("input_image", "output_image"), 3, upscale)
