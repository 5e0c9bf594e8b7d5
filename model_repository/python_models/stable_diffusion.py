"""Triton python-backend model: one Stable-Diffusion pipeline call, prompt in, uint8 picture out.

Published as `model.py` of the pipeline model `NAME`, next to `seeding.py` (prodgen's seeded
noise), `schedulers.py` (numpy schedulers), the checkpoint's `tokenizer/` and its
`scheduler_config.json`. It runs unchanged on NVIDIA's Triton: the work is done by the
component models `NAME_text_encoder`, `NAME_unet`, `NAME_vae_decoder` and `NAME_vae_encoder`,
called through Triton's business-logic scripting (`pb_utils.InferenceRequest(...).exec()`), so
each runs on whatever backend and device its own config says.

Modes, from the inputs present: text → picture; `image` (+ `strength`) → the picture restyled;
`image` + `mask` (255: repaint, 0: keep) → inpainted, with a 9-channel inpainting UNet as it
was trained or, with a plain UNet, by blending the kept area's re-noised latents at each step.
Each row of a request is one picture with its own prompt, negative prompt, seed, image and
mask; steps, guidance, size, scheduler and strength are per request and must agree across rows.
An image of any size up to the photo bound is fitted to the model's bounds (photo_fitting.py) and the
picture answered at the image's own size, unless the request's `fit` is false; an inpainted picture's
kept area (mask < 128) is the image's own pixels, exactly. The `fitting` output says what was resized.
Classifier-free guidance runs the unconditional and conditional halves as one UNet batch; an
LCM-distilled UNet instead takes the guidance as an embedding (`timestep_cond`) of one batch. Schedulers
that inject fresh noise between steps (LCM, Euler Ancestral, TCD) get it from prodgen's seeding too:
step k of the picture for seed s uses `latent_from_seed(derived_seed(s, k), size)`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import photo_fitting  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)
import pipeline_requests as requests  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)
import schedulers  # type: ignore[import-not-found]  # noqa: E402  (published beside this file)
import seeding  # type: ignore[import-not-found]  # noqa: E402  (prodgen/seeding.py, published beside this file)

RequestError = requests.RequestError
_PREFIX = "prodgen."
Settings = dict[str, Any]
"""One request's checked inputs: prompts, seeds, image, mask and the sampler settings."""
SCHEDULER_CONFIG = "scheduler_config.json"
TOKENIZER_FOLDER = "tokenizer"


def _invalid_argument(message: str) -> Any:
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message, code) if code is not None else pb_utils.TritonError(message)


def guidance_embedding(w: np.ndarray, dim: int) -> np.ndarray:
    """diffusers' `get_guidance_scale_embedding(w, dim)` in float32 numpy: sines and cosines of 1000·w at
    `dim // 2` frequencies from 1 down to 1/10000 (zero-padded to an odd `dim`), one row per picture."""
    half = dim // 2
    frequency = np.float32(np.log(np.float32(10000.0))) / np.float32(half - 1)
    frequencies = np.exp(np.arange(half, dtype=np.float32) * -frequency)
    angles = (w.astype(np.float32) * np.float32(1000.0))[:, None] * frequencies[None, :]
    embedding = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
    if dim % 2 == 1:
        embedding = np.pad(embedding, ((0, 0), (0, 1)))
    return embedding.astype(np.float32)


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        from transformers import CLIPTokenizer

        config = json.loads(args["model_config"])
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}

        def parameter(name: str) -> str:
            return parameters[_PREFIX + name]

        folder = os.path.join(args["model_repository"], args["model_version"])
        self.refusal_family, self.refusals = requests.refusal_counter(
            pb_utils, args["model_name"], args["model_version"]
        )
        with open(os.path.join(folder, SCHEDULER_CONFIG)) as stream:
            self.scheduler_config = json.load(stream)
        self.tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, TOKENIZER_FOLDER))
        self.models = {
            part: parameter(f"model.{part}") for part in ("text_encoder", "unet", "vae_decoder", "vae_encoder")
        }
        self.text_length = int(parameter("diffusion.prompt_max_tokens"))
        self.latent_channels = int(parameter("diffusion.latent_channels"))
        self.inpainting = parameter("diffusion.inpainting").lower() == "true"
        self.vae_scale_factor = int(parameter("diffusion.vae_scale_factor"))
        self.limits = requests.limits_from(parameter, schedulers.SCHEDULERS)
        self.guidance_embedding_dim = int(parameters.get(_PREFIX + "diffusion.guidance_embedding_dim") or 0)
        self.read = requests.input_reader(pb_utils.get_input_tensor_by_name)

    # ── reading and checking a request (pipeline_requests.py: the checks every pipeline model shares) ──

    def _settings(self, request: Any) -> Settings:
        read = self.read
        prompt = read(request, "prompt")
        if prompt is None:
            raise RequestError("input 'prompt' is missing")
        rows = prompt.shape[0]
        prompts = requests.texts(read, request, "prompt", rows)
        negatives = requests.texts(read, request, "negative_prompt", rows) or [""] * rows
        seeds = requests.seeds(read, request, rows)
        image = requests.image_batch(read, request, "image", rows, 3, self.limits)
        mask = None
        if image is not None:
            mask = requests.side_image(read, request, "mask", image)
        elif read(request, "mask") is not None:
            raise RequestError("input 'mask' needs an 'image' to inpaint")
        if mask is None and self.inpainting:
            raise RequestError("this is an inpainting model: give an 'image' and a 'mask'")
        sampler = requests.sampler(read, request, rows, self.limits, image is not None)
        fit = requests.flag(read, request, "fit", rows, True)
        height, width = requests.size(read, request, rows, self.limits, image, fit)
        original = (image, mask)
        if image is not None and image.shape[1:3] != (height, width):
            image = np.stack([photo_fitting.resize(picture, height, width) for picture in image])
            mask = None if mask is None else np.stack([photo_fitting.resize(area, height, width) for area in mask])
        return {
            "prompts": prompts, "negatives": negatives, "seeds": seeds, "image": image, "mask": mask,
            **sampler, "height": height, "width": width, "original": original,
        }  # fmt: skip

    def _finish(self, picture: np.ndarray, settings: Settings) -> tuple[np.ndarray, str]:
        """The picture at the image's own size, an inpainting's kept area put back, and the line saying so."""
        image, mask = settings["original"]
        if image is None:
            return picture, ""
        height, width = image.shape[1:3]
        notes = []
        if picture.shape[1:3] != (height, width):
            at_model = photo_fitting.size_text(*picture.shape[1:3])
            picture = np.stack([photo_fitting.resize(item, height, width) for item in picture])
            notes.append(
                f"image {photo_fitting.size_text(height, width)} → {at_model} at the model ({photo_fitting.FILTER}), "
                f"the picture resized back to {photo_fitting.size_text(height, width)} ({photo_fitting.FILTER})"
            )
        if mask is not None:
            keep = mask < 128
            picture = np.where(keep, image, picture)
            notes.append(f"{int(keep.sum())} kept pixels put back from the image")
        return picture, "; ".join(notes)

    # ── calling the component models ──

    def _call(self, part: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        request = pb_utils.InferenceRequest(
            model_name=self.models[part],
            requested_output_names=[output],
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.models[part]}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, output).as_numpy()

    def _tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer(
            texts, padding="max_length", max_length=self.text_length, truncation=True, return_tensors="np"
        ).input_ids
        full = self.tokenizer(texts, truncation=False).input_ids
        dropped = np.array([max(0, len(tokens) - self.text_length) for tokens in full], dtype=np.int64)
        return np.asarray(ids, dtype=np.int64), dropped

    def _text_states(self, settings: Settings, guided: bool) -> tuple[np.ndarray, np.ndarray]:
        texts = (settings["negatives"] if guided else []) + settings["prompts"]
        ids, dropped = self._tokens(texts)
        states = self._call("text_encoder", {"input_ids": ids}, "text_states")
        return states, dropped[-len(settings["prompts"]) :]

    def _encode(self, image: np.ndarray) -> np.ndarray:
        return self._call("vae_encoder", {"image": image}, "latents")

    # ── the denoising loop ──

    def _noise(self, seeds: np.ndarray, shape: tuple[int, ...], step: int | None = None) -> np.ndarray:
        """Each row's initial noise, or (`step`) the fresh noise a stochastic scheduler injects at that step."""
        size = int(np.prod(shape))
        row_seeds = [int(seed) if step is None else seeding.derived_seed(int(seed), step) for seed in seeds]
        return np.stack([seeding.latent_from_seed(seed, size).reshape(shape) for seed in row_seeds])

    def _generate(self, settings: Settings) -> tuple[np.ndarray, np.ndarray]:
        rows = len(settings["prompts"])
        embedded = self.guidance_embedding_dim > 0
        guided = settings["guidance"] > 1.0 and not embedded
        states, dropped = self._text_states(settings, guided)
        latent_shape = (
            self.latent_channels,
            settings["height"] // self.vae_scale_factor,
            settings["width"] // self.vae_scale_factor,
        )
        noise = self._noise(settings["seeds"], latent_shape)
        scheduler = schedulers.make_scheduler(settings["scheduler"], self.scheduler_config)
        scheduler.set_timesteps(settings["steps"], strength=settings["strength"])
        timesteps = scheduler.timesteps
        image, mask = settings["image"], settings["mask"]
        # As diffusers: image-to-image always starts from the picture noised to the first timestep;
        # inpainting at full strength from pure noise (the mask input carries the kept area).
        from_image = image is not None and (mask is None or settings["strength"] < 1.0)
        image_latents = None
        if from_image or (mask is not None and not self.inpainting):
            image_latents = self._encode(image)
        if from_image:
            latents = scheduler.add_noise(image_latents, noise, timesteps[0])
        else:
            latents = noise * np.float32(scheduler.init_noise_sigma)
        extra = None
        latent_mask = None
        if mask is not None:
            keep = (mask.astype(np.float32) / 255.0 < 0.5)[..., 0]  # (rows, H, W), True where kept
            factor = self.vae_scale_factor
            latent_mask = (~keep[:, None, ::factor, ::factor]).astype(np.float32)
            if self.inpainting:
                masked = np.where(keep[..., None], image, np.uint8(128))
                extra = np.concatenate([latent_mask, self._encode(masked)], axis=1)
                if guided:
                    extra = np.concatenate([extra, extra])
        conditions = {}
        if embedded:
            w = np.full(rows, settings["guidance"] - 1.0, dtype=np.float32)
            conditions["timestep_cond"] = guidance_embedding(w, self.guidance_embedding_dim)
        stochastic = settings["scheduler"] in schedulers.STOCHASTIC
        for index, t in enumerate(timesteps):
            model_input = np.concatenate([latents, latents]) if guided else latents
            model_input = scheduler.scale_model_input(model_input, t)
            if extra is not None:
                model_input = np.concatenate([model_input, extra], axis=1)
            timestep = np.full((model_input.shape[0], 1), t, dtype=np.float32)
            predicted = self._call(
                "unet",
                {"latents": model_input.astype(np.float32), "timestep": timestep, "text_states": states, **conditions},
                "noise",
            )
            if guided:
                unconditional, conditional = predicted[:rows], predicted[rows:]
                predicted = unconditional + np.float32(settings["guidance"]) * (conditional - unconditional)
            fresh = self._noise(settings["seeds"], latent_shape, step=index) if stochastic else None
            latents = scheduler.step(predicted, t, latents, noise=fresh).astype(np.float32)
            if latent_mask is not None and not self.inpainting:
                kept = image_latents
                if index + 1 < len(timesteps):
                    kept = scheduler.add_noise(image_latents, noise, timesteps[index + 1])
                latents = (1.0 - latent_mask) * kept + latent_mask * latents
        picture = self._call("vae_decoder", {"latents": latents.astype(np.float32)}, "image")
        return picture, dropped

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                settings = self._settings(request)
            except RequestError as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_invalid_argument(str(error))))
                self.refusals.increment(1)
                continue
            try:
                picture, dropped = self._generate(settings)
                picture, fitting = self._finish(picture, settings)
            except Exception as error:  # noqa: BLE001 - a component's failure goes back to this caller; the server stays up
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("image", picture),
                        pb_utils.Tensor("truncated_tokens", dropped.reshape(-1, 1)),
                        pb_utils.Tensor("fitting", np.array([[fitting.encode("utf-8")]] * len(picture), dtype=object)),
                    ]
                )
            )
        return responses
