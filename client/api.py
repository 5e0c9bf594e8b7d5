"""The Python client a shop's service imports: prodgen models over Triton gRPC.

    from prodgen.client import ProdgenClient
    with ProdgenClient("localhost:8001") as client:
        images = client.generate("dcgan", seed=7, count=4)      # (4, 64, 64, 3) uint8
        styled = client.stylize("fast-neural-style", photo)     # (H, W, 3) uint8

Everything about a model (tensor names, dims, max batch, image bounds, task and the typed
facts of `prodgen.model_facts`) is read from the server's model config, decoded once per
model, so the client works against the embedded server and a production Triton alike and
needs neither torch nor the zoo. Inputs are filled by their kind (image, latent, class id,
scalar setting), not by their names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.utils import InferenceServerException

from prodgen.client import diffusion
from prodgen.client.failures import describe_failure
from prodgen.client.fleet import ChannelSecurity, Fleet, FleetPolicy
from prodgen.client.health_probe import Health, probe_health
from prodgen.client.shared_memory import SharedMemoryRegions, check_same_host
from prodgen.client.tiling import Tiling, tile_spans, upscale_tiled
from prodgen.client.urls import grpc_target
from prodgen.contract import ImageBounds, InputKind, TensorSpec, check_image_array, check_values
from prodgen.errors import ProdgenError
from prodgen.model_facts import ModelFacts, config_facts
from prodgen.model_repository.config import input_ranges, tensor_specs
from prodgen.seeding import latents_from_seed
from prodgen.suggest import did_you_mean
from prodgen.triton_request import DEFAULT_URL, infer_inputs, requested_outputs

__all__ = ["DEFAULT_URL", "Health", "ProdgenClient", "ServedModel"]

T = TypeVar("T")

Progress = Callable[[int, int], None]
"""Told (done, total) as work proceeds: images of a batch, tiles of an upscale."""

TASKS = {"generate": "a generator", "stylize": "a style model", "upscale": "an upscaler", "cutout": "a cutout model"}
"""What each task's model is called; each task has its own command, `prodgen <task>`."""


@dataclass(frozen=True)
class ServedModel:
    """A served model as its config describes it: tensors, batching, and prodgen's published facts."""

    name: str
    task: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    bounds: ImageBounds | None
    facts: ModelFacts = field(default_factory=ModelFacts)
    zoo_model: str | None = None
    """The zoo architecture it was exported from, when prodgen exported it."""

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)

    def inputs_of(self, kind: InputKind) -> tuple[TensorSpec, ...]:
        return tuple(spec for spec in self.inputs if spec.kind == kind)


def served_model(name: str, config: mc.ModelConfig) -> ServedModel:
    """What a client needs to know about a model, decoded once from the config the server reports."""
    published = config_facts(config)
    ranges = input_ranges(config)
    return ServedModel(
        name=name,
        task=published.task,
        inputs=tuple(replace(spec, value_range=ranges.get(spec.name)) for spec in tensor_specs(list(config.input))),
        outputs=tensor_specs(list(config.output)),
        max_batch_size=config.max_batch_size,
        bounds=published.bounds,
        facts=published.facts,
        zoo_model=published.zoo_model,
    )


def scalar_inputs(model: ServedModel, count: int, **given: float | None) -> dict[str, np.ndarray]:
    """Every scalar input of `model`: the value given by the caller, else the model's published default."""
    scalars = [spec.name for spec in model.inputs_of("scalar")]
    for option, value in given.items():
        if value is not None and option not in scalars:
            raise ProdgenError(f"model '{model.name}' takes no {option}")
    values = {name: given.get(name) for name in scalars}
    return {
        name: np.full((count, 1), model.facts.input_default(name) if value is None else value, dtype=np.float32)
        for name, value in values.items()
    }


def generator_inputs(
    model: ServedModel, seed: int, count: int, class_id: int | None, truncation: float | None
) -> dict[str, np.ndarray]:
    """A generator's inputs: latents of seeds seed, seed+1, …, its class id and scalar settings if it takes them."""
    name = model.name
    latents = model.inputs_of("latent")
    if not latents:
        raise ProdgenError(f"model '{name}' is not a generator (it takes no latent input)")
    inputs = {spec.name: latents_from_seed(seed, count, spec.dims[0]) for spec in latents}
    class_inputs = model.inputs_of("class")
    if class_inputs:
        classes = model.facts.num_classes or 1
        if class_id is None or not 0 <= class_id < classes:
            given = "no class id" if class_id is None else f"class id {class_id}"
            raise ProdgenError(f"model '{name}' is conditional: {given} given, expected 0..{classes - 1}")
        inputs.update({spec.name: np.full((count, 1), class_id, dtype=np.int64) for spec in class_inputs})
    elif class_id is not None:
        raise ProdgenError(f"model '{name}' takes no class id")
    inputs.update(scalar_inputs(model, count, truncation=truncation))
    return inputs


def check_task(model: ServedModel, task: str) -> None:
    """Each command serves one task; a model of another task is refused the same way by all."""
    if model.task != task:
        what = TASKS.get(model.task or "", f"a model of task '{model.task}'")
        hint = f"; use `prodgen {model.task}`" if model.task in TASKS else ""
        raise ProdgenError(f"model '{model.name}' is {what}, not {TASKS[task]}{hint}")


def image_batch(model: ServedModel, image: np.ndarray, label: str) -> np.ndarray:
    """One image (H, W, 3) or a batch (N, H, W, 3) as a checked batch within the model's image bounds."""
    batch = image[np.newaxis] if image.ndim == 3 else image
    check_image_array(label, batch)
    if model.bounds is not None:
        model.bounds.check(label, batch.shape[1], batch.shape[2])
    return batch


def stylize_inputs(
    model: ServedModel, image: np.ndarray, style: np.ndarray | None, alpha: float | None
) -> dict[str, np.ndarray]:
    """A style model's inputs: the content batch, the style picture repeated for it if the model takes one, scalars."""
    check_task(model, "stylize")
    image_inputs = model.inputs_of("image")
    if not image_inputs:
        raise ProdgenError(f"model '{model.name}' takes no image (task: {model.task})")
    content, *style_inputs = image_inputs
    inputs = {content.name: image_batch(model, image, "image")}
    count = len(inputs[content.name])
    if style_inputs:
        if style is None:
            raise ProdgenError(f"model '{model.name}' needs a style image (--style)")
        style_batch = np.repeat(image_batch(model, style, "style"), count, axis=0)
        inputs.update({spec.name: style_batch for spec in style_inputs})
    elif style is not None:
        raise ProdgenError(f"model '{model.name}' takes no style image")
    inputs.update(scalar_inputs(model, count, alpha=alpha))
    return inputs


def cutout_inputs(model: ServedModel, image: np.ndarray) -> dict[str, np.ndarray]:
    """A cutout model's input: one photo (H, W, 3) as a checked batch of one."""
    check_task(model, "cutout")
    (photo,) = model.inputs_of("image")
    return {photo.name: image_batch(model, image, "image")}


def upscale_plan(model: ServedModel, image: np.ndarray, tile: int | None, overlap: int) -> tuple[int, Tiling | None]:
    """How an upscaler takes `image` (H, W, 3): its scale, and None for one request within its bounds
    or the tiles to cut."""
    check_task(model, "upscale")
    scale = model.facts.scale
    if scale is None:
        raise ProdgenError(f"model '{model.name}' is not an upscaler (its config publishes no scale)")
    bounds = model.bounds
    if bounds is None or max(image.shape[:2]) <= bounds.max_side:
        return scale, None
    check_image_array("image", image[np.newaxis])
    if min(image.shape[:2]) < bounds.min_side:
        raise ProdgenError(
            f"image: {image.shape[1]}×{image.shape[0]} has a side below the model's minimum {bounds.min_side} pixels"
        )
    multiple = model.facts.side_multiple
    side = min(tile or bounds.opt_side, bounds.max_side)
    return scale, Tiling(
        tile=side - side % multiple, overlap=overlap, batch=max(model.max_batch_size, 1), multiple_of=multiple
    )


def infer_requests(
    model: ServedModel, inputs: dict[str, np.ndarray]
) -> list[tuple[list[grpcclient.InferInput], list[grpcclient.InferRequestedOutput]]]:
    """Check `inputs` against the model and split them into requests of at most max_batch_size.

    `tritonclient.grpc.aio` takes the same `InferInput` objects, so the async client uses these too."""
    return [
        (infer_inputs(model.inputs, chunk), requested_outputs(model.outputs)) for chunk in request_chunks(model, inputs)
    ]


def request_chunks(model: ServedModel, inputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Check `inputs` against the model and split them into chunks of at most max_batch_size (views, no copies)."""
    name = model.name
    for spec in model.inputs:
        if spec.name not in inputs and not spec.optional:
            raise ProdgenError(f"{name}: input '{spec.name}' is required")
    present = [spec for spec in model.inputs if spec.name in inputs]
    for spec in present:
        array = inputs[spec.name]
        if array.dtype != spec.numpy_dtype:
            raise ProdgenError(
                f"{name}: input '{spec.name}' has dtype {array.dtype}, expected {np.dtype(spec.numpy_dtype)}"
            )
        check_values(f"{name}: input '{spec.name}'", array, spec.value_range)
    batch = len(inputs[present[0].name])
    step = max(model.max_batch_size, 1)
    return [{spec.name: inputs[spec.name][start : start + step] for spec in present} for start in range(0, batch, step)]


SIDE_MARGIN = 16
"""Pixels added to each predicted output side when sizing a shared-memory output region: a
style network's down- and up-sampling may round a side that is not a multiple of its stride."""


def output_capacity(model: ServedModel, spec: TensorSpec, chunk: dict[str, np.ndarray]) -> tuple[int, ...] | None:
    """The largest shape `spec` can have for `chunk`: fixed dims as they are; an image output's
    free sides from the first image input (times the published upscale factor) plus a margin;
    None when nothing tells."""
    batch = len(next(iter(chunk.values())))
    if all(dim >= 0 for dim in spec.dims):
        return (batch, *spec.dims)
    images = [chunk[image.name] for image in model.inputs_of("image") if image.name in chunk]
    if not images or len(spec.dims) != 3 or model.task not in ("stylize", "upscale", "cutout"):
        return None
    scale = model.facts.scale or 1
    height, width = (scale * side + SIDE_MARGIN for side in images[0].shape[1:3])
    return (
        batch,
        height if spec.dims[0] < 0 else spec.dims[0],
        width if spec.dims[1] < 0 else spec.dims[1],
        spec.dims[2],
    )


class ProdgenClient:
    """One Triton at `url`, or a fleet: `urls=[...]` and/or `dns="triton-headless:8001"` (one replica
    per address), with retries on another replica within `timeout_s`, the deadline of each call."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        timeout_s: float = 60.0,
        *,
        urls: Sequence[str] = (),
        dns: str | None = None,
        security: ChannelSecurity | None = None,
        policy: FleetPolicy | None = None,
        shared_memory: bool = False,
    ) -> None:
        """`shared_memory=True`: images go through Triton's system shared memory instead of the
        gRPC messages (`prodgen.client.shared_memory`); only for a server on this machine."""
        self.timeout_s = timeout_s
        self._client: grpcclient.InferenceServerClient | Fleet
        self._shared: SharedMemoryRegions | None = None
        if urls or dns or security or policy:
            if shared_memory:
                raise ProdgenError("shared memory works with one server on this machine, not with a fleet")
            self._client = Fleet(urls, dns, security, policy)
            self.url = ", ".join([*urls, *([dns] if dns else [])])
        else:
            self.url = url
            target = grpc_target(url)
            if shared_memory:
                check_same_host(target)
            self._client = grpcclient.InferenceServerClient(target)
            if shared_memory:
                self._shared = SharedMemoryRegions(self._client, target)
        self._models: dict[str, ServedModel] = {}

    @property
    def fleet(self) -> Fleet | None:
        """The replicas' health and per-replica call counts, when this client talks to a fleet."""
        return self._client if isinstance(self._client, Fleet) else None

    @property
    def shared_memory_regions(self) -> list[str]:
        """Names of the shared-memory regions this client has registered with its server now."""
        return self._shared.names if self._shared is not None else []

    def close(self) -> None:
        try:
            if self._shared is not None:
                self._shared.close(self.timeout_s)
        finally:
            self._client.close()

    def __enter__(self) -> ProdgenClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, what: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, client_timeout=self.timeout_s, **kwargs)
        except InferenceServerException as error:
            raise describe_failure(
                what, self.url, self.timeout_s, error.status() or "", error.message() or str(error)
            ) from error

    def health(self) -> Health:
        """Live, ready and each model's readiness: of `url`, or of whichever replica of a fleet answers."""
        if self.fleet is None:
            return probe_health(self.url, self.timeout_s)
        live = self._call("server live", self._client.is_server_live)
        ready = self._call("server ready", self._client.is_server_ready)
        metadata = self._call("server metadata", self._client.get_server_metadata)
        index = self._call("repository index", self._client.get_model_repository_index)
        models_ready = {entry.name: entry.state == "READY" for entry in index.models}
        return Health(self.url, live, ready, metadata.version, models_ready)

    def model_names(self) -> list[str]:
        index = self._call("repository index", self._client.get_model_repository_index)
        return sorted({entry.name for entry in index.models if entry.state == "READY"})

    def model(self, name: str) -> ServedModel:
        if name not in self._models:
            if name not in self.model_names():
                served = self.model_names()
                raise ProdgenError(
                    f"model '{name}' is not served at {self.url}{did_you_mean(name, served)} "
                    f"(served: {', '.join(served) or 'none'})"
                )
            config = self._call(f"config of {name}", self._client.get_model_config, name).config
            self._models[name] = served_model(name, config)
        return self._models[name]

    def models(self) -> list[ServedModel]:
        return [self.model(name) for name in self.model_names()]

    def infer(
        self, name: str, inputs: dict[str, np.ndarray], progress: Progress | None = None
    ) -> dict[str, np.ndarray]:
        """Run `name` on a batch, split into chunks of the model's max_batch_size."""
        model = self.model(name)
        chunks: list[dict[str, np.ndarray]] = []
        total = next(len(inputs[spec.name]) for spec in model.inputs if spec.name in inputs)
        done = 0
        for chunk in request_chunks(model, inputs):
            what = f"inference on {name}"
            if self._shared is not None:
                capacity = [(spec, output_capacity(model, spec, chunk)) for spec in model.outputs]
                chunks.append(self._call(what, self._shared.infer, name, model.inputs, chunk, capacity))
            else:
                request, outputs = infer_inputs(model.inputs, chunk), requested_outputs(model.outputs)
                result = self._call(what, self._client.infer, name, request, outputs=outputs)
                chunks.append({spec.name: result.as_numpy(spec.name) for spec in model.outputs})
            done += len(chunks[-1][model.outputs[0].name])
            if progress is not None:
                progress(done, total)
        if len(chunks) == 1 and all(array.flags.writeable for array in chunks[0].values()):
            return chunks[0]  # already the caller's own arrays (shared memory copies them out): no second copy
        return {spec.name: np.concatenate([chunk[spec.name] for chunk in chunks]) for spec in model.outputs}

    def _single_output(self, name: str, inputs: dict[str, np.ndarray], progress: Progress | None = None) -> np.ndarray:
        model = self.model(name)
        return self.infer(name, inputs, progress)[model.outputs[0].name]

    def generate(
        self,
        name: str,
        seed: int = 0,
        count: int = 1,
        class_id: int | None = None,
        truncation: float | None = None,
        progress: Progress | None = None,
    ) -> np.ndarray:
        """`count` images from latents of seeds seed, seed+1, …: the same pictures on every server."""
        inputs = generator_inputs(self.model(name), seed, count, class_id, truncation)
        return self._single_output(name, inputs, progress)

    def stylize(
        self, name: str, image: np.ndarray, style: np.ndarray | None = None, alpha: float | None = None
    ) -> np.ndarray:
        """Restyle one image (H, W, 3) or a batch of same-size images (N, H, W, 3)."""
        result = self._single_output(name, stylize_inputs(self.model(name), image, style, alpha))
        return result[0] if image.ndim == 3 else result

    def cutout(self, name: str, images: Sequence[np.ndarray], progress: Progress | None = None) -> list[np.ndarray]:
        """The product's matte (H, W) uint8 (0 background … 255 product) for each photo (H, W, 3),
        at the photo's own size; see `prodgen.matte_checks.check_matte` before using one."""
        mattes = []
        for done, image in enumerate(images, start=1):
            mattes.append(self._single_output(name, cutout_inputs(self.model(name), image))[0, :, :, 0])
            if progress is not None:
                progress(done, len(images))
        return mattes

    def upscale(
        self, name: str, image: np.ndarray, tile: int | None = None, overlap: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        """Upscale one image (H, W, 3); images beyond the model's bounds go in overlapping tiles,
        and `progress` is told (tiles done, tiles in all)."""
        model = self.model(name)
        scale, tiling = upscale_plan(model, image, tile, overlap)
        image_input = model.inputs_of("image")[0].name
        output = model.outputs[0].name

        done = 0

        def run(batch: np.ndarray) -> np.ndarray:
            nonlocal done
            result = self.infer(name, {image_input: batch})[output]
            done += len(batch)
            if progress is not None:
                progress(done, total)
            return result

        if tiling is None:
            total = 1
            return run(image_batch(model, image, "image"))[0]
        total = len(tile_spans(image.shape[0], tiling)) * len(tile_spans(image.shape[1], tiling))
        return upscale_tiled(image, run, scale, tiling)

    # Latent diffusion (client/diffusion.py): one call to the pipeline model runs the whole loop.

    def txt2img(
        self,
        name: str,
        prompt: str,
        sampling: diffusion.Sampling | None = None,
        height: int | None = None,
        width: int | None = None,
        conditions: diffusion.XlConditions | None = None,
    ) -> np.ndarray:
        """Pictures (N, H, W, 3) for `prompt`; picture i uses seed + i. `conditions`: SDXL's size/crop conditioning."""
        return diffusion.txt2img(self, name, prompt, sampling, height, width, conditions)

    def img2img(
        self,
        name: str,
        prompt: str,
        image: np.ndarray,
        strength: float | None = None,
        sampling: diffusion.Sampling | None = None,
        fit: bool = True,
    ) -> np.ndarray:
        """`image` (H, W, 3) re-drawn towards `prompt`; strength 0..1 is how much changes. Any size: the
        server fits it to the model and answers at its own size (`fit=False` refuses instead)."""
        return diffusion.img2img(self, name, prompt, image, strength, sampling, fit)

    def inpaint(
        self,
        name: str,
        prompt: str,
        image: np.ndarray,
        mask: np.ndarray,
        strength: float | None = None,
        sampling: diffusion.Sampling | None = None,
        fit: bool = True,
    ) -> np.ndarray:
        """`image` with the masked area (255) regenerated from `prompt`; the rest is the image's own pixels."""
        return diffusion.inpaint(self, name, prompt, image, mask, strength, sampling, fit)

    def txt2latents(
        self, name: str, prompt: str, denoising_end: float, sampling: diffusion.Sampling | None = None,
        height: int | None = None, width: int | None = None, conditions: diffusion.XlConditions | None = None,
    ) -> np.ndarray:  # fmt: skip
        """SDXL base: latents handed off at `denoising_end` (a fraction of the schedule) for `refine`."""
        return diffusion.txt2latents(self, name, prompt, denoising_end, sampling, height, width, conditions)

    def refine(
        self, name: str, prompt: str, latents: np.ndarray, denoising_start: float,
        sampling: diffusion.Sampling | None = None, conditions: diffusion.XlConditions | None = None,
    ) -> np.ndarray:  # fmt: skip
        """SDXL refiner: pictures from a base's handed-off `latents`, continued at `denoising_start`."""
        return diffusion.refine(self, name, prompt, latents, denoising_start, sampling, conditions)

    def restage(
        self,
        name: str,
        prompt: str,
        photo: np.ndarray,
        sampling: diffusion.Sampling | None = None,
        cutout_model: str | None = None,
        upscaler: str | None = None,
        force: bool = False,
    ) -> diffusion.Restaged:
        """A product photo (RGB + `cutout_model`, or an RGBA cutout) in a new scene from `prompt`, at the
        photo's own size, in one server call; the product's opaque pixels are kept exactly."""
        return diffusion.restage(self, name, prompt, photo, sampling, cutout_model, upscaler, force)
