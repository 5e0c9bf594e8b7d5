"""`prodgen-export stable-diffusion --openvino`: the pipeline's components on OpenVINO, gated by the whole picture.

Each component the pipeline runs for every picture (text encoder, UNet, VAE decoder) is converted
from its verified FP32 ONNX to OpenVINO IR and run on OpenVINO's CPU plugin with the served
settings, at the precision the plugin picks on this machine (bfloat16 where the CPU has native
bf16: AVX512_BF16 or AMX; FP32 elsewhere). A component is not judged alone: the error of one
UNet call is small, and what a shop sees is that error carried through every denoising step and
the decoder. So the candidates are swapped into the published pipeline itself, run in this
process (model_repository/direct_pipeline.py), and its pictures over fixed prompts and seeds are
compared with the FP32 pipeline's. A part is published as `NAME_<part>_openvino`, and the
pipeline pointed at it, only when the pictures are inside the gate and the part's calls took
less time than its ONNX Runtime calls in the same pictures. The VAE encoder (img2img, inpaint,
restage: once a picture) stays on ONNX Runtime; txt2img pictures cannot check it.
"""

from __future__ import annotations

import gc
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from prodgen.errors import ProdgenError
from prodgen.export.fidelity import lowest_of, lowest_ssim, psnr_db, ssim_text
from prodgen.export.openvino_int8 import STAGES, quantise
from prodgen.model_facts import config_facts
from prodgen.model_repository.config import openvino_component_config, parse_pbtxt, to_pbtxt
from prodgen.model_repository.direct_pipeline import DirectPipeline
from prodgen.model_repository.pipeline_components import component_models, onnx_component, switch_components
from prodgen.model_repository.publish import (
    CONFIG_FILE,
    ONNX_FILE,
    OPENVINO_FILE,
    PublishedVersion,
    newest_version,
    publish,
)
from prodgen.model_repository.stable_diffusion import DEFAULTS
from prodgen.openvino_runtime import MISSING, inference_precision, openvino_available, openvino_version, save_ir

Step = Callable[[str], None]

OPENVINO_PARTS = ("text_encoder", "unet", "vae_decoder")
"""What every txt2img picture runs, so what the gate's pictures check."""
OPENVINO_COMPONENT_SUFFIX = "_openvino"
RECORD_FILE = "prodgen-openvino.json"
GATE_PROMPTS = (
    "a studio photo of a red sneaker on a white table",
    "a ceramic coffee mug on a wooden shelf, soft morning light",
)
GATE_SEEDS = (0, 1)
GATE_GUIDANCE = 7.5
GATE_SCHEDULER = "ddim"
CALIBRATION_PROMPTS = (
    "a pair of leather boots on a stone floor",
    "a glass perfume bottle on a silk cloth, product photo",
)
CALIBRATION_SEED = 100
DEFAULT_GATE_STEPS = 4
"""Steps per gate picture: enough for the UNet's error to be carried through several steps and
the scheduler; more costs minutes per picture at 512² on a CPU."""


@dataclass(frozen=True)
class PictureGate:
    """What the OpenVINO pipeline's pictures must keep of the FP32 pipeline's, each picture on its own.

    30 dB is about 8 uint8 levels RMS. OpenVINO's own pipeline (optimum-intel, bf16 by default on
    a bf16 CPU) drew pictures 34.6 dB from the FP32 pipeline's at 512² on the SD-1.5-sized bench
    checkpoint (bench/reports/diffusion): what shops already accept from CPU diffusion. Another
    picture altogether lands far below: on that checkpoint (FP32, 512², 4 steps) another seed's
    picture was 13.0 dB from the first, another prompt's with the same seed 19.6 dB. SSIM 0.9 asks
    the least similar picture to keep its structure, which PSNR averages away."""

    min_psnr_db: float = 30.0
    min_ssim: float = 0.9

    def admits(self, psnr: float, ssim: float | None) -> bool:
        return psnr >= self.min_psnr_db and (ssim is None or ssim >= self.min_ssim)


@dataclass(frozen=True)
class PartRace:
    """Seconds one part's calls took in the timed pictures, on each runtime."""

    part: str
    onnxruntime_s: float
    openvino_s: float

    @property
    def wins(self) -> bool:
        return self.openvino_s < self.onnxruntime_s

    def describe(self) -> str:
        return (
            f"{self.part}: {self.openvino_s:.2f} s on OpenVINO against {self.onnxruntime_s:.2f} s on ONNX Runtime "
            f"({self.onnxruntime_s / max(self.openvino_s, 1e-9):.2f}×)"
        )


@dataclass
class OpenVinoComponents:
    side: int
    steps: int
    precision: str
    """The inference precision OpenVINO's CPU plugin ran in on this machine (bf16 or f32)."""
    gate: PictureGate
    int8_gate: PictureGate
    """The gate an INT8 part's pictures must pass (`--int8-min-psnr`, `--int8-min-ssim`); the float parts' is `gate`."""
    psnr_db: list[float] = field(default_factory=list)
    """Per gate picture, OpenVINO pipeline against FP32 pipeline."""
    lowest_ssim: float | None = None
    races: list[PartRace] = field(default_factory=list)
    onnxruntime_picture_s: float = 0.0
    openvino_picture_s: float = 0.0
    """Median seconds of a timed gate picture on each pipeline."""
    published: dict[str, PublishedVersion] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    int8_attempts: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    """Part → its INT8 attempts, stage by stage."""
    int8: dict[str, dict[str, object]] = field(default_factory=dict)
    """Part → the INT8 attempt published in place of the float part."""

    @property
    def passed(self) -> bool:
        return self.inside(self.gate)

    def inside(self, gate: PictureGate) -> bool:
        """Whether the pictures last compared are inside `gate`."""
        return all(gate.admits(value, self.lowest_ssim) for value in self.psnr_db)

    def describe_gate(self, gate: PictureGate | None = None) -> str:
        """The pictures last compared against `gate` (default: the INT8 gate where an INT8 part was chosen)."""
        required = gate or (self.int8_gate if self.int8 else self.gate)
        return (
            f"{len(self.psnr_db)} pictures at {self.side}² with {self.steps} steps: lowest PSNR "
            f"{min(self.psnr_db):.1f} dB (required ≥ {required.min_psnr_db:g}), lowest SSIM "
            f"{ssim_text(self.lowest_ssim)} (required ≥ {required.min_ssim:g})"
        )


def _candidate(repository: Path, served: str, work: Path, name: str) -> Path:
    """`served`'s newest FP32 ONNX as IR in a model folder laid out like a published one (config + version 1)."""
    source = repository / served
    folder = work / name
    (folder / "1").mkdir(parents=True)
    save_ir(newest_version(source) / ONNX_FILE, folder / "1" / OPENVINO_FILE)
    fp32 = parse_pbtxt((source / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(to_pbtxt(openvino_component_config(fp32, name)))
    return folder


def _pictures(pipeline: DirectPipeline, side: int, steps: int) -> tuple[list[np.ndarray], list[float]]:
    """The gate's pictures and their seconds, after one untimed picture (first calls compile and allocate)."""
    pipeline.picture(GATE_PROMPTS[0], GATE_SEEDS[0], 1, GATE_GUIDANCE, GATE_SCHEDULER, side)
    pipeline.seconds = dict.fromkeys(pipeline.seconds, 0.0)
    pictures, seconds = [], []
    for prompt in GATE_PROMPTS:
        for seed in GATE_SEEDS:
            began = time.perf_counter()
            pictures.append(pipeline.picture(prompt, seed, steps, GATE_GUIDANCE, GATE_SCHEDULER, side))
            seconds.append(time.perf_counter() - began)
    return pictures, seconds


def _gate_side(repository: Path, name: str) -> int:
    config = parse_pbtxt((repository / name / CONFIG_FILE).read_text())
    bounds = config_facts(config).bounds
    if bounds is None:
        raise ProdgenError(f"model '{name}' publishes no picture bounds: is it a diffusion pipeline?")
    return bounds.opt_side


def _record(outcome: OpenVinoComponents, part: str, source: str) -> dict[str, object]:
    race = next(race for race in outcome.races if race.part == part)
    return {
        "component": part,
        "source": f"{source} (FP32 ONNX, newest version)",
        "openvino": openvino_version(),
        "inference_precision_here": outcome.precision,
        "gate": {
            "what": "the pipeline's pictures with OpenVINO components against the FP32 pipeline's",
            "prompts": list(GATE_PROMPTS),
            "seeds": list(GATE_SEEDS),
            "side": outcome.side,
            "steps": outcome.steps,
            "guidance": GATE_GUIDANCE,
            "scheduler": GATE_SCHEDULER,
            **asdict(outcome.gate),
            "psnr_db": outcome.psnr_db,
            "lowest_ssim": outcome.lowest_ssim,
        },
        "race": {**asdict(race), "wins": race.wins},
        **(
            {
                "int8": {
                    "gate": asdict(outcome.int8_gate),
                    "published": outcome.int8.get(part),
                    "attempts": outcome.int8_attempts[part],
                }
            }
            if part in outcome.int8_attempts
            else {}
        ),
    }


def _publish(repository: Path, served: str, candidate: Path, record: dict[str, object]) -> PublishedVersion:
    def write(folder: Path) -> None:
        for item in (candidate / "1").iterdir():
            shutil.copyfile(item, folder / item.name)
        (folder / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")

    config = (candidate / CONFIG_FILE).read_text()
    return publish(repository, served, write, lambda _v: config)


def _compare(outcome: OpenVinoComponents, wanted: list[np.ndarray], got: list[np.ndarray]) -> None:
    outcome.psnr_db = [psnr_db([w], [g]) for w, g in zip(wanted, got, strict=True)]
    outcome.lowest_ssim = lowest_of(lowest_ssim(w, g) for w, g in zip(wanted, got, strict=True))


def _draw(
    repository: Path, name: str, threads: int, components: dict[str, Path], side: int, steps: int
) -> tuple[list[np.ndarray], list[float], dict[str, float]]:
    """The gate pictures with `components` swapped in, their seconds and each part's; the pipeline then let go,
    since each holds a copy of every component's weights."""
    pipeline = DirectPipeline(repository, name, threads, components)
    pictures, seconds = _pictures(pipeline, side, steps)
    parts = dict(pipeline.seconds)
    del pipeline
    gc.collect()
    return pictures, seconds, parts


INT8_PARTS = ("unet", "vae_decoder")
PART_NAMES = {"unet": "UNet", "vae_decoder": "VAE decoder"}


@dataclass(frozen=True)
class Int8Part:
    """An INT8 part inside the gate and faster than its float version, on the otherwise float pipeline."""

    part: str
    folder: Path
    attempt: dict[str, object]
    """What `prodgen-openvino.json` records of it: kept ops, gate figures, seconds."""
    psnr_db: list[float]
    lowest_ssim: float | None
    picture_s: float
    saved_s: float
    """Seconds its calls saved over the gate's pictures, against the float part's."""


def _int8(
    part: str,
    outcome: OpenVinoComponents,
    candidates: dict[str, Path],
    calibration: list[dict[str, np.ndarray]],
    wanted: list[np.ndarray],
    context: tuple[Path, str, int, Path],
    step: Step,
) -> Int8Part | None:
    """Try `part` in INT8 stage by stage in the pipeline of `candidates`; the first inside the gate and faster
    than the float part, or None. Each attempt is recorded in `outcome`, whose gate figures are left as found."""
    repository, name, threads, work = context
    label = f"INT8 {PART_NAMES[part]}"
    float_part = next(race for race in outcome.races if race.part == part)
    float_gate = (list(outcome.psnr_db), outcome.lowest_ssim)
    attempts = outcome.int8_attempts.setdefault(part, [])
    found = None
    for index, kept in enumerate(STAGES[part]):
        folder = work / f"int8-{part}-{index}" / candidates[part].name
        (folder / "1").mkdir(parents=True)
        shutil.copyfile(candidates[part] / CONFIG_FILE, folder / CONFIG_FILE)
        step(f"{name}_{part}: INT8 on {len(calibration)} recorded feeds, keeping {kept.description}")
        names = quantise(part, candidates[part] / "1" / OPENVINO_FILE, calibration, folder / "1" / OPENVINO_FILE, kept)
        step(f"{name}: drawing the gate pictures with the {label}")
        got, seconds, parts = _draw(
            repository, name, threads, {**candidates, part: folder}, outcome.side, outcome.steps
        )
        _compare(outcome, wanted, got)
        attempt: dict[str, object] = {
            "kept": kept.description, "kept_ops": names, "psnr_db": outcome.psnr_db, "lowest_ssim": outcome.lowest_ssim,
            "part_s": parts[part], "float_part_s": float_part.openvino_s, "picture_s": float(np.median(seconds)),
        }  # fmt: skip
        attempts.append(attempt)
        if not outcome.inside(outcome.int8_gate):
            outcome.notes.append(
                f"{label} keeping {kept.description}: outside the gate ({outcome.describe_gate(outcome.int8_gate)})"
            )
            continue
        if parts[part] >= float_part.openvino_s:
            outcome.notes.append(
                f"{label}: not faster than the {outcome.precision} {PART_NAMES[part]} here "
                f"({parts[part]:.2f} s against {float_part.openvino_s:.2f} s)"
            )
            break
        outcome.notes.append(
            f"{label} keeping {kept.description} ({len(names)} ops): inside the gate "
            f"({outcome.describe_gate(outcome.int8_gate)}), {float_part.openvino_s / max(parts[part], 1e-9):.2f}× the "
            f"{outcome.precision} {PART_NAMES[part]}'s speed"
        )
        saved = float_part.openvino_s - parts[part]
        found = Int8Part(part, folder, attempt, outcome.psnr_db, outcome.lowest_ssim, float(np.median(seconds)), saved)
        break
    outcome.psnr_db, outcome.lowest_ssim = float_gate
    return found


def _default_steps(repository: Path, name: str) -> int:
    diffusion = config_facts(parse_pbtxt((repository / name / CONFIG_FILE).read_text())).facts.diffusion
    given = diffusion.default_steps if diffusion is not None else None
    return given if given is not None else int(DEFAULTS["default_steps"])


def more_saving(
    passing: list[Int8Part], default_steps: int, gate_steps: int, gate_pictures: int
) -> tuple[Int8Part, dict[str, float]]:
    """Of INT8 parts that pass alone but not together, the one that saves more seconds of a picture at the
    pipeline's default steps, and each one's saving: the UNet's was measured over `gate_steps` steps a
    picture and scales with the steps; the decoder's is once a picture."""
    saved = {
        found.part: found.saved_s / gate_pictures * (default_steps / gate_steps if found.part == "unet" else 1.0)
        for found in passing
    }
    return max(passing, key=lambda found: saved[found.part]), saved


def _int8_parts(
    outcome: OpenVinoComponents,
    candidates: dict[str, Path],
    calibration: dict[str, list[dict[str, np.ndarray]]],
    wanted: list[np.ndarray],
    context: tuple[Path, str, int, Path],
    step: Step,
) -> None:
    """The parts of `calibration` (UNet, VAE decoder) in INT8, each tried on the float pipeline; where both pass
    alone, both together; where together they leave the gate, the one that saves more of a picture at the
    pipeline's default steps (the UNet's saving is per step, the decoder's once a picture). Replaces the
    chosen parts in `candidates`, and the gate figures with those of the pipeline as published."""
    repository, name, threads, _ = context
    passing = [
        found
        for part, feeds in calibration.items()
        if (found := _int8(part, outcome, candidates, feeds, wanted, context, step)) is not None
    ]
    chosen = {found.part: found for found in passing}
    if len(passing) == 2:
        step(f"{name}: drawing the gate pictures with the INT8 UNet and VAE decoder together")
        both = {**candidates, **{found.part: found.folder for found in passing}}
        got, seconds, _ = _draw(repository, name, threads, both, outcome.side, outcome.steps)
        float_gate = (list(outcome.psnr_db), outcome.lowest_ssim)
        _compare(outcome, wanted, got)
        if outcome.inside(outcome.int8_gate):
            outcome.openvino_picture_s = float(np.median(seconds))
            outcome.notes.append(
                f"INT8 UNet and VAE decoder together: inside the gate ({outcome.describe_gate(outcome.int8_gate)})"
            )
        else:
            together = outcome.describe_gate(outcome.int8_gate)
            outcome.psnr_db, outcome.lowest_ssim = float_gate
            steps = _default_steps(repository, name)
            kept, saved = more_saving(passing, steps, outcome.steps, len(wanted))
            outcome.notes.append(
                f"INT8 UNet and VAE decoder together: outside the gate ({together}); kept the INT8 "
                f"{PART_NAMES[kept.part]}, which saves more of a {steps}-step picture (the pipeline's default): "
                + ", ".join(f"{PART_NAMES[part]} {value:.2f} s" for part, value in saved.items())
            )
            chosen = {kept.part: kept}
    if len(chosen) == 1:
        (only,) = chosen.values()
        outcome.psnr_db, outcome.lowest_ssim, outcome.openvino_picture_s = (
            only.psnr_db,
            only.lowest_ssim,
            only.picture_s,
        )
    for part, found in chosen.items():
        candidates[part] = found.folder
        outcome.int8[part] = found.attempt


def publish_openvino_components(
    repository: Path,
    name: str,
    side: int | None = None,
    steps: int = DEFAULT_GATE_STEPS,
    gate: PictureGate = PictureGate(),
    threads: int = 0,
    require_faster: bool = True,
    int8: bool = False,
    int8_gate: PictureGate | None = None,
    step: Step = lambda _: None,
) -> OpenVinoComponents:
    """Gate OpenVINO IR of the pipeline `name`'s text encoder, UNet and VAE decoder by its pictures; publish
    each part inside the gate and faster here (`require_faster` False: also the slower ones, for a serving
    machine unlike this one) as `NAME_<part>_openvino`, and point the pipeline at them. `int8`: also try the
    UNet and the VAE decoder in INT8 (export/openvino_int8.py), calibrated on the FP32 pipeline's feeds of
    that part for CALIBRATION_PROMPTS (not the gate's), each published in place of the float part where the
    pictures stay inside the gate and the part is faster (`_int8_parts`: which one where only one fits).

    `side`: the gate pictures' side (default: the pipeline's optimal side); `int8_gate`: the INT8 parts' gate
    (default: `gate`); `threads` 0: one per core."""
    if not openvino_available():
        raise ProdgenError(MISSING)
    # the FP32 ONNX components, whatever variants the pipeline calls now: the gate's reference and the IR's source
    named = {part: onnx_component(served) for part, served in component_models(repository, name).items()}
    reference = {part: repository / served for part, served in named.items()}
    side = side or _gate_side(repository, name)
    outcome = OpenVinoComponents(side, steps, inference_precision(), gate, int8_gate or gate)
    with tempfile.TemporaryDirectory(prefix="prodgen-export-sd-openvino-") as scratch:
        work = Path(scratch)
        candidates = {}
        for part in OPENVINO_PARTS:
            step(f"{name}_{part}: converting to OpenVINO IR")
            candidates[part] = _candidate(repository, named[part], work, f"{named[part]}{OPENVINO_COMPONENT_SUFFIX}")
        step(f"{name}: drawing {len(GATE_PROMPTS) * len(GATE_SEEDS)} gate pictures with ONNX Runtime")
        fp32 = DirectPipeline(repository, name, threads, reference)
        wanted, fp32_seconds = _pictures(fp32, side, steps)
        fp32_parts = dict(fp32.seconds)
        fp32.record = INT8_PARTS  # the calibration is drawn from other prompts than the gate's
        for prompt in CALIBRATION_PROMPTS if int8 else ():
            step(f"{name}: recording the UNet's and VAE decoder's feeds for INT8 calibration: {prompt!r}")
            fp32.picture(prompt, CALIBRATION_SEED, steps, GATE_GUIDANCE, GATE_SCHEDULER, side)
        calibration = {part: fp32.recorded.get(part, []) for part in INT8_PARTS}
        del fp32
        gc.collect()
        step(f"{name}: drawing the gate pictures with OpenVINO components")
        got, openvino_seconds, openvino_parts = _draw(
            repository, name, threads, {**reference, **candidates}, side, steps
        )
        _compare(outcome, wanted, got)
        outcome.races = [PartRace(part, fp32_parts[part], openvino_parts[part]) for part in OPENVINO_PARTS]
        outcome.onnxruntime_picture_s = float(np.median(fp32_seconds))
        outcome.openvino_picture_s = float(np.median(openvino_seconds))
        if not outcome.passed:
            outcome.notes.append(f"nothing published: outside the gate ({outcome.describe_gate()})")
            return outcome
        chosen = [race.part for race in outcome.races if race.wins or not require_faster]
        outcome.notes += [
            f"{race.part}: not published: not faster than ONNX Runtime here" for race in outcome.races
            if race.part not in chosen
        ]  # fmt: skip
        if set(chosen) != set(OPENVINO_PARTS) and chosen:
            # the gate saw every part on OpenVINO: the pictures of the set actually published are checked too
            step(f"{name}: drawing the gate pictures with OpenVINO for {', '.join(chosen)} only")
            subset = {**reference, **{part: candidates[part] for part in chosen}}
            got, _, _ = _draw(repository, name, threads, subset, side, steps)
            _compare(outcome, wanted, got)
            if not outcome.passed:
                outcome.notes.append(f"nothing published: outside the gate ({outcome.describe_gate()})")
                return outcome
        if int8:
            swapped = {**reference, **{part: candidates[part] for part in chosen}}
            outcome.notes += [
                f"INT8 {PART_NAMES[part]}: not tried, since the float OpenVINO {PART_NAMES[part]} was not published"
                for part in INT8_PARTS
                if part not in chosen
            ]
            tried = {part: calibration[part] for part in INT8_PARTS if part in chosen}
            _int8_parts(outcome, swapped, tried, wanted, (repository, name, threads, work), step)
            candidates.update({part: swapped[part] for part in chosen})
        for part in chosen:
            served = f"{named[part]}{OPENVINO_COMPONENT_SUFFIX}"
            step(f"{served}: publishing")
            outcome.published[part] = _publish(
                repository, served, candidates[part], _record(outcome, part, named[part])
            )
    if outcome.published:
        switch_components(repository, name, "openvino")
    return outcome
