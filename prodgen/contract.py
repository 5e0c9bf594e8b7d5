"""The served tensor contract shared by export, the model repository, serving and clients.

Images travel as UINT8 NHWC RGB 0..255 both ways; latents as FP32. Every tensor is
named the same in ONNX, TensorRT and Triton. Shapes here exclude the batch dimension,
which is always dynamic (`max_batch_size > 0`); -1 marks a dynamic dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

IMAGE_CHANNELS = 3

TRITON_TO_NUMPY: dict[str, type] = {
    "UINT8": np.uint8,
    "FP32": np.float32,
    "FP16": np.float16,
    "INT64": np.int64,
    "BYTES": np.object_,
    "BOOL": np.bool_,
}

InputKind = Literal["image", "latent", "class", "scalar", "text", "other"]
"""What an input carries, read from its dtype and dims alone, so that a client, the payloads
of a benchmark and export verification all fill a new model's inputs the same way without
knowing their names: an image (UINT8 H×W×3), a latent vector (FP32, length > 1), a class id
(INT64, one value), a scalar setting (FP32, one value), text (BYTES, e.g. a prompt)."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output of a served model, without the batch dimension."""

    name: str
    dtype: str
    dims: tuple[int, ...]
    optional: bool = False
    value_range: tuple[float, float] | None = None
    """Inclusive bounds every value must lie in (alpha 0..1, class ids 0..classes-1); None: any
    value. Published in config.pbtxt, refused by the server and the client outside them."""

    @property
    def numpy_dtype(self) -> type:
        return TRITON_TO_NUMPY[self.dtype]

    @property
    def is_image(self) -> bool:
        return self.dtype == "UINT8" and len(self.dims) == 3 and self.dims[-1] == IMAGE_CHANNELS

    @property
    def kind(self) -> InputKind:
        if self.is_image:
            return "image"
        if self.dtype == "BYTES":
            return "text"
        if self.dims == (1,):
            return "scalar" if self.dtype == "FP32" else "class" if self.dtype == "INT64" else "other"
        if self.dtype == "FP32" and len(self.dims) == 1:
            return "latent"
        return "other"


@dataclass(frozen=True)
class ImageBounds:
    """The height and width an image model accepts, inclusive, and the size it is tuned for."""

    min_side: int
    max_side: int
    opt_side: int

    def check(self, name: str, height: int, width: int) -> None:
        from prodgen.errors import ProdgenError

        for label, side in (("height", height), ("width", width)):
            if not self.min_side <= side <= self.max_side:
                raise ProdgenError(
                    f"{name}: {label} {side} is outside the model's bounds {self.min_side}..{self.max_side} pixels"
                )


def image_spec(name: str, side: int = -1) -> TensorSpec:
    return TensorSpec(name, "UINT8", (side, side, IMAGE_CHANNELS))


def check_values(name: str, array: np.ndarray, value_range: tuple[float, float] | None) -> None:
    """Raise a clear error if a float input holds NaN/Inf or any value lies outside `value_range`."""
    from prodgen.errors import ProdgenError

    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ProdgenError(f"{name}: contains NaN or Inf, expected finite numbers")
    if value_range is not None and array.size:
        low, high = value_range
        outside = array[(array < low) | (array > high)]
        if outside.size:
            raise ProdgenError(f"{name}: {outside.flat[0]:g} is outside the allowed range {low:g}..{high:g}")


def check_image_array(name: str, array: np.ndarray) -> None:
    """Raise a clear error unless `array` is a batch of uint8 RGB images (N, H, W, 3)."""
    from prodgen.errors import ProdgenError

    if array.dtype != np.uint8:
        raise ProdgenError(f"{name}: dtype {array.dtype} given, expected uint8 (0..255)")
    if array.ndim != 4 or array.shape[-1] != IMAGE_CHANNELS:
        raise ProdgenError(f"{name}: shape {tuple(array.shape)} given, expected (batch, height, width, 3)")
