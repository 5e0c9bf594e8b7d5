"""The numpy schedulers of the diffusion pipeline model against diffusers' own, step for step.

Each case drives both the way diffusers' Stable Diffusion pipelines do (set_timesteps, the img2img tail for a
strength < 1, add_noise or init_noise_sigma for the start, scale_model_input then step per timestep) with the
same fake UNet: 0.3 × its own scaled input plus a seeded noise array per step, so a difference in one step
carries into the next as a real model's would.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import diffusers
import numpy as np
import pytest
import torch

import prodgen.model_repository

SCHEDULERS_PY = Path(prodgen.model_repository.__file__).with_name("python_models") / "schedulers.py"

REFERENCE = {
    "ddim": (diffusers.DDIMScheduler, {}),
    "euler": (diffusers.EulerDiscreteScheduler, {}),
    "dpmpp-2m": (diffusers.DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "lcm": (diffusers.LCMScheduler, {}),
    "euler-ancestral": (diffusers.EulerAncestralDiscreteScheduler, {}),
    "tcd": (diffusers.TCDScheduler, {}),
}

# scheduler/scheduler_config.json of Stable Diffusion 1.5 (written for the PNDM scheduler), as published
SD15_CONFIG: dict[str, Any] = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

PREDICTIONS = ("epsilon", "v_prediction")  # Stable Diffusion 1.x, 2.x

# diffusers' float32 torch against this module's float32 numpy: the schedules are bit-identical, and what is
# left is the last bit of float32 sqrt/log/exp between the two math libraries (measured worst: 1.7e-6)
RELATIVE_TOLERANCE = 5e-6


def load_schedulers() -> ModuleType:
    """The file as the python backend imports it: standalone, beside the pipeline's model.py."""
    spec = importlib.util.spec_from_file_location("prodgen_test_schedulers", SCHEDULERS_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


schedulers = load_schedulers()


def reference_scheduler(kind: str, config: dict[str, Any]) -> Any:
    scheduler_class, overrides = REFERENCE[kind]
    return scheduler_class.from_config({**config, **overrides})


def assert_close(mine: np.ndarray, reference: np.ndarray, what: str) -> None:
    assert mine.dtype == np.float32, what
    scale = float(np.abs(reference).max())
    error = float(np.abs(mine - reference).max())
    assert error <= RELATIVE_TOLERANCE * scale, f"{what}: max |Δ| {error:.3g} against max |x| {scale:.3g}"


@contextmanager
def drawing(reference: Any, noise: np.ndarray) -> Iterator[None]:
    """diffusers' stochastic schedulers draw their per-step noise with `randn_tensor` of their own module:
    hand them `noise` (what the pipeline model passes as `step(..., noise=)`) instead."""
    module = sys.modules[type(reference).__module__]
    original = getattr(module, "randn_tensor")  # noqa: B009 - diffusers builds the module's names at run time
    setattr(module, "randn_tensor", lambda shape, **_: torch.from_numpy(noise.copy()).reshape(shape))  # noqa: B010
    try:
        yield
    finally:
        setattr(module, "randn_tensor", original)  # noqa: B010


def denoise_both(
    kind: str,
    config: dict[str, Any],
    steps: int,
    strength: float,
    reference: Any = None,
    eta: float | None = None,
) -> None:
    """Run both schedulers through one denoising loop and compare every intermediate and final sample; the
    stochastic ones get the same fresh noise at every step (`eta`: TCD's gamma, None for its default)."""
    ref = reference if reference is not None else reference_scheduler(kind, config)
    ref.set_timesteps(steps)
    t_start = steps - min(int(steps * strength), steps)  # the img2img pipelines' get_timesteps
    ref_timesteps = ref.timesteps[t_start * ref.order :]
    if hasattr(ref, "set_begin_index"):  # the img2img and inpainting pipelines set it even for strength 1
        ref.set_begin_index(t_start * ref.order)

    mine = schedulers.make_scheduler(kind, config, eta=eta)
    mine.set_timesteps(steps, strength=strength)
    assert mine.timesteps.dtype == ref_timesteps.numpy().dtype
    if config.get("use_karras_sigmas") and kind == "euler":
        # fractional timesteps from log sigma: torch's vectorised float32 sqrt is not always correctly rounded
        # (6 of Stable Diffusion's 1000 training sigmas sit one ulp from numpy's), which moves a timestep an ulp
        np.testing.assert_allclose(mine.timesteps, ref_timesteps.numpy(), rtol=1e-6)
    else:
        np.testing.assert_array_equal(mine.timesteps, ref_timesteps.numpy())

    if hasattr(mine, "sigmas") and hasattr(ref, "sigmas"):
        # The sigma schedules agree but where torch's float32 sqrt (MKL's vsSqrt on some CPUs) rounds a training
        # sigma one ulp off numpy's correctly rounded one, which the interpolation carries into a few ulps. One
        # such ulp matters: zero-terminal SNR's largest sigma, √(2²⁴−1), sits on a rounding boundary, and its
        # first Euler step takes latents of ~16,000 down to ~38, so that ulp is 0.001 of the result. So the
        # schedules are compared here, and the steps on one schedule: ours.
        np.testing.assert_allclose(mine.sigmas, ref.sigmas.numpy(), rtol=1e-6)
        ref.sigmas = torch.from_numpy(mine.sigmas.copy())

    rng = np.random.default_rng(steps)
    shape = (2, 4, 8, 8)
    noise = rng.standard_normal(shape, dtype=np.float32)
    image_latents = rng.standard_normal(shape, dtype=np.float32)
    if strength < 1.0:
        ours = mine.add_noise(image_latents, noise, mine.timesteps[0])
        theirs = ref.add_noise(torch.from_numpy(image_latents), torch.from_numpy(noise), ref_timesteps[:1].repeat(2))
        theirs = theirs.numpy()
        assert_close(ours, theirs, "add_noise at the first timestep")
    else:
        # Euler's largest sigma: equal here, but torch's float32 sqrt may round it one ulp off numpy's
        assert mine.init_noise_sigma == pytest.approx(float(ref.init_noise_sigma), rel=1e-6)
        ours = noise * np.float32(mine.init_noise_sigma)
        theirs = (torch.from_numpy(noise) * ref.init_noise_sigma).numpy()

    for i, (t, ref_t) in enumerate(zip(mine.timesteps, ref_timesteps, strict=True)):
        model_noise = rng.standard_normal(shape, dtype=np.float32)
        our_input = mine.scale_model_input(ours, t)
        their_input = ref.scale_model_input(torch.from_numpy(theirs), ref_t).numpy()
        assert_close(our_input, their_input, f"scale_model_input at step {i} (t={t})")
        step_noise = rng.standard_normal(shape, dtype=np.float32)
        ours = mine.step(np.float32(0.3) * our_input + model_noise, t, ours, noise=step_noise)
        with drawing(ref, step_noise):
            theirs = ref.step(
                torch.from_numpy(np.float32(0.3) * their_input + model_noise),
                ref_t,
                torch.from_numpy(theirs),
                **({} if eta is None else {"eta": eta}),
            )
        theirs = theirs.prev_sample.numpy()
        assert_close(ours, theirs, f"step {i} of {len(mine.timesteps)} (t={t})")
        if i + 1 < len(mine.timesteps):  # the inpainting pipeline re-noises the kept region to the next timestep
            next_t = mine.timesteps[i + 1]
            assert_close(
                mine.add_noise(image_latents, noise, next_t),
                ref.add_noise(
                    torch.from_numpy(image_latents), torch.from_numpy(noise), torch.tensor([ref_timesteps[i + 1]])
                ).numpy(),
                f"add_noise at step {i + 1} (t={next_t})",
            )


@pytest.mark.parametrize(
    ("kind", "prediction_type", "spacing", "steps", "strength"),
    [
        case
        for case in itertools.product(
            schedulers.SCHEDULERS, PREDICTIONS, [None, "leading", "trailing"], [1, 4, 25], [1.0, 0.6]
        )
        if int(case[3] * case[4]) >= 1
    ],
)
def test_schedule_and_every_step_match_diffusers(
    kind: str, prediction_type: str, spacing: str | None, steps: int, strength: float
) -> None:
    config = {**SD15_CONFIG, "prediction_type": prediction_type}
    if spacing is not None:  # absent: each class's own default ("leading" for DDIM, "linspace" for the others)
        config["timestep_spacing"] = spacing
    denoise_both(kind, config, steps, strength)


@pytest.mark.parametrize(
    ("kind", "overrides", "steps", "strength"),
    [
        ("ddim", {"set_alpha_to_one": True}, 10, 1.0),
        ("ddim", {"clip_sample": True, "clip_sample_range": 0.5}, 10, 1.0),
        ("ddim", {"timestep_spacing": "linspace", "steps_offset": 0}, 7, 0.6),
        ("ddim", {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02}, 12, 1.0),
        ("euler", {"final_sigmas_type": "sigma_min"}, 6, 1.0),
        ("euler", {"timestep_spacing": "leading"}, 9, 0.6),
        ("euler", {"timestep_type": "continuous", "prediction_type": "epsilon"}, 5, 1.0),  # as "discrete"
        ("euler", {"beta_schedule": "squaredcos_cap_v2"}, 8, 1.0),
        ("dpmpp-2m", {"final_sigmas_type": "sigma_min"}, 6, 1.0),
        ("dpmpp-2m", {"final_sigmas_type": "sigma_min", "lower_order_final": False}, 6, 1.0),
        ("dpmpp-2m", {"lower_order_final": False}, 20, 1.0),
        ("dpmpp-2m", {"euler_at_final": True}, 20, 0.6),
        ("dpmpp-2m", {"solver_type": "heun"}, 12, 1.0),
        ("dpmpp-2m", {"beta_schedule": "squaredcos_cap_v2", "lambda_min_clipped": -5.1}, 10, 1.0),
        ("dpmpp-2m", {"algorithm_type": "sde-dpmsolver++", "solver_order": 3}, 10, 1.0),  # the kind decides
        ("dpmpp-2m", {"num_train_timesteps": 100, "steps_offset": 0}, 30, 0.6),
        ("ddim", {"trained_betas": np.linspace(1e-4, 0.02, 1000).tolist()}, 10, 1.0),
        # Karras sigmas ("DPM++ 2M Karras"); with 100 steps DPM-Solver's rounded timesteps repeat (…, 1, 1, 0, 0)
        ("euler", {"use_karras_sigmas": True}, 25, 1.0),
        ("euler", {"use_karras_sigmas": True, "sigma_min": 0.1, "sigma_max": 10.0}, 10, 0.6),
        ("dpmpp-2m", {"use_karras_sigmas": True}, 25, 0.6),
        ("dpmpp-2m", {"use_karras_sigmas": True}, 100, 1.0),
        ("dpmpp-2m", {"use_karras_sigmas": True, "beta_schedule": "squaredcos_cap_v2"}, 10, 1.0),
        # zero terminal SNR: the last training timestep is pure noise (ᾱ = 0, so DDIM needs v-prediction there)
        (
            "ddim",
            {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
            8,
            1.0,
        ),
        ("euler", {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, 8, 1.0),
        ("dpmpp-2m", {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"}, 8, 0.6),
    ],
)
def test_config_options_match_diffusers(kind: str, overrides: dict[str, Any], steps: int, strength: float) -> None:
    for prediction_type in [overrides["prediction_type"]] if "prediction_type" in overrides else PREDICTIONS:
        denoise_both(kind, {**SD15_CONFIG, **overrides, "prediction_type": prediction_type}, steps, strength)


# scheduler_config.json of the few-step checkpoints people publish: LCM-distilled SD 1.5 (LCMScheduler),
# SD-Turbo (Euler Ancestral, trailing spacing) and TCD (as its model card sets up the scheduler)
LCM_CONFIG: dict[str, Any] = {
    **SD15_CONFIG,
    "_class_name": "LCMScheduler",
    "original_inference_steps": 50,
    "timestep_scaling": 10.0,
    "set_alpha_to_one": True,
    "timestep_spacing": "leading",
}
TURBO_CONFIG: dict[str, Any] = {
    **SD15_CONFIG,
    "_class_name": "EulerAncestralDiscreteScheduler",
    "timestep_spacing": "trailing",
    "steps_offset": 1,
}


@pytest.mark.parametrize(
    ("kind", "overrides", "eta"),
    [
        ("lcm", {}, None),
        ("lcm", {"prediction_type": "v_prediction", "clip_sample": True, "clip_sample_range": 1.5}, None),
        ("lcm", {"original_inference_steps": 25, "timestep_scaling": 5.0, "set_alpha_to_one": False}, None),
        ("lcm", {"rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, None),
        ("euler-ancestral", {}, None),
        ("euler-ancestral", {"prediction_type": "v_prediction"}, None),
        ("euler-ancestral", {"timestep_spacing": "leading"}, None),
        ("euler-ancestral", {"timestep_spacing": "linspace", "beta_schedule": "linear"}, None),
        ("tcd", {}, None),
        ("tcd", {}, 0.0),
        ("tcd", {"prediction_type": "v_prediction"}, 1.0),
        ("tcd", {"original_inference_steps": 30}, 0.5),
    ],
)
@pytest.mark.parametrize("steps", [1, 2, 4, 8, 25])
def test_few_step_schedulers_match_diffusers_with_the_same_fresh_noise(
    kind: str, overrides: dict[str, Any], eta: float | None, steps: int
) -> None:
    base = TURBO_CONFIG if kind == "euler-ancestral" else {**LCM_CONFIG, "_class_name": "TCDScheduler"}
    config = LCM_CONFIG if kind == "lcm" else base
    denoise_both(kind, {**config, **overrides}, steps, 1.0, eta=eta)


def test_a_stochastic_step_needs_its_noise_and_uses_it() -> None:
    sample = np.ones((1, 4, 8, 8), dtype=np.float32)
    noise = np.full_like(sample, 0.5)
    scheduler = schedulers.make_scheduler("lcm", LCM_CONFIG)
    scheduler.set_timesteps(4)
    first, second = scheduler.timesteps[:2]
    with pytest.raises(ValueError, match="lcm scheduler injects noise at step 0: pass it as `noise`"):
        scheduler.step(sample, first, sample)
    with pytest.raises(ValueError, match="noise of shape"):
        scheduler.step(sample, first, sample, noise=noise[0])
    one = scheduler.step(sample, first, sample, noise=noise)
    scheduler.set_timesteps(4)
    other = scheduler.step(sample, first, sample, noise=-noise)
    assert not np.allclose(one, other)
    assert set(schedulers.STOCHASTIC) <= set(schedulers.SCHEDULERS)
    assert set(schedulers.SCHEDULER_CLASSES.values()) == set(schedulers.SCHEDULERS)
    for kind, (reference_class, _) in REFERENCE.items():
        assert schedulers.SCHEDULER_CLASSES[reference_class.__name__] == kind


def test_step_noise_comes_from_prodgen_seeding_stream_by_stream() -> None:
    from prodgen.seeding import derived_seed, latent_from_seed

    draws = [latent_from_seed(derived_seed(7, step), 64) for step in range(3)]
    assert np.array_equal(draws[1], latent_from_seed(derived_seed(7, 1), 64))
    assert not np.allclose(draws[0], draws[1]) and not np.allclose(draws[1], draws[2])
    assert not np.allclose(draws[0], latent_from_seed(7, 64)), "the initial noise is a stream of its own"
    assert derived_seed(7, 1) != derived_seed(8, 1)


@pytest.mark.parametrize(
    ("kind", "config", "steps", "message"),
    [
        ("lcm", LCM_CONFIG, 51, "num_inference_steps=51 is larger than original_inference_steps=50"),
        ("tcd", {**LCM_CONFIG, "original_inference_steps": 2000}, 1, "original_inference_steps=2000 is larger"),
        ("lcm", {**LCM_CONFIG, "thresholding": True}, 1, "thresholding=True is not supported"),
    ],
)
def test_few_step_configs_it_cannot_reproduce_are_refused(
    kind: str, config: dict[str, Any], steps: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        schedulers.make_scheduler(kind, config).set_timesteps(steps)
    with pytest.raises(ValueError, match=r"eta=1.5: expected a number in \[0, 1\]"):
        schedulers.make_scheduler("tcd", LCM_CONFIG, eta=1.5)


@pytest.mark.parametrize("kind", schedulers.SCHEDULERS)
def test_config_as_the_pipeline_reads_it_from_a_saved_folder(kind: str, tmp_path: Path) -> None:
    """A save_pretrained folder's scheduler_config.json lists every key of its own class: the pipeline model
    reads that dict, diffusers' pipelines convert the loaded scheduler with from_config; both agree."""
    diffusers.PNDMScheduler.from_config(SD15_CONFIG).save_config(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    loaded = diffusers.PNDMScheduler.from_pretrained(tmp_path)
    scheduler_class, overrides = REFERENCE[kind]
    denoise_both(kind, saved, 10, 1.0, reference=scheduler_class.from_config(loaded.config, **overrides))


def test_img2img_with_a_tiny_strength_keeps_the_last_step() -> None:
    scheduler = schedulers.make_scheduler("euler", SD15_CONFIG)
    scheduler.set_timesteps(50, strength=0.02)
    assert scheduler.timesteps.tolist() == [0.0]
    scheduler.set_timesteps(np.int64(10), strength=np.float32(0.5))  # scalars as a Triton request carries them
    assert len(scheduler.timesteps) == 5


@pytest.mark.parametrize(
    ("kind", "config", "message"),
    [
        (
            "plms",
            SD15_CONFIG,
            "unknown scheduler 'plms'; expected one of ddim, euler, dpmpp-2m, lcm, euler-ancestral, tcd",
        ),
        ("euler", {**SD15_CONFIG, "beta_schedule": "cosine"}, "beta_schedule='cosine' is not supported"),
        ("ddim", {**SD15_CONFIG, "prediction_type": "sample"}, "prediction_type='sample' is not supported"),
        ("ddim", {**SD15_CONFIG, "thresholding": True}, "thresholding=True is not supported"),
        ("euler", {**SD15_CONFIG, "use_exponential_sigmas": True}, "use_exponential_sigmas=True is not supported"),
        (
            "euler",
            {**SD15_CONFIG, "timestep_type": "continuous", "prediction_type": "v_prediction"},
            "timestep_type='continuous' with prediction_type='v_prediction' is not supported",
        ),
        ("dpmpp-2m", {**SD15_CONFIG, "timestep_spacing": "uniform"}, "timestep_spacing='uniform' is not supported"),
        ("ddim", {**SD15_CONFIG, "num_train_timesteps": 0}, "num_train_timesteps=0: expected a positive integer"),
        ("ddim", {**SD15_CONFIG, "trained_betas": [0.1, 0.2]}, "trained_betas has 2 values"),
        ("euler", "scheduler_config.json", "expected a dict"),
    ],
)
def test_a_config_it_cannot_reproduce_is_refused_with_the_key(kind: str, config: Any, message: str) -> None:
    with pytest.raises(ValueError, match=f"^.*{message}"):
        schedulers.make_scheduler(kind, config)


@pytest.mark.parametrize(
    ("steps", "strength", "message"),
    [
        (0, 1.0, "num_inference_steps=0: expected a positive integer"),
        (1001, 1.0, "larger than the 1000 training timesteps"),
        (1000, 1.0, "reach timestep 1000, beyond the 1000 training timesteps"),  # leading spacing, steps_offset 1
        (10, 0.0, r"strength=0.0: expected a number in \(0, 1\]"),
        (10, 1.5, r"strength=1.5: expected a number in \(0, 1\]"),
        (10, 0.05, "keeps no step of 10"),
    ],
)
def test_bad_steps_or_strength_are_refused(steps: int, strength: float, message: str) -> None:
    scheduler = schedulers.make_scheduler("ddim", SD15_CONFIG)
    with pytest.raises(ValueError, match=message):
        scheduler.set_timesteps(steps, strength=strength)


def test_a_timestep_outside_the_schedule_or_out_of_turn_is_refused() -> None:
    sample = np.zeros((1, 4, 8, 8), dtype=np.float32)
    scheduler = schedulers.make_scheduler("dpmpp-2m", SD15_CONFIG)
    with pytest.raises(ValueError, match="call set_timesteps before"):
        scheduler.step(sample, 999, sample)
    scheduler.set_timesteps(5)
    with pytest.raises(ValueError, match="timestep 998 is not in this schedule"):
        scheduler.step(sample, 998, sample)
    first, _, third = scheduler.timesteps[:3]
    scheduler.step(sample, first, sample)
    with pytest.raises(ValueError, match="steps must follow the timesteps in order"):
        scheduler.step(sample, third, sample)
