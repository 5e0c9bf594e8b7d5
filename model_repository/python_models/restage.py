"""Triton python-backend model: restage a product photo in one call — photo in, the product on a new scene out.

Published as `model.py` of `NAME_restage`, beside `pipeline_requests.py` (the request checks every pipeline
model shares), `photo_fitting.py` (sizes and the resize filter) and `schedulers.py`. It calls, through
Triton's business-logic scripting, the cutout model named in the request, the diffusion pipeline `NAME`
and optionally a zoo upscaler, so it runs unchanged on NVIDIA's Triton.

Each row of a request: `photo` (any size up to the published photo bound) →
1. the matte: the given `alpha`, or the `cutout_model`'s `matte` for the photo (fitted into that model's
   bounds when outside them, the matte resized back);
2. the matte checked (coverage, sides of the frame touched; `matte_checks.check_matte`, as `prodgen cutout` reports it) unless `force`;
3. the frame fitted to the diffusion model: the scene is generated for the photo's WHOLE frame, resized
   with its aspect kept to the model's bounds and side multiple. A crop around the product would give a
   small product more model pixels, but the area outside it would then need a second generation to be
   extended without a seam; one generation of the whole frame has no seam and one cost;
4. the pipeline inpaints the scene (image: the photo with the non-opaque area filled grey; mask: repaint
   wherever the matte is not 255);
5. composite at the photo's own size: the scene resized up (or upscaled by `upscaler`, then resized to
   the photo), the photo blended over it by the matte, so every pixel the matte marks 255 is the photo's.
The `fitting` output says what was resized at each step.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import matte_checks  # type: ignore[import-not-found]  # noqa: E402  (prodgen/matte_checks.py, published beside this file)
import photo_fitting as fitting  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)
import pipeline_requests as requests  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)
import schedulers  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)

RequestError = requests.RequestError
_PREFIX = "prodgen."
OPAQUE = 255
FILL_GREY = 128
"""What the non-opaque area is set to before the pipeline encodes the photo: the middle of the uint8 range."""
Settings = dict[str, Any]


def _invalid_argument(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def _is_invalid_argument(error: Any) -> bool:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return code is not None and hasattr(error, "code") and error.code() == code


def _rows(value: Any, dtype: Any) -> np.ndarray:
    return np.array([[value]], dtype=dtype)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}

        def parameter(name: str) -> str:
            return parameters[_PREFIX + name]

        self.pipeline = parameter("model.pipeline")
        self.limits = requests.limits_from(parameter, schedulers.SCHEDULERS)
        self.repository = os.path.dirname(os.path.abspath(args["model_repository"]))
        self.read = requests.input_reader(pb_utils.get_input_tensor_by_name)

    # ── reading and checking a request (pipeline_requests.py) ──

    def _settings(self, request: Any) -> Settings:
        read = self.read
        rows = requests.prompt_rows(read, request)
        photo = requests.image_batch(read, request, "photo", rows, 3, self.limits)
        if photo is None:
            raise RequestError("input 'photo' is missing")
        alpha = requests.side_image(read, request, "alpha", photo)
        cutout_name = requests.model_name(read, request, "cutout_model", rows)
        if (alpha is None) == (cutout_name is None):
            raise RequestError("give either an 'alpha' matte of the photo's size or a 'cutout_model' name")
        cutout = (
            None
            if cutout_name is None
            else requests.named_model(self.repository, "cutout_model", cutout_name, "cutout")
        )
        upscaler_name = requests.model_name(read, request, "upscaler", rows)
        upscaler = (
            None
            if upscaler_name is None
            else requests.named_model(self.repository, "upscaler", upscaler_name, "upscale")
        )
        return {
            "prompts": requests.texts(read, request, "prompt", rows),
            "negatives": requests.texts(read, request, "negative_prompt", rows) or [""] * rows,
            "seeds": requests.seeds(read, request, rows),
            "sampler": requests.sampler(read, request, rows, self.limits, False),
            "photo": photo,
            "alpha": alpha,
            "cutout": cutout,
            "upscaler": upscaler,
            "force": requests.flag(read, request, "force", rows, False),
        }

    # ── calling other models ──

    def _call(self, model: str, inputs: dict[str, np.ndarray], output: str, named_by: str | None = None) -> np.ndarray:
        """`model`'s `output`; its refusal of a request is this request's refusal (INVALID_ARGUMENT), and a
        model the request named (`named_by`: the input) that fails to run is refused naming it."""
        request = pb_utils.InferenceRequest(
            model_name=model,
            requested_output_names=[output],
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
        )
        response = request.exec()
        if response.has_error():
            message = response.error().message()
            if named_by is not None:
                raise RequestError(f"input '{named_by}': model '{model}' could not run: {message}")
            if _is_invalid_argument(response.error()):
                raise RequestError(f"{model}: {message}")
            raise RuntimeError(f"{model}: {message}")
        tensor = pb_utils.get_output_tensor_by_name(response, output)
        if tensor is None:
            raise RequestError(f"model '{model}' gave no output '{output}'")
        return tensor.as_numpy()

    def _matte(self, settings: Settings, row: int) -> tuple[np.ndarray, str]:
        photo = settings["photo"][row]
        height, width = photo.shape[:2]
        if settings["alpha"] is not None:
            return settings["alpha"][row], "alpha given"
        cutout = settings["cutout"]
        low, high = cutout.side("min_side", 1), cutout.side("max_side", max(height, width))
        fit_h, fit_w = fitting.fitted_size(height, width, low, high, cutout.side("side_multiple", 1))
        matte = self._call(
            cutout.name, {cutout.first_input: fitting.resize(photo, fit_h, fit_w)[None]}, "matte", "cutout_model"
        )
        if matte.dtype != np.uint8 or matte.shape != (1, fit_h, fit_w, 1):
            raise RequestError(
                f"input 'cutout_model': model '{cutout.name}' gave a matte of shape {matte.shape} {matte.dtype}, "
                f"expected (1, {fit_h}, {fit_w}, 1) uint8"
            )
        matte = fitting.resize(matte[0], height, width)
        at = fitting.size_text(fit_h, fit_w)
        resized = "" if (fit_h, fit_w) == (height, width) else f", resized back ({fitting.FILTER})"
        return matte, f"matte by {cutout.name} at {at}{resized}"

    def _scene(self, settings: Settings, row: int, photo: np.ndarray, matte: np.ndarray) -> np.ndarray:
        """The pipeline's inpainting of the fitted frame: product kept, everything else drawn from the prompt."""
        alpha = matte.astype(np.float32) / OPAQUE
        image = np.rint(photo.astype(np.float32) * alpha + FILL_GREY * (1.0 - alpha)).astype(np.uint8)
        mask = np.where(matte == OPAQUE, 0, 255).astype(np.uint8)
        sampler = settings["sampler"]
        inputs = {
            "prompt": _rows(settings["prompts"][row].encode("utf-8"), object),
            "negative_prompt": _rows(settings["negatives"][row].encode("utf-8"), object),
            "seed": _rows(settings["seeds"][row], np.int64),
            "steps": _rows(sampler["steps"], np.int64),
            "guidance": _rows(sampler["guidance"], np.float32),
            "scheduler": _rows(sampler["scheduler"].encode("utf-8"), object),
            "image": image[None],
            "mask": mask[None],
            "strength": _rows(1.0, np.float32),
            "fit": _rows(False, bool),
        }
        return self._call(self.pipeline, inputs, "image")[0]

    def _background(self, settings: Settings, scene: np.ndarray, height: int, width: int) -> tuple[np.ndarray, str]:
        upscaler = settings["upscaler"]
        ratio = width / scene.shape[1]
        if upscaler is None:
            return fitting.resize(scene, height, width), f"background resized ×{ratio:.2f} ({fitting.FILTER})"
        upscaled = self._call(upscaler.name, {upscaler.first_input: scene[None]}, upscaler.first_output, "upscaler")
        if upscaled.dtype != np.uint8 or upscaled.ndim != 4 or upscaled.shape[-1] != 3:
            raise RequestError(f"input 'upscaler': model '{upscaler.name}' gave {upscaled.shape} {upscaled.dtype}")
        scale = upscaled.shape[2] / scene.shape[1]
        rest = width / upscaled.shape[2]
        return (
            fitting.resize(upscaled[0], height, width),
            f"background upscaled ×{scale:g} by {upscaler.name}, then resized ×{rest:.2f} ({fitting.FILTER})",
        )

    def _restage(self, settings: Settings, row: int) -> tuple[np.ndarray, np.ndarray, str]:
        photo = settings["photo"][row]
        height, width = photo.shape[:2]
        matte, matte_note = self._matte(settings, row)
        problems = matte_checks.check_matte(matte)
        problem = "; ".join(problems) if problems else None
        if problem is not None and not settings["force"]:
            raise RequestError(f"{problem}; check the cutout, or set 'force' to restage anyway")
        limits = self.limits
        fit_h, fit_w = fitting.fitted_size(height, width, limits.min_side, limits.max_side, limits.side_multiple)
        scene = self._scene(settings, row, fitting.resize(photo, fit_h, fit_w), fitting.resize(matte, fit_h, fit_w))
        background, background_note = self._background(settings, scene, height, width)
        alpha = matte.astype(np.float32) / OPAQUE
        composite = np.rint(photo * alpha + background * (1.0 - alpha)).astype(np.uint8)
        composite[matte[..., 0] == OPAQUE] = photo[matte[..., 0] == OPAQUE]
        size = fitting.size_text(height, width)
        note = (
            f"photo {size} ({matte_note}) → frame {size} (the whole photo) → {fitting.size_text(fit_h, fit_w)} "
            f"at the model ({fitting.FILTER}); {background_note}; product pixels (matte 255) from the photo"
        )
        if problem is not None:
            note += f"; forced past: {problem}"
        return composite, matte, note

    def execute(self, requests_: list[Any]) -> list[Any]:
        responses = []
        for request in requests_:
            try:
                settings = self._settings(request)
                results = [self._restage(settings, row) for row in range(len(settings["prompts"]))]
            except RequestError as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_invalid_argument(str(error))))
                continue
            except Exception as error:  # noqa: BLE001 - a failure goes back to this caller; the server stays up
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
                continue
            images, mattes, notes = zip(*results, strict=True)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("image", np.stack(images)),
                        pb_utils.Tensor("matte", np.stack(mattes)),
                        pb_utils.Tensor("fitting", np.array([[note.encode("utf-8")] for note in notes], dtype=object)),
                    ]
                )
            )
        return responses
