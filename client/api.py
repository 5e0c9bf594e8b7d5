"""The Python client a shop's service imports: prodgen models over Triton gRPC.

    from prodgen.client import ProdgenClient
    with ProdgenClient("localhost:8001") as client:
        images = client.generate("dcgan", seed=7, count=4)      # (4, 64, 64, 3) uint8
        styled = client.stylize("fast-neural-style", photo)     # (H, W, 3) uint8

Everything about a model (tensor names, dims, max batch, image bounds, task) is read
from the server's model config, so the client works against the embedded server and a
production Triton alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from prodgen.client.tiling import Tiling, tile_spans, upscale_tiled
from prodgen.client.urls import grpc_target
from prodgen.contract import ImageBounds, TensorSpec, check_image_array
from prodgen.errors import ProdgenError
from prodgen.model_repository.config import PARAMETER_PREFIX, tensor_specs
from prodgen.seeding import latents_from_seed
from prodgen.suggest import did_you_mean

DEFAULT_URL = "localhost:8001"

Progress = Callable[[int, int], None]
"""Told (done, total) as work proceeds: images of a batch, tiles of an upscale."""

TASKS = {"generate": "a generator", "stylize": "a style model", "upscale": "an upscaler"}
"""What each task's model is called; each task has its own command, `prodgen <task>`."""


@dataclass(frozen=True)
class ServedModel:
    name: str
    task: str | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    bounds: ImageBounds | None
    parameters: dict[str, str]

    def input(self, name: str) -> TensorSpec | None:
        return next((spec for spec in self.inputs if spec.name == name), None)


@dataclass(frozen=True)
class Health:
    url: str
    live: bool
    ready: bool
    server_version: str
    models_ready: dict[str, bool]


class ProdgenClient:
    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = 60.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(grpc_target(url))
        self._models: dict[str, ServedModel] = {}

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProdgenClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, what: str, function, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return function(*args, client_timeout=self.timeout_s, **kwargs)
        except InferenceServerException as error:
            status = error.status() or ""
            message = error.message() or str(error)
            if "UNAVAILABLE" in status and "socket closed" in message.lower():
                # something listens there but hangs up on HTTP/2: Triton's HTTP or metrics port, typically
                raise ProdgenError(
                    f"{self.url} accepts connections but does not speak gRPC: is it Triton's HTTP or metrics port? "
                    "expected the gRPC port (prodgen serve --grpc-port, 8001 by default)"
                ) from error
            if (
                "UNAVAILABLE" in status
                or "failed to connect" in message.lower()
                or "connection refused" in message.lower()
            ):
                raise ProdgenError(
                    f"cannot reach Triton at {self.url} ({what}); is `prodgen serve` running?"
                ) from error
            if "DEADLINE_EXCEEDED" in status or "Deadline Exceeded" in message:
                raise ProdgenError(
                    f"{what}: no answer from {self.url} within {self.timeout_s:g} s (--timeout)"
                ) from error
            raise ProdgenError(f"{what}: {message}") from error

    def health(self) -> Health:
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
            parameters = {
                key[len(PARAMETER_PREFIX) :]: value.string_value
                for key, value in config.parameters.items()
                if key.startswith(PARAMETER_PREFIX)
            }
            bounds = None
            if "min_side" in parameters:
                bounds = ImageBounds(
                    int(parameters["min_side"]), int(parameters["max_side"]), int(parameters["opt_side"])
                )
            self._models[name] = ServedModel(
                name=name,
                task=parameters.get("task"),
                inputs=tensor_specs(list(config.input)),
                outputs=tensor_specs(list(config.output)),
                max_batch_size=config.max_batch_size,
                bounds=bounds,
                parameters=parameters,
            )
        return self._models[name]

    def models(self) -> list[ServedModel]:
        return [self.model(name) for name in self.model_names()]

    def _check_task(self, model: ServedModel, task: str) -> None:
        """Each command serves one task; a model of another task is refused the same way by all."""
        if model.task != task:
            what = TASKS.get(model.task or "", f"a model of task '{model.task}'")
            hint = f"; use `prodgen {model.task}`" if model.task in TASKS else ""
            raise ProdgenError(f"model '{model.name}' is {what}, not {TASKS[task]}{hint}")

    def infer(
        self, name: str, inputs: dict[str, np.ndarray], progress: Progress | None = None
    ) -> dict[str, np.ndarray]:
        """Run `name` on a batch, split into chunks of the model's max_batch_size."""
        model = self.model(name)
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
        batch = len(inputs[present[0].name])
        step = max(model.max_batch_size, 1)
        chunks: list[dict[str, np.ndarray]] = []
        for start in range(0, batch, step):
            request = []
            for spec in present:
                array = np.ascontiguousarray(inputs[spec.name][start : start + step])
                tensor = grpcclient.InferInput(spec.name, list(array.shape), spec.dtype)
                tensor.set_data_from_numpy(array)
                request.append(tensor)
            outputs = [grpcclient.InferRequestedOutput(spec.name) for spec in model.outputs]
            result = self._call(f"inference on {name}", self._client.infer, name, request, outputs=outputs)
            chunks.append({spec.name: result.as_numpy(spec.name) for spec in model.outputs})
            if progress is not None:
                progress(min(start + step, batch), batch)
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
        model = self.model(name)
        latent = model.input("z")
        if latent is None:
            raise ProdgenError(f"model '{name}' is not a generator (it takes no 'z' input)")
        inputs = {"z": latents_from_seed(seed, count, latent.dims[0])}
        if model.input("class_id") is not None:
            classes = int(model.parameters.get("num_classes", "1"))
            if class_id is None or not 0 <= class_id < classes:
                given = "no class id" if class_id is None else f"class id {class_id}"
                raise ProdgenError(f"model '{name}' is conditional: {given} given, expected 0..{classes - 1}")
            inputs["class_id"] = np.full((count, 1), class_id, dtype=np.int64)
        elif class_id is not None:
            raise ProdgenError(f"model '{name}' takes no class id")
        if model.input("truncation") is not None:
            inputs["truncation"] = np.full((count, 1), 1.0 if truncation is None else truncation, dtype=np.float32)
        elif truncation is not None:
            raise ProdgenError(f"model '{name}' takes no truncation")
        return self._single_output(name, inputs, progress)

    def _image_input(self, model: ServedModel, name: str, image: np.ndarray, label: str) -> np.ndarray:
        batch = image[np.newaxis] if image.ndim == 3 else image
        check_image_array(label, batch)
        if model.bounds is not None:
            model.bounds.check(label, batch.shape[1], batch.shape[2])
        return batch

    def stylize(
        self, name: str, image: np.ndarray, style: np.ndarray | None = None, alpha: float | None = None
    ) -> np.ndarray:
        """Restyle one image (H, W, 3) or a batch of same-size images (N, H, W, 3)."""
        model = self.model(name)
        self._check_task(model, "stylize")
        image_inputs = [spec for spec in model.inputs if spec.is_image]
        if not image_inputs:
            raise ProdgenError(f"model '{name}' takes no image (task: {model.task})")
        content_name = image_inputs[0].name
        inputs = {content_name: self._image_input(model, name, image, "image")}
        count = len(inputs[content_name])
        if model.input("style_image") is not None:
            if style is None:
                raise ProdgenError(f"model '{name}' needs a style image (--style)")
            inputs["style_image"] = np.repeat(self._image_input(model, name, style, "style"), count, axis=0)
            inputs["alpha"] = np.full((count, 1), 1.0 if alpha is None else alpha, dtype=np.float32)
        elif style is not None:
            raise ProdgenError(f"model '{name}' takes no style image")
        result = self._single_output(name, inputs)
        return result[0] if image.ndim == 3 else result

    def upscale(
        self, name: str, image: np.ndarray, tile: int | None = None, overlap: int = 32, progress: Progress | None = None
    ) -> np.ndarray:
        """Upscale one image (H, W, 3); images beyond the model's bounds go in overlapping tiles,
        and `progress` is told (tiles done, tiles in all)."""
        model = self.model(name)
        self._check_task(model, "upscale")
        if "scale" not in model.parameters:
            raise ProdgenError(f"model '{name}' is not an upscaler (its config names no scale)")
        image_input = next(spec.name for spec in model.inputs if spec.is_image)
        output = model.outputs[0].name

        done = 0

        def run(batch: np.ndarray) -> np.ndarray:
            nonlocal done
            result = self.infer(name, {image_input: batch})[output]
            done += len(batch)
            if progress is not None:
                progress(done, total)
            return result

        bounds = model.bounds
        if bounds is None or max(image.shape[:2]) <= bounds.max_side:
            total = 1
            return run(self._image_input(model, name, image, "image"))[0]
        check_image_array("image", image[np.newaxis])
        if min(image.shape[:2]) < bounds.min_side:
            raise ProdgenError(
                f"image: {image.shape[1]}×{image.shape[0]} has a side below the model's minimum {bounds.min_side} pixels"
            )
        multiple = int(model.parameters.get("side_multiple", "1"))
        side = min(tile or bounds.opt_side, bounds.max_side)
        tiling = Tiling(
            tile=side - side % multiple, overlap=overlap, batch=max(model.max_batch_size, 1), multiple_of=multiple
        )
        total = len(tile_spans(image.shape[0], tiling)) * len(tile_spans(image.shape[1], tiling))
        return upscale_tiled(image, run, int(model.parameters["scale"]), tiling)
