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

SDXL (family `sdxl`/`sdxl-refiner`, from the parameters): the text states are both encoders'
penultimate hidden states side by side (the refiner: `NAME_text_encoder_2`'s alone), and the
UNet also gets text_encoder_2's pooled `text_embeds` and the `time_ids` (original size, crop
top-left, target size; the refiner: an aesthetic score for the target size), as diffusers'
SDXL pipelines build them. An empty negative prompt conditions on zeros where the checkpoint
says `force_zeros_for_empty_prompt` (diffusers does so for a negative prompt of None).

Base → refiner hand-off, one gRPC call per model: the base called with `denoising_end` (a
fraction of the schedule) stops there and returns the latents (`image` comes back empty); the
refiner called with those `latents`, `denoising_start` (the same fraction) and the same steps
and scheduler continues from them without re-noising, as diffusers' `denoising_end`/
`denoising_start` do. Every call also returns the final `latents` it decoded.
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


def _cutoff(scheduler: Any, fraction: float) -> int:
    """diffusers' discrete timestep cut-off for a denoising_end/denoising_start fraction of the schedule."""
    return int(round(scheduler.num_train_timesteps - fraction * scheduler.num_train_timesteps))


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
        parts = ("text_encoder", "text_encoder_2", "unet", "vae_decoder", "vae_encoder")
        self.models = {
            part: parameters[_PREFIX + f"model.{part}"] for part in parts if _PREFIX + f"model.{part}" in parameters
        }
        self.encoders: list[str] = [part for part in ("text_encoder", "text_encoder_2") if part in self.models]
        self.tokenizers: dict[str, Any] = {
            part: CLIPTokenizer.from_pretrained(os.path.join(folder, part.replace("text_encoder", TOKENIZER_FOLDER)))
            for part in self.encoders
        }
        self.time_ids_length = int(parameters.get(_PREFIX + "xl.time_ids_length", "0"))
        self.force_zeros = parameters.get(_PREFIX + "xl.force_zeros_for_empty_prompt", "").lower() == "true"
        self.xl_defaults = {
            name: float(parameters.get(_PREFIX + f"default_{name}", "0"))
            for name in ("aesthetic_score", "negative_aesthetic_score")
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
        rows = requests.prompt_rows(read, request)
        prompts = requests.texts(read, request, "prompt", rows)
        negatives = requests.texts(read, request, "negative_prompt", rows) or [""] * rows
        seeds = requests.seeds(read, request, rows)
        image = requests.image_batch(read, request, "image", rows, 3, self.limits)
        latents = requests.latents_batch(read, request, rows, self.latent_channels, self.vae_scale_factor)
        if latents is not None and image is not None:
            raise RequestError("give either 'image' or 'latents' to start from, not both")
        mask = None
        if image is not None:
            mask = requests.side_image(read, request, "mask", image)
        elif read(request, "mask") is not None:
            raise RequestError("input 'mask' needs an 'image' to inpaint")
        if mask is None and self.inpainting:
            raise RequestError("this is an inpainting model: give an 'image' and a 'mask'")
        source = "image" if image is not None else "latents" if latents is not None else None
        handoff = requests.handoff(read, request, rows, source, mask is not None)
        # At a denoising_start the schedule's cut-off, not a strength, says where to begin.
        strength_applies = source is not None and handoff["denoising_start"] is None
        sampler = requests.sampler(read, request, rows, self.limits, strength_applies)
        fit = requests.flag(read, request, "fit", rows, True)
        latent_size = (
            None
            if latents is None
            else (latents.shape[2] * self.vae_scale_factor, latents.shape[3] * self.vae_scale_factor)
        )
        height, width = requests.size(read, request, rows, self.limits, image, fit, latent_size)
        xl = (
            requests.xl_conditions(read, request, rows, height, width, self.xl_defaults) if self.time_ids_length else {}
        )
        original = (image, mask)
        if image is not None and image.shape[1:3] != (height, width):
            image = np.stack([photo_fitting.resize(picture, height, width) for picture in image])
            mask = None if mask is None else np.stack([photo_fitting.resize(area, height, width) for area in mask])
        return {
            "prompts": prompts, "negatives": negatives, "seeds": seeds, "image": image, "mask": mask,
            "latents": latents, **handoff, **sampler, "height": height, "width": width, **xl, "original": original,
        }  # fmt: skip

    def _finish(self, picture: np.ndarray, settings: Settings) -> tuple[np.ndarray, str]:
        """The picture at the image's own size, an inpainting's kept area put back, and the line saying so."""
        image, mask = settings["original"]
        if image is None or picture.shape[1] == 0:  # no image given, or latents handed off at a denoising_end
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
        return self._call_for(part, inputs, [output])[0]

    def _call_for(self, part: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        request = pb_utils.InferenceRequest(
            model_name=self.models[part],
            requested_output_names=outputs,
            inputs=[pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in inputs.items()],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.models[part]}: {response.error().message()}")
        return [pb_utils.get_output_tensor_by_name(response, output).as_numpy() for output in outputs]

    def _tokens(self, part: str, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        tokenizer = self.tokenizers[part]
        ids = tokenizer(
            texts, padding="max_length", max_length=self.text_length, truncation=True, return_tensors="np"
        ).input_ids
        full = tokenizer(texts, truncation=False).input_ids
        dropped = np.array([max(0, len(tokens) - self.text_length) for tokens in full], dtype=np.int64)
        return np.asarray(ids, dtype=np.int64), dropped

    def _text_states(self, settings: Settings, guided: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The UNet's text inputs for [negatives +] prompts: `text_states`, and for SDXL `text_embeds`
        (the pooled projection); the tokens each prompt lost to truncation."""
        texts = (settings["negatives"] if guided else []) + settings["prompts"]
        states, dropped = [], None
        conditions: dict[str, np.ndarray] = {}
        for part in self.encoders:
            ids, lost = self._tokens(part, texts)
            dropped = lost if dropped is None else dropped
            if part == "text_encoder_2":  # SDXL's second encoder also gives the pooled projection
                part_states, conditions["text_embeds"] = self._call_for(
                    part, {"input_ids": ids}, ["text_states", "text_embeds"]
                )
                states.append(part_states)
            else:
                states.append(self._call(part, {"input_ids": ids}, "text_states"))
        conditions["text_states"] = np.concatenate(states, axis=-1)
        if guided and self.force_zeros:
            empty = np.array([not text for text in settings["negatives"]] + [False] * len(settings["prompts"]))
            for name, value in conditions.items():
                conditions[name] = np.where(empty.reshape(-1, *[1] * (value.ndim - 1)), np.float32(0), value)
        assert dropped is not None
        return conditions, dropped[-len(settings["prompts"]) :]

    def _time_ids(self, settings: Settings, guided: bool) -> np.ndarray:
        """SDXL's time ids per UNet row, as diffusers' `_get_add_time_ids`: (original size, crop top-left,
        target size) for a base; (original size, crop, aesthetic score) for a refiner, whose unconditional
        half gets the negative score and crop (0, 0)."""
        rows = len(settings["prompts"])
        head = [settings["original_height"], settings["original_width"]]
        crop = [settings["crop_top"], settings["crop_left"]]
        if self.time_ids_length == 5:
            positive = head + crop + [settings["aesthetic_score"]]
            negative = head + [0, 0] + [settings["negative_aesthetic_score"]]
        else:
            positive = negative = head + crop + [settings["height"], settings["width"]]
        ids = [negative] * rows * guided + [positive] * rows
        return np.array(ids, dtype=np.float32)

    def _encode(self, image: np.ndarray) -> np.ndarray:
        return self._call("vae_encoder", {"image": image}, "latents")

    # ── the denoising loop ──

    def _noise(self, seeds: np.ndarray, shape: tuple[int, ...], step: int | None = None) -> np.ndarray:
        """Each row's initial noise, or (`step`) the fresh noise a stochastic scheduler injects at that step."""
        size = int(np.prod(shape))
        row_seeds = [int(seed) if step is None else seeding.derived_seed(int(seed), step) for seed in seeds]
        return np.stack([seeding.latent_from_seed(seed, size).reshape(shape) for seed in row_seeds])

    def _generate(self, settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pictures (empty when handing off at a denoising_end), their final latents, and the tokens
        each prompt lost to truncation."""
        rows = len(settings["prompts"])
        embedded = self.guidance_embedding_dim > 0
        guided = settings["guidance"] > 1.0 and not embedded
        conditions, dropped = self._text_states(settings, guided)
        if self.time_ids_length:
            conditions["time_ids"] = self._time_ids(settings, guided)
        latent_shape = (
            self.latent_channels,
            settings["height"] // self.vae_scale_factor,
            settings["width"] // self.vae_scale_factor,
        )
        noise = self._noise(settings["seeds"], latent_shape)
        scheduler = schedulers.make_scheduler(settings["scheduler"], self.scheduler_config)
        scheduler.set_timesteps(settings["steps"], strength=self._strength(settings, scheduler))
        timesteps = self._until_end(settings, scheduler, scheduler.timesteps)
        image, mask = settings["image"], settings["mask"]
        # As diffusers: image-to-image always starts from the picture noised to the first timestep
        # (from the picture itself at a denoising_start); inpainting at full strength from pure noise
        # (the mask input carries the kept area).
        has_source = image is not None or settings["latents"] is not None
        from_image = has_source and (mask is None or settings["strength"] < 1.0)
        image_latents = settings["latents"]
        if image is not None and (from_image or (mask is not None and not self.inpainting)):
            image_latents = self._encode(image)
        if settings["denoising_start"] is not None:
            latents = image_latents
        elif from_image:
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
                {"latents": model_input.astype(np.float32), "timestep": timestep, **conditions},
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
        latents = latents.astype(np.float32)
        if settings["denoising_end"] is not None:
            return np.zeros((rows, 0, 0, 3), dtype=np.uint8), latents, dropped
        picture = self._call("vae_decoder", {"latents": latents}, "image")
        return picture, latents, dropped

    def _strength(self, settings: Settings, scheduler: Any) -> float:
        """The img2img strength; at a `denoising_start`, the one that keeps the steps diffusers keeps there:
        those whose timestep lies below the cut-off (strength (kept + ½) / steps makes int(steps × strength)
        exactly `kept`)."""
        start = settings["denoising_start"]
        if start is None:
            return float(settings["strength"])
        scheduler.set_timesteps(settings["steps"])
        kept = int((scheduler.timesteps < _cutoff(scheduler, start)).sum())
        if kept < 1:
            raise RequestError(f"denoising_start {start} leaves none of the {settings['steps']} steps; lower it")
        return min(1.0, (kept + 0.5) / settings["steps"])

    def _until_end(self, settings: Settings, scheduler: Any, timesteps: np.ndarray) -> np.ndarray:
        """The timesteps to run: all, or those at or above a `denoising_end`'s cut-off (diffusers' filter)."""
        end = settings["denoising_end"]
        if end is None:
            return timesteps
        kept = timesteps[timesteps >= _cutoff(scheduler, end)]
        if kept.size == 0:
            raise RequestError(f"denoising_end {end} leaves none of the {settings['steps']} steps; raise it")
        return kept

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
                picture, latents, dropped = self._generate(settings)
                picture, fitting = self._finish(picture, settings)
            except RequestError as error:
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=_invalid_argument(str(error))))
                self.refusals.increment(1)
                continue
            except Exception as error:  # noqa: BLE001 - a component's failure goes back to this caller; the server stays up
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(error))))
                continue
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("image", picture),
                        pb_utils.Tensor("truncated_tokens", dropped.reshape(-1, 1)),
                        pb_utils.Tensor("fitting", np.array([[fitting.encode("utf-8")]] * len(picture), dtype=object)),
                        pb_utils.Tensor("latents", latents),
                    ]
                )
            )
        return responses
