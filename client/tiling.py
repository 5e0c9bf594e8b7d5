"""Upscale an image larger than a model's bounds: overlapping tiles, blended seams, bounded memory.

Pure numpy, no server: `infer` is any callable that maps a uint8 NHWC batch of tiles to the
uint8 NHWC batch of upscaled tiles (a Triton request, an ONNX Runtime session, a PyTorch
module), so a 4000×4000 photo can go through a model that accepts 512×512 at most.

How tiles are laid out and blended, along each axis:

- tiles are `tile` input pixels long and neighbours share at least `overlap` pixels; the last
  tile is pulled back to end at the image's edge (so it may share more), and tile origins are
  multiples of `multiple_of` (pixel-unshuffle models see the same pixel grid as in one pass);
- in each overlap, `(overlap - blend) // 2` pixels next to a tile's inner edge are context
  only (weight 0: the model saw padding, not the neighbour, near that edge), and the tiles
  cross-fade with cosine ramps over the `blend` pixels in the middle; weights are normalised
  to sum to one, and a 2-D tile's weight is the product of its two axes' weights.

So wherever a model's receptive field reaches no farther than that context (input pixels),
every tile that contributes to an output pixel computed it exactly as one pass would, and the
blend reproduces the single pass (up to the runtime's own rounding). Models with a larger
receptive field (RRDBNet) still get seamless cross-fades.

Memory: tiles are processed one row of tiles at a time; beyond the output image itself
(or a caller's `out` array, e.g. a `numpy.memmap`) about one row of float32 accumulators
(`tile·scale × width·scale` pixels) and its uint8 copy are held, plus `batch` tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from prodgen.errors import ProdgenError

Infer = Callable[[np.ndarray], np.ndarray]
"""uint8 (N, h, w, 3) tiles -> uint8 (N, h·scale, w·scale, 3) upscaled tiles."""

Span = tuple[int, int]


@dataclass(frozen=True)
class Tiling:
    """How to cut an image into tiles; all sizes in input pixels."""

    tile: int = 256
    overlap: int = 32
    blend: int | None = None
    """Width of the cross-fade in the middle of each overlap; `overlap // 2` if None."""
    batch: int = 4
    """Most tiles sent to `infer` in one call."""
    multiple_of: int = 1
    """Tile origins are multiples of this (2 or 4 for pixel-unshuffle models)."""

    def __post_init__(self) -> None:
        if self.multiple_of < 1 or self.batch < 1:
            raise ProdgenError("tiling: multiple_of and batch must be at least 1")
        if self.tile < 2 * self.multiple_of or self.tile % self.multiple_of:
            raise ProdgenError(
                f"tiling: tile {self.tile} must be a multiple of {self.multiple_of} and at least {2 * self.multiple_of}"
            )
        if not 0 <= self.overlap < self.tile or self.overlap % self.multiple_of:
            raise ProdgenError(
                f"tiling: overlap {self.overlap} must be a multiple of {self.multiple_of} in 0..{self.tile - 1}"
            )
        if not 0 <= self.blend_width <= self.overlap:
            raise ProdgenError(f"tiling: blend {self.blend} must be in 0..overlap ({self.overlap})")

    @property
    def blend_width(self) -> int:
        return self.overlap // 2 if self.blend is None else self.blend

    @property
    def context(self) -> int:
        """Input pixels next to a tile's inner edge that never reach the output."""
        return (self.overlap - self.blend_width) // 2


def tile_spans(length: int, tiling: Tiling) -> list[Span]:
    """[start, end) of each tile along an axis of `length` input pixels."""
    if length <= tiling.tile:
        return [(0, length)]
    stride = tiling.tile - tiling.overlap
    starts = [0]
    while starts[-1] + tiling.tile < length:
        following = starts[-1] + stride
        if following + tiling.tile >= length:
            # pull the last tile back to end at the edge, keeping its origin on the grid
            following = math.ceil((length - tiling.tile) / tiling.multiple_of) * tiling.multiple_of
        starts.append(following)
    return [(start, min(start + tiling.tile, length)) for start in starts]


def _ramp(distance: np.ndarray, tiling: Tiling) -> np.ndarray:
    """Weight by distance (input pixels) from a tile's inner edge: 0 in the context, a cosine
    rise over half the blend, 1 from the middle of the overlap on."""
    half = tiling.blend_width / 2
    if half == 0:
        return (distance >= tiling.overlap / 2).astype(np.float64)
    rise = np.clip((distance - tiling.context) / half, 0.0, 1.0)
    return (1.0 - np.cos(np.pi * rise)) / 2.0


def axis_weights(spans: list[Span], length: int, scale: int, tiling: Tiling) -> list[np.ndarray]:
    """Per tile, the float32 weight of each of its output pixels along one axis; they sum to
    one at every output pixel of the axis."""
    raw = []
    for start, end in spans:
        centres = (np.arange(start * scale, end * scale) + 0.5) / scale
        weight = np.ones(centres.shape, dtype=np.float64)
        if start > 0:
            weight *= _ramp(centres - start, tiling)
        if end < length:
            weight *= _ramp(end - centres, tiling)
        raw.append(weight)
    total = np.zeros(length * scale, dtype=np.float64)
    for (start, end), weight in zip(spans, raw, strict=True):
        total[start * scale : end * scale] += weight
    return [
        (weight / total[start * scale : end * scale]).astype(np.float32)
        for (start, end), weight in zip(spans, raw, strict=True)
    ]


def _check_image(image: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ProdgenError(
            f"tiling: image of dtype {image.dtype} and shape {image.shape} given, expected uint8 (H, W, 3)"
        )


def _run(infer: Infer, tiles: list[np.ndarray], scale: int) -> np.ndarray:
    batch = np.stack(tiles)
    result = np.asarray(infer(batch))
    n, h, w, _ = batch.shape
    expected = (n, h * scale, w * scale, 3)
    if result.shape != expected or result.dtype != np.uint8:
        raise ProdgenError(
            f"tiling: the model returned {result.dtype} {tuple(result.shape)} for tiles {tuple(batch.shape)}; "
            f"expected uint8 {expected} (scale {scale})"
        )
    return result


def _batches(cols: list[Span], size: int) -> Iterator[list[int]]:
    """Indices of consecutive tiles of equal width, at most `size` at a time."""
    pending: list[int] = []
    for j, (left, right) in enumerate(cols):
        if pending and (len(pending) == size or cols[pending[0]][1] - cols[pending[0]][0] != right - left):
            yield pending
            pending = []
        pending.append(j)
    yield pending


def _add_row_of_tiles(
    band: np.ndarray,
    strip: np.ndarray,
    infer: Infer,
    scale: int,
    tiling: Tiling,
    cols: list[Span],
    row_weight: np.ndarray,
    col_weights: list[np.ndarray],
) -> None:
    """Upscale each tile of `strip` (one row of tiles) and add it, weighted, into `band`."""
    for indices in _batches(cols, tiling.batch):
        outputs = _run(infer, [strip[:, cols[j][0] : cols[j][1]] for j in indices], scale)
        for j, upscaled in zip(indices, outputs, strict=True):
            weight = row_weight[:, None, None] * col_weights[j][None, :, None]
            band[:, cols[j][0] * scale : cols[j][1] * scale] += upscaled * weight


def iter_bands(image: np.ndarray, infer: Infer, scale: int, tiling: Tiling) -> Iterator[tuple[int, np.ndarray]]:
    """Upscale `image` one row of tiles at a time, yielding finished output rows in order as
    (first output row, uint8 rows of shape (n, width·scale, 3))."""
    _check_image(image)
    height, width = image.shape[:2]
    rows, cols = tile_spans(height, tiling), tile_spans(width, tiling)
    row_weights = axis_weights(rows, height, scale, tiling)
    col_weights = axis_weights(cols, width, scale, tiling)
    carried = np.zeros((0, width * scale, 3), dtype=np.float32)
    for index, ((top, bottom), row_weight) in enumerate(zip(rows, row_weights, strict=True)):
        band = np.zeros(((bottom - top) * scale, width * scale, 3), dtype=np.float32)
        band[: carried.shape[0]] = carried
        _add_row_of_tiles(band, image[top:bottom], infer, scale, tiling, cols, row_weight, col_weights)
        # rows above the next row of tiles receive nothing more: finish them, carry the rest
        done = (rows[index + 1][0] - top) * scale if index + 1 < len(rows) else band.shape[0]
        carried = band[done:].copy()
        finished = band[:done]
        np.clip(np.rint(finished, out=finished), 0, 255, out=finished)
        finished = finished.astype(np.uint8)
        del band
        yield top * scale, finished


def upscale_tiled(
    image: np.ndarray, infer: Infer, scale: int, tiling: Tiling = Tiling(), out: np.ndarray | None = None
) -> np.ndarray:
    """The whole upscaled image (H·scale, W·scale, 3) uint8, written into `out` if given."""
    _check_image(image)
    shape = (image.shape[0] * scale, image.shape[1] * scale, 3)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ProdgenError(f"tiling: out is {out.dtype} {out.shape}, expected uint8 {shape}")
    for first, rows in iter_bands(image, infer, scale, tiling):
        out[first : first + rows.shape[0]] = rows
    return out
