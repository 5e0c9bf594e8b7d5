"""DDIM, Euler, DPM-Solver++(2M) and the few-step LCM, Euler Ancestral and TCD schedulers in numpy, step for step
as diffusers 0.42.1 computes them.

This file is copied next to the diffusion pipeline's `model.py` in a published Triton model folder and runs
in the python backend of a production Triton, so it imports numpy only (no torch, no diffusers, no prodgen).

A scheduler is built from the checkpoint's `scheduler/scheduler_config.json` dict the way diffusers'
`<SchedulerClass>.from_config(config)` reads it: keys the class does not know (`_class_name`,
`skip_prk_steps`, ...) are ignored, missing keys take that class's own default (so a Stable Diffusion
config without `timestep_spacing` gives "leading" for DDIM but "linspace" for Euler and DPM-Solver, as in
diffusers), and a value this module does not implement is a `ValueError` naming the key. Implemented:
linear, scaled_linear and squaredcos_cap_v2 betas or trained_betas, zero-terminal-SNR rescaling, epsilon
and v_prediction, the three timestep spacings with steps_offset, DDIM's clipping and final alpha, Euler's
and DPM-Solver's final sigma and Karras sigmas, DPM-Solver's lower-order final steps, solver type and
lambda clipping; LCM's and TCD's distilled schedule (original_inference_steps), LCM's boundary condition
(timestep_scaling) and TCD's gamma (`eta`). Not implemented: thresholding, exponential/beta/flow sigmas, learned variance, churn, eta.

Arithmetic follows diffusers' float32 torch code operation by operation, in float32, with every scalar held
as `np.float32` (a Python float would promote numpy 1.x arithmetic to float64). Where torch works in double
so does this module: `torch.cumprod` accumulates float32 in double on CPU, and the sigma interpolation runs
in float64 numpy in diffusers too. The betas reproduce `torch.linspace`'s float32 values exactly. What can
still differ is the last bit of float32 sqrt/log/exp between numpy's and torch's math libraries: numpy's
float32 sqrt is correctly rounded, torch's CPU sqrt goes through MKL's vsSqrt (VML_HA, ≤ 1 ulp), which on
some CPUs (measured: AMD EPYC, torch 2.13.0+cpu) rounds 190 of Stable Diffusion's 1000 training sigmas one
ulp away. With zero-terminal-SNR betas the largest sigma is sqrt(2²⁴ − 1), 2⁻³⁹ below a float32 rounding
midpoint: this module gives 4095.9998, such a torch 4096.0, and a v-prediction Euler step at that sigma
cancels latents of magnitude ~16,000 down to ~40, so that one ulp shows as ~1e-3 in its result.

Usage, as diffusers' Stable Diffusion pipelines drive a scheduler:

    s = make_scheduler("euler", config)
    s.set_timesteps(25, strength=0.6)          # strength < 1: the img2img tail of the 25-step schedule
    latents = s.add_noise(image_latents, noise, s.timesteps[0])   # or noise * s.init_noise_sigma
    for t in s.timesteps:
        eps = unet(s.scale_model_input(latents, t), t, text)
        latents = s.step(eps, t, latents, noise=fresh)   # fresh: per-step noise for STOCHASTIC kinds, else None

The stochastic schedulers (LCM, Euler Ancestral, TCD) add fresh noise between steps where diffusers draws it
with `randn_tensor`; here the caller passes it, so a seed gives the same picture on every machine.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCHEDULERS = ("ddim", "euler", "dpmpp-2m", "lcm", "euler-ancestral", "tcd")
STOCHASTIC = ("lcm", "euler-ancestral", "tcd")
"""Schedulers that inject fresh noise between steps: their `step` takes it as `noise` (the pipeline draws it from
prodgen's seeding, never from a framework's RNG, so a seed gives the same picture on every machine)."""
SCHEDULER_CLASSES = {
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "DPMSolverMultistepScheduler": "dpmpp-2m",
    "LCMScheduler": "lcm",
    "EulerAncestralDiscreteScheduler": "euler-ancestral",
    "TCDScheduler": "tcd",
}
"""diffusers' class name (a scheduler_config.json's `_class_name`) → the kind here that reproduces it."""

_F32 = np.float32
_ZERO = _F32(0.0)
_HALF = _F32(0.5)
_ONE = _F32(1.0)

# diffusers' __init__ defaults shared by DDIMScheduler, EulerDiscreteScheduler and DPMSolverMultistepScheduler
_COMMON_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "trained_betas": None,
    "prediction_type": "epsilon",
    "steps_offset": 0,
    "rescale_betas_zero_snr": False,
}


class Scheduler:
    """The beta/alpha schedule every scheduler shares, the img2img tail of a schedule, and config checks.

    Subclasses set `kind`, `DEFAULTS` (the diffusers class's own defaults for the keys it reads),
    `SUPPORTED` (key -> the values this module implements), and build their schedule in `_schedule`.
    """

    kind = ""
    DEFAULTS: dict[str, Any] = {}
    SUPPORTED: dict[str, tuple[Any, ...]] = {
        "beta_schedule": ("linear", "scaled_linear", "squaredcos_cap_v2"),
        "prediction_type": ("epsilon", "v_prediction"),
        "timestep_spacing": ("leading", "trailing", "linspace"),
        "rescale_betas_zero_snr": (False, True),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        if not isinstance(config, dict):
            raise ValueError(f"scheduler config: expected a dict (scheduler_config.json), got {type(config).__name__}")
        self.config = {key: config.get(key, default) for key, default in self.DEFAULTS.items()}
        for key, allowed in self.SUPPORTED.items():
            if self.config[key] not in allowed:
                choices = ", ".join(repr(value) for value in allowed)
                raise ValueError(
                    f"scheduler config: {key}={self.config[key]!r} is not supported by the {self.kind} scheduler; "
                    f"expected one of {choices}"
                )
        self.num_train_timesteps = _positive_int(self.config["num_train_timesteps"], "num_train_timesteps")
        self.alphas_cumprod = _alphas_cumprod(self.config, self.num_train_timesteps)
        self.init_noise_sigma = 1.0
        self.timesteps: np.ndarray = np.zeros(0, dtype=np.int64)
        self.num_inference_steps = 0
        self._schedule_timesteps: np.ndarray = self.timesteps
        self._begin_index = 0
        self._next = 0
        """Position in `timesteps` of the next step: a timestep that appears twice (Karras sigmas rounded to
        the same integer) is the one at this position, as diffusers counts its step_index."""

    def set_timesteps(self, num_inference_steps: int, strength: float = 1.0) -> None:
        """The schedule for `num_inference_steps` steps; with strength < 1 only its last steps, as diffusers'
        img2img and inpainting pipelines run them (`get_timesteps`: int(steps × strength) steps are kept)."""
        steps = _positive_int(num_inference_steps, "num_inference_steps")
        if steps > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps={steps} is larger than the {self.num_train_timesteps} training timesteps "
                "of this scheduler config"
            )
        number = (int, float, np.integer, np.floating)
        if isinstance(strength, bool) or not isinstance(strength, number) or not 0.0 < strength <= 1.0:
            raise ValueError(f"strength={strength!r}: expected a number in (0, 1]")
        kept = min(int(steps * strength), steps)
        if kept < 1:
            raise ValueError(
                f"strength={strength} keeps no step of {steps} (int(steps × strength) = 0); "
                f"use a strength of at least {1 / steps:g} or more steps"
            )
        schedule = self._schedule(steps)
        if schedule.max() > self.num_train_timesteps - 1:
            self.num_inference_steps = 0  # _schedule has replaced the sigmas: nothing may step until a new schedule
            raise ValueError(
                f"{steps} steps with timestep_spacing={self.config['timestep_spacing']!r} and steps_offset="
                f"{self.config['steps_offset']} reach timestep {schedule.max():g}, beyond the "
                f"{self.num_train_timesteps} training timesteps"
            )
        self.num_inference_steps = steps
        self._schedule_timesteps = schedule
        self._begin_index = steps - kept
        self.timesteps = self._schedule_timesteps[self._begin_index :].copy()
        self._next = 0
        self._after_set_timesteps()

    def scale_model_input(self, sample: np.ndarray, t: float) -> np.ndarray:
        """The UNet's input at timestep t; DDIM and DPM-Solver use the sample unchanged."""
        self._index(t)
        return _as_f32(sample)

    def step(self, noise_pred: np.ndarray, t: float, sample: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
        """The sample at the next timestep (diffusers' prev_sample) from the UNet's prediction at t.

        `noise` (the sample's shape, standard normal) is the fresh noise a stochastic scheduler (STOCHASTIC)
        injects at this step, where diffusers would draw it with `randn_tensor`; the others ignore it."""
        index = self._index(t)
        fresh = None
        if self._needs_noise(index):
            if noise is None:
                raise ValueError(f"the {self.kind} scheduler injects noise at step {index}: pass it as `noise`")
            fresh = _as_f32(noise)
            if fresh.shape != np.shape(sample):
                raise ValueError(f"noise of shape {fresh.shape}, expected the sample's {np.shape(sample)}")
        prev_sample = self._step(index, _as_f32(noise_pred), _as_f32(sample), fresh)
        self._next = index - self._begin_index + 1
        return prev_sample.astype(np.float32)

    def _needs_noise(self, index: int) -> bool:
        """Whether the step at `index` of the full schedule adds fresh noise."""
        return False

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError

    def add_noise(self, original: np.ndarray, noise: np.ndarray, t: float) -> np.ndarray:
        """`original` noised to timestep t (the start of img2img, the kept region while inpainting)."""
        return self._add_noise(self._index(t), _as_f32(original), _as_f32(noise)).astype(np.float32)

    def _add_noise(self, index: int, original: np.ndarray, noise: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _schedule(self, steps: int) -> np.ndarray:
        raise NotImplementedError

    def _after_set_timesteps(self) -> None:
        """Hook for state that restarts with each schedule (DPM-Solver's history of model outputs)."""

    def _index(self, t: float) -> int:
        """Position of timestep t in the full schedule (diffusers' step_index); t must be one of `timesteps`."""
        if self.num_inference_steps == 0:
            raise ValueError("call set_timesteps before scale_model_input, step or add_noise")
        if self._next < len(self.timesteps) and self.timesteps[self._next] == t:
            return self._begin_index + self._next
        matches = np.flatnonzero(self.timesteps == t)
        if matches.size == 0:
            raise ValueError(f"timestep {t!r} is not in this schedule's timesteps {self.timesteps.tolist()}")
        return self._begin_index + int(matches[0])


class DDIMScheduler(Scheduler):
    """diffusers' DDIMScheduler with eta = 0 (deterministic), as the Stable Diffusion pipelines call it."""

    kind = "ddim"
    DEFAULTS = {
        **_COMMON_DEFAULTS,
        "clip_sample": True,
        "set_alpha_to_one": True,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "clip_sample_range": 1.0,
        "sample_max_value": 1.0,
        "timestep_spacing": "leading",
    }
    SUPPORTED = {**Scheduler.SUPPORTED, "thresholding": (False,)}

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.final_alpha_cumprod = _ONE if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]
        self.clip_sample_range = _F32(self.config["clip_sample_range"])

    def _schedule(self, steps: int) -> np.ndarray:
        return _spaced_timesteps(self.config, self.num_train_timesteps, steps)

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        t = int(self._schedule_timesteps[index])
        # diffusers steps back by num_train_timesteps // steps whatever the spacing, and keeps the full step
        # count for an img2img tail
        prev_t = t - self.num_train_timesteps // self.num_inference_steps
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.final_alpha_cumprod
        beta_prod_t = _ONE - alpha_prod_t
        if self.config["prediction_type"] == "epsilon":
            pred_original = (sample - np.sqrt(beta_prod_t) * model_output) / np.sqrt(alpha_prod_t)
            pred_epsilon = model_output
        else:
            pred_original = np.sqrt(alpha_prod_t) * sample - np.sqrt(beta_prod_t) * model_output
            pred_epsilon = np.sqrt(alpha_prod_t) * model_output + np.sqrt(beta_prod_t) * sample
        if self.config["clip_sample"]:
            pred_original = np.clip(pred_original, -self.clip_sample_range, self.clip_sample_range)
        # eta = 0: no variance term in the direction and no fresh noise
        direction = np.sqrt(_ONE - alpha_prod_t_prev) * pred_epsilon
        return np.sqrt(alpha_prod_t_prev) * pred_original + direction

    def _add_noise(self, index: int, original: np.ndarray, noise: np.ndarray) -> np.ndarray:
        alpha_prod = self.alphas_cumprod[int(self._schedule_timesteps[index])]
        return np.sqrt(alpha_prod) * original + np.sqrt(_ONE - alpha_prod) * noise


class _SigmaScheduler(Scheduler):
    """Schedulers that work on sigma = sqrt((1 - ᾱ) / ᾱ): interpolated at the schedule's timesteps, or with
    `use_karras_sigmas` spaced as Karras et al. (2022) and mapped back to (fractional) timesteps."""

    SUPPORTED = {
        **Scheduler.SUPPORTED,
        "final_sigmas_type": ("zero", "sigma_min"),
        "use_karras_sigmas": (False, None, True),
        "use_exponential_sigmas": (False, None),
        "use_beta_sigmas": (False, None),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        if self.config["rescale_betas_zero_snr"]:
            # ᾱ = 0 would make the last sigma infinite; diffusers sets it to 2⁻²⁴ instead (DDIM keeps 0)
            self.alphas_cumprod[-1] = _F32(2**-24)
        self.sigmas = np.zeros(0, dtype=np.float32)

    def _train_sigmas(self) -> np.ndarray:
        return np.sqrt((_ONE - self.alphas_cumprod) / self.alphas_cumprod)

    def _interpolated_sigmas(self, timesteps: np.ndarray) -> np.ndarray:
        """float64 sigmas at (possibly fractional) timesteps, as diffusers' numpy code interpolates them."""
        train_sigmas = self._train_sigmas()
        return np.interp(timesteps, np.arange(0, len(train_sigmas)), train_sigmas)

    def _karras_timesteps(self, sigmas: np.ndarray) -> np.ndarray:
        """The fractional training timestep of each sigma, interpolating log sigma (diffusers' _sigma_to_t)."""
        log_sigmas = np.log(self._train_sigmas())
        return np.array([_sigma_to_t(float(sigma), log_sigmas) for sigma in sigmas])

    def _set_sigmas(self, sigmas: np.ndarray) -> None:
        """The step sigmas in float32, with the final one (0, or the smallest training sigma) appended."""
        last = self._train_sigmas()[0] if self.config["final_sigmas_type"] == "sigma_min" else 0
        self.sigmas = np.concatenate([sigmas, [last]]).astype(np.float32)


class _EulerFamily(_SigmaScheduler):
    """Euler's input scaling, initial noise and forward noising, shared by Euler and Euler Ancestral."""

    def _after_set_timesteps(self) -> None:
        max_sigma = self.sigmas.max()
        if self.config["timestep_spacing"] in ("linspace", "trailing"):
            self.init_noise_sigma = float(max_sigma)
        else:
            self.init_noise_sigma = float(np.sqrt(max_sigma * max_sigma + _ONE))

    def scale_model_input(self, sample: np.ndarray, t: float) -> np.ndarray:
        sigma = self.sigmas[self._index(t)]
        return (_as_f32(sample) / np.sqrt(sigma * sigma + _ONE)).astype(np.float32)

    def _add_noise(self, index: int, original: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return original + noise * self.sigmas[index]


class EulerScheduler(_EulerFamily):
    """diffusers' EulerDiscreteScheduler without churn (s_churn = 0), as the Stable Diffusion pipelines call it."""

    kind = "euler"
    DEFAULTS = {
        **_COMMON_DEFAULTS,
        "interpolation_type": "linear",
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "sigma_min": None,
        "sigma_max": None,
        "timestep_spacing": "linspace",
        "timestep_type": "discrete",
        "final_sigmas_type": "zero",
    }
    SUPPORTED = {
        **_SigmaScheduler.SUPPORTED,
        "interpolation_type": ("linear",),
        "timestep_type": ("discrete", "continuous"),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        if self.config["timestep_type"] == "continuous" and self.config["prediction_type"] == "v_prediction":
            # diffusers then feeds the UNet 0.25·log(sigma) instead of the timestep (EDM-style models)
            raise ValueError(
                "scheduler config: timestep_type='continuous' with prediction_type='v_prediction' is not supported "
                "by the euler scheduler; expected timestep_type='discrete'"
            )

    def _schedule(self, steps: int) -> np.ndarray:
        # Euler keeps fractional timesteps for "linspace" (999.0, 946.4737, ...), all as float32
        timesteps = _spaced_timesteps(self.config, self.num_train_timesteps, steps, fractional=True)
        sigmas = self._interpolated_sigmas(timesteps)
        if self.config["use_karras_sigmas"]:
            # the spaced schedule's end points unless the config pins them
            sigma_min = sigmas[-1] if self.config["sigma_min"] is None else self.config["sigma_min"]
            sigma_max = sigmas[0] if self.config["sigma_max"] is None else self.config["sigma_max"]
            sigmas = _karras_sigmas(float(sigma_min), float(sigma_max), steps)
            timesteps = self._karras_timesteps(sigmas).astype(np.float32)
        self._set_sigmas(sigmas)
        return timesteps

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        sigma = self.sigmas[index]
        sigma_hat = sigma * _ONE  # (gamma + 1) with gamma = 0: no churn
        if self.config["prediction_type"] == "epsilon":
            pred_original = sample - sigma_hat * model_output
        else:
            pred_original = model_output * (-sigma / np.sqrt(sigma * sigma + _ONE)) + sample / (sigma * sigma + _ONE)
        derivative = (sample - pred_original) / sigma_hat
        dt = self.sigmas[index + 1] - sigma_hat
        return sample + derivative * dt


class DPMSolverPlusPlus2MScheduler(_SigmaScheduler):
    """diffusers' DPMSolverMultistepScheduler with algorithm_type="dpmsolver++" and solver_order=2.

    The kind fixes the algorithm and the order, so a config's own `algorithm_type`/`solver_order` are
    overridden, as `DPMSolverMultistepScheduler.from_config(config, algorithm_type=..., solver_order=2)` does.
    It is a multistep method: each step uses the previous step's model output, so steps must follow
    `timesteps` in order, and `set_timesteps` starts a fresh history.
    """

    kind = "dpmpp-2m"
    DEFAULTS = {
        **_COMMON_DEFAULTS,
        "thresholding": False,
        "dynamic_thresholding_ratio": 0.995,
        "sample_max_value": 1.0,
        "solver_type": "midpoint",
        "lower_order_final": True,
        "euler_at_final": False,
        "use_karras_sigmas": False,
        "use_exponential_sigmas": False,
        "use_beta_sigmas": False,
        "use_lu_lambdas": False,
        "use_flow_sigmas": False,
        "flow_shift": 1.0,
        "final_sigmas_type": "zero",
        "lambda_min_clipped": -math.inf,
        "variance_type": None,
        "timestep_spacing": "linspace",
        "use_dynamic_shifting": False,
        "time_shift_type": "exponential",
    }
    SUPPORTED = {
        **_SigmaScheduler.SUPPORTED,
        "thresholding": (False,),
        "solver_type": ("midpoint", "heun"),
        "use_lu_lambdas": (False,),
        "use_flow_sigmas": (False,),
        "variance_type": (None,),
        "use_dynamic_shifting": (False,),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self._previous_output: np.ndarray | None = None

    def _schedule(self, steps: int) -> np.ndarray:
        if self.config["use_karras_sigmas"]:
            # over the whole training range, whatever the spacing; rounded to integer timesteps except for
            # the cosine schedule, and then possibly repeated at the low-noise end
            train_sigmas = self._train_sigmas()
            sigmas = _karras_sigmas(float(train_sigmas[0]), float(train_sigmas[-1]), steps)
            fractional = self._karras_timesteps(sigmas)
            if self.config["beta_schedule"] != "squaredcos_cap_v2":
                fractional = fractional.round()
            self._set_sigmas(sigmas)
            return fractional.astype(np.int64)
        last_timestep = self.num_train_timesteps - self._clipped_index()
        spacing = self.config["timestep_spacing"]
        if spacing == "linspace":
            timesteps = np.linspace(0, last_timestep - 1, steps + 1).round()[::-1][:-1].copy().astype(np.int64)
        elif spacing == "leading":
            spaced = (np.arange(0, steps + 1) * (last_timestep // (steps + 1))).round()[::-1][:-1].astype(np.int64)
            timesteps = spaced + int(self.config["steps_offset"])
        else:
            spaced = np.arange(last_timestep, 0, -self.num_train_timesteps / steps).round().astype(np.int64)
            timesteps = spaced - 1
        self._set_sigmas(self._interpolated_sigmas(timesteps))
        return timesteps

    def _clipped_index(self) -> int:
        """How many of the noisiest training timesteps `lambda_min_clipped` cuts off (none by default)."""
        alpha_t = np.sqrt(self.alphas_cumprod)
        sigma_t = np.sqrt(_ONE - self.alphas_cumprod)
        with np.errstate(divide="ignore"):
            lambda_t = np.log(alpha_t) - np.log(sigma_t)
        return int(np.searchsorted(lambda_t[::-1], self.config["lambda_min_clipped"]))

    def _after_set_timesteps(self) -> None:
        self._previous_output = None

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        if index != self._begin_index + self._next:
            raise ValueError(
                f"dpmpp-2m steps must follow the timesteps in order: got t={self._schedule_timesteps[index]!r} "
                "out of turn (call set_timesteps to start again)"
            )
        total = len(self._schedule_timesteps)
        lower_order_final = index == total - 1 and (
            self.config["euler_at_final"]
            or (self.config["lower_order_final"] and total < 15)
            or self.config["final_sigmas_type"] == "zero"
        )
        # with order 2, diffusers' `lower_order_second` check cannot change the choice below
        x0_pred = self._predicted_original(model_output, sample, index)
        with np.errstate(divide="ignore"):
            if self._previous_output is None or lower_order_final:
                prev_sample = self._first_order(x0_pred, sample, index)
            else:
                prev_sample = self._second_order(x0_pred, self._previous_output, sample, index)
        self._previous_output = x0_pred
        return prev_sample

    def _add_noise(self, index: int, original: np.ndarray, noise: np.ndarray) -> np.ndarray:
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index])
        return alpha_t * original + sigma_t * noise

    def _predicted_original(self, model_output: np.ndarray, sample: np.ndarray, index: int) -> np.ndarray:
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index])
        if self.config["prediction_type"] == "epsilon":
            return (sample - sigma_t * model_output) / alpha_t
        return alpha_t * sample - sigma_t * model_output

    def _first_order(self, x0_pred: np.ndarray, sample: np.ndarray, index: int) -> np.ndarray:
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index + 1])
        alpha_s, sigma_s = _alpha_sigma(self.sigmas[index])
        h = (np.log(alpha_t) - np.log(sigma_t)) - (np.log(alpha_s) - np.log(sigma_s))
        return (sigma_t / sigma_s) * sample - (alpha_t * (np.exp(-h) - _ONE)) * x0_pred

    def _second_order(self, m0: np.ndarray, m1: np.ndarray, sample: np.ndarray, index: int) -> np.ndarray:
        alpha_t, sigma_t = _alpha_sigma(self.sigmas[index + 1])
        alpha_s0, sigma_s0 = _alpha_sigma(self.sigmas[index])
        alpha_s1, sigma_s1 = _alpha_sigma(self.sigmas[index - 1])
        lambda_t = np.log(alpha_t) - np.log(sigma_t)
        lambda_s0 = np.log(alpha_s0) - np.log(sigma_s0)
        lambda_s1 = np.log(alpha_s1) - np.log(sigma_s1)
        h, h_0 = lambda_t - lambda_s0, lambda_s0 - lambda_s1
        r0 = h_0 / h
        d0, d1 = m0, (_ONE / r0) * (m0 - m1)
        if self.config["solver_type"] == "midpoint":
            return (
                (sigma_t / sigma_s0) * sample
                - (alpha_t * (np.exp(-h) - _ONE)) * d0
                - _HALF * (alpha_t * (np.exp(-h) - _ONE)) * d1
            )
        return (
            (sigma_t / sigma_s0) * sample
            - (alpha_t * (np.exp(-h) - _ONE)) * d0
            + (alpha_t * ((np.exp(-h) - _ONE) / h + _ONE)) * d1
        )


class EulerAncestralScheduler(_EulerFamily):
    """diffusers' EulerAncestralDiscreteScheduler: an Euler step down to sigma_down, then fresh noise of
    sigma_up (the sampler SD-Turbo-style checkpoints ship, with "trailing" spacing and guidance 0)."""

    kind = "euler-ancestral"
    DEFAULTS = {**_COMMON_DEFAULTS, "timestep_spacing": "linspace"}
    SUPPORTED = Scheduler.SUPPORTED

    def _schedule(self, steps: int) -> np.ndarray:
        timesteps = _spaced_timesteps(self.config, self.num_train_timesteps, steps, fractional=True)
        # always a final sigma of 0: the class has no final_sigmas_type
        self.sigmas = np.concatenate([self._interpolated_sigmas(timesteps), [0.0]]).astype(np.float32)
        return timesteps

    def _needs_noise(self, index: int) -> bool:
        return True  # at the last step sigma_up is 0, but diffusers draws (and scales to nothing) noise there too

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        assert noise is not None
        sigma = self.sigmas[index]
        if self.config["prediction_type"] == "epsilon":
            pred_original = sample - sigma * model_output
        else:
            pred_original = model_output * (-sigma / np.sqrt(sigma * sigma + _ONE)) + sample / (sigma * sigma + _ONE)
        sigma_to = self.sigmas[index + 1]
        sigma_up = np.sqrt(sigma_to * sigma_to * (sigma * sigma - sigma_to * sigma_to) / (sigma * sigma))
        sigma_down = np.sqrt(sigma_to * sigma_to - sigma_up * sigma_up)
        derivative = (sample - pred_original) / sigma
        prev_sample = sample + derivative * (sigma_down - sigma)
        return prev_sample + noise * sigma_up


class _ConsistencyScheduler(Scheduler):
    """The schedule LCMScheduler and TCDScheduler share: `original_inference_steps` evenly spaced training
    timesteps (999, 979, ... for 50) of which `steps` are taken at evenly spaced indices. Neither reads
    `timestep_spacing` or `steps_offset`; the initial noise is unscaled and so is the UNet's input."""

    DEFAULTS = {
        **_COMMON_DEFAULTS,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "original_inference_steps": 50,
        "clip_sample": False,
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,
        "thresholding": False,
        "timestep_scaling": 10.0,
    }
    SUPPORTED = {
        "beta_schedule": Scheduler.SUPPORTED["beta_schedule"],
        "prediction_type": Scheduler.SUPPORTED["prediction_type"],
        "rescale_betas_zero_snr": (False, True),
        "thresholding": (False,),
    }

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.original_steps = _positive_int(self.config["original_inference_steps"], "original_inference_steps")
        if self.original_steps > self.num_train_timesteps:
            raise ValueError(
                f"scheduler config: original_inference_steps={self.original_steps} is larger than the "
                f"{self.num_train_timesteps} training timesteps"
            )
        self.final_alpha_cumprod = _ONE if self.config["set_alpha_to_one"] else self.alphas_cumprod[0]

    def _schedule(self, steps: int) -> np.ndarray:
        if steps > self.original_steps:
            raise ValueError(
                f"num_inference_steps={steps} is larger than original_inference_steps={self.original_steps}: "
                f"the {self.kind} schedule takes its steps from that many distilled timesteps"
            )
        k = self.num_train_timesteps // self.original_steps
        origin = (np.arange(1, self.original_steps + 1) * k - 1)[::-1].copy()
        indices = np.floor(np.linspace(0, len(origin), num=steps, endpoint=False)).astype(np.int64)
        return origin[indices].astype(np.int64)

    def _add_noise(self, index: int, original: np.ndarray, noise: np.ndarray) -> np.ndarray:
        alpha_prod = self.alphas_cumprod[int(self._schedule_timesteps[index])]
        return np.sqrt(alpha_prod) * original + np.sqrt(_ONE - alpha_prod) * noise

    def _alpha(self, t: int) -> np.float32:
        return self.alphas_cumprod[t] if t >= 0 else self.final_alpha_cumprod

    def _predicted_original(
        self, model_output: np.ndarray, sample: np.ndarray, alpha_prod_t: np.float32
    ) -> tuple[np.ndarray, np.ndarray]:
        """(x̂₀, ε̂) from the UNet's epsilon or v prediction."""
        beta_prod_t = _ONE - alpha_prod_t
        if self.config["prediction_type"] == "epsilon":
            return (sample - np.sqrt(beta_prod_t) * model_output) / np.sqrt(alpha_prod_t), model_output
        pred_original = np.sqrt(alpha_prod_t) * sample - np.sqrt(beta_prod_t) * model_output
        return pred_original, np.sqrt(alpha_prod_t) * model_output + np.sqrt(beta_prod_t) * sample


class LCMScheduler(_ConsistencyScheduler):
    """diffusers' LCMScheduler (Latent Consistency Models): each step predicts the clean latents through the
    consistency boundary condition (c_skip, c_out at timestep × timestep_scaling) and, but at the last step,
    noises them afresh to the next timestep."""

    kind = "lcm"

    def _needs_noise(self, index: int) -> bool:
        return index != self.num_inference_steps - 1

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        t = int(self._schedule_timesteps[index])
        prev_index = index + 1
        prev_t = int(self._schedule_timesteps[prev_index]) if prev_index < len(self._schedule_timesteps) else t
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self._alpha(prev_t)
        # the boundary condition with sigma_data 0.5, in float32; torch divides a Python number by a tensor as
        # reciprocal × number
        scaled = _F32(t) * _F32(self.config["timestep_scaling"])
        c_skip = (_ONE / (scaled * scaled + _F32(0.25))) * _F32(0.25)
        c_out = scaled / np.sqrt(scaled * scaled + _F32(0.25))
        pred_original, _ = self._predicted_original(model_output, sample, alpha_prod_t)
        if self.config["clip_sample"]:
            limit = _F32(self.config["clip_sample_range"])
            pred_original = np.clip(pred_original, -limit, limit)
        denoised = c_out * pred_original + c_skip * sample
        if noise is None:
            return denoised
        return np.sqrt(alpha_prod_t_prev) * denoised + np.sqrt(_ONE - alpha_prod_t_prev) * noise


class TCDScheduler(_ConsistencyScheduler):
    """diffusers' TCDScheduler (Trajectory Consistency Distillation): its step predicts the sample at the
    intermediate timestep s = ⌊(1 − γ)·t_prev⌋ and noises it forward to t_prev with fresh noise.

    γ is diffusers' `eta` argument of `step` (its default 0.3, the value the TCD authors recommend); 0 makes
    sampling deterministic. The kind takes it at construction: `make_scheduler("tcd", config, eta=0.3)`."""

    kind = "tcd"
    DEFAULT_ETA = 0.3

    def __init__(self, config: dict[str, Any], eta: float = DEFAULT_ETA) -> None:
        super().__init__(config)
        number = (int, float, np.integer, np.floating)
        if isinstance(eta, bool) or not isinstance(eta, number) or not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta={eta!r}: expected a number in [0, 1] (TCD's gamma)")
        self.eta = float(eta)

    def _needs_noise(self, index: int) -> bool:
        return self.eta > 0 and index != self.num_inference_steps - 1

    def _step(self, index: int, model_output: np.ndarray, sample: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        t = int(self._schedule_timesteps[index])
        prev_index = index + 1
        prev_t = int(self._schedule_timesteps[prev_index]) if prev_index < len(self._schedule_timesteps) else 0
        # torch multiplies the int64 timestep by the Python float in float32, then floors
        s = int(np.floor(_F32(1.0 - self.eta) * _F32(prev_t)))
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self._alpha(prev_t)
        alpha_prod_s = self.alphas_cumprod[s]
        pred_original, pred_epsilon = self._predicted_original(model_output, sample, alpha_prod_t)
        pred_noised = np.sqrt(alpha_prod_s) * pred_original + np.sqrt(_ONE - alpha_prod_s) * pred_epsilon
        if noise is None:
            return pred_noised
        ratio = alpha_prod_t_prev / alpha_prod_s
        return np.sqrt(ratio) * pred_noised + np.sqrt(_ONE - ratio) * noise


_KINDS: dict[str, type[Scheduler]] = {
    "ddim": DDIMScheduler,
    "euler": EulerScheduler,
    "dpmpp-2m": DPMSolverPlusPlus2MScheduler,
    "lcm": LCMScheduler,
    "euler-ancestral": EulerAncestralScheduler,
    "tcd": TCDScheduler,
}


def make_scheduler(kind: str, config: dict[str, Any], eta: float | None = None) -> Scheduler:
    """A scheduler of `kind` (one of SCHEDULERS) from a checkpoint's scheduler_config.json dict; `eta` is
    TCD's gamma (None: its default), which the other kinds do not take."""
    if kind not in _KINDS:
        raise ValueError(f"unknown scheduler {kind!r}; expected one of {', '.join(SCHEDULERS)}")
    if kind == "tcd":
        return TCDScheduler(config, TCDScheduler.DEFAULT_ETA if eta is None else eta)
    return _KINDS[kind](config)


def _as_f32(array: np.ndarray) -> np.ndarray:
    return np.asarray(array, dtype=np.float32)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return int(value)


def _alpha_sigma(sigma: np.float32) -> tuple[np.float32, np.float32]:
    """(α_t, σ_t) of the variance-preserving process for a sigma of the variance-exploding one."""
    alpha_t = _ONE / np.sqrt(sigma * sigma + _ONE)
    return alpha_t, sigma * alpha_t


def _alphas_cumprod(config: dict[str, Any], num_train_timesteps: int) -> np.ndarray:
    """ᾱ_t as diffusers computes it: float32 betas, and a cumulative product accumulated in double as
    torch.cumprod does on CPU, rounded to float32."""
    if config["trained_betas"] is not None:
        betas = np.asarray(config["trained_betas"], dtype=np.float32)
        if betas.shape != (num_train_timesteps,):
            raise ValueError(
                f"scheduler config: trained_betas has {betas.size} values, expected num_train_timesteps="
                f"{num_train_timesteps}"
            )
    else:
        beta_start, beta_end = float(config["beta_start"]), float(config["beta_end"])
        schedule = config["beta_schedule"]
        if schedule == "linear":
            betas = _torch_linspace_f32(beta_start, beta_end, num_train_timesteps)
        elif schedule == "scaled_linear":
            roots = _torch_linspace_f32(beta_start**0.5, beta_end**0.5, num_train_timesteps)
            betas = roots * roots
        else:
            betas = _cosine_betas(num_train_timesteps)
    if config["rescale_betas_zero_snr"]:
        betas = _zero_terminal_snr(betas)
    return _cumprod(_ONE - betas)


def _cumprod(values: np.ndarray) -> np.ndarray:
    """float32 cumulative product accumulated in double, as torch.cumprod does on CPU."""
    return np.cumprod(values.astype(np.float64)).astype(np.float32)


def _zero_terminal_snr(betas: np.ndarray) -> np.ndarray:
    """Betas rescaled so that the last timestep is pure noise (Lin et al. 2023, algorithm 1), in float32."""
    alphas_bar_sqrt = np.sqrt(_cumprod(_ONE - betas))
    first, last = alphas_bar_sqrt[0], alphas_bar_sqrt[-1]
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * (first / (first - last))
    alphas_bar = alphas_bar_sqrt * alphas_bar_sqrt
    alphas = np.concatenate([alphas_bar[0:1], alphas_bar[1:] / alphas_bar[:-1]])
    return _ONE - alphas


def _karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> np.ndarray:
    """Karras et al. (2022) noise levels: evenly spaced in sigma^(1/rho), in float64 as diffusers computes them."""
    ramp = np.linspace(0, 1, steps)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    return (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho


def _sigma_to_t(sigma: float, log_sigmas: np.ndarray) -> float:
    """The fractional training timestep whose interpolated log sigma is log(sigma).

    diffusers runs this under numpy 1.x promotion, where its float64 log sigma meets the float32 table as
    float32; the casts below keep that arithmetic under numpy 2 as well.
    """
    log_sigma = _F32(np.log(max(sigma, 1e-10)))
    low = min(int(np.cumsum(log_sigma - log_sigmas >= 0).argmax()), len(log_sigmas) - 2)
    weight = np.clip((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1]), _ZERO, _ONE)
    return float(np.float64(_ONE - weight) * low + np.float64(weight) * (low + 1))


def _torch_linspace_f32(start: float, end: float, count: int) -> np.ndarray:
    """`torch.linspace(start, end, count, dtype=torch.float32)` value for value.

    torch computes a float32 step, then start + step·i for the first half and end − step·(count−1−i) for the
    second, each as one fused multiply-add on FMA-capable CPUs (exact product and sum, one rounding). In
    float64 the product of a float32 step and an index below 2²⁴ is exact, and so is its sum with a float32
    bound at the magnitudes of beta schedules, so one rounding to float32 gives torch's value. numpy's own
    linspace differs from it by an ulp in about a third of the values.
    """
    first, last = _F32(start), _F32(end)
    if count == 1:
        return np.array([first], dtype=np.float32)
    step = np.float64((last - first) / _F32(count - 1))
    index = np.arange(count, dtype=np.float64)
    rising = np.float64(first) + step * index
    falling = np.float64(last) - step * (count - 1 - index)
    return np.where(index < count // 2, rising, falling).astype(np.float32)


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """The "squaredcos_cap_v2" schedule (Nichol & Dhariwal 2021), in double as diffusers' betas_for_alpha_bar."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return np.asarray(betas, dtype=np.float32)


def _spaced_timesteps(
    config: dict[str, Any], num_train_timesteps: int, steps: int, fractional: bool = False
) -> np.ndarray:
    """DDIM's and Euler's timestep spacings: int64 for DDIM, float32 (fractional for "linspace") for Euler."""
    spacing = config["timestep_spacing"]
    if spacing == "linspace":
        if fractional:
            return np.linspace(0, num_train_timesteps - 1, steps, dtype=np.float32)[::-1].copy()
        return np.linspace(0, num_train_timesteps - 1, steps).round()[::-1].copy().astype(np.int64)
    dtype = np.float32 if fractional else np.int64
    if spacing == "leading":
        spaced: np.ndarray = (np.arange(0, steps) * (num_train_timesteps // steps)).round()[::-1].astype(dtype)
        return spaced + int(config["steps_offset"])
    spaced = np.round(np.arange(num_train_timesteps, 0, -num_train_timesteps / steps)).astype(dtype)
    return spaced - 1
