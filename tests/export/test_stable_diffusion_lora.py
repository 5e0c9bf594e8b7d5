"""LoRAs fused at export: the weights diffusers' own loader gives, and LoRAs that do not fit refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from stable_diffusion_loras import with_extra_layer, write_kohya_lora, write_peft_lora

from prodgen.errors import ProdgenError
from prodgen.zoo.stable_diffusion import StableDiffusion, load_stable_diffusion
from prodgen.zoo.stable_diffusion_lora import Lora, fuse_loras


@pytest.fixture(scope="module")
def lora_files(diffusion_checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lora-files")
    base = load_stable_diffusion(diffusion_checkpoints["sd"])
    kohya = write_kohya_lora(folder / "kohya.safetensors", base.unet, base.text_encoder)
    peft = write_peft_lora(folder / "peft.safetensors", base.unet, base.text_encoder)
    return {
        "kohya": kohya,
        "peft": peft,
        # one layer more than the base has: a LoRA trained for another architecture, in each layout
        "kohya_extra": with_extra_layer(
            kohya,
            folder / "kohya_extra.safetensors",
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn9_to_q",
            4,
            32,
        ),
        "peft_extra": with_extra_layer(peft, folder / "peft_extra.safetensors", "unet.mid_block.refiner.to_q", 2, 64),
    }


def weights(model: StableDiffusion) -> dict[str, torch.Tensor]:
    return {
        **{f"unet.{name}": value for name, value in model.unet.state_dict().items()},
        **{f"text_encoder.{name}": value for name, value in model.text_encoder.state_dict().items()},
    }


def test_fused_weights_are_diffusers_own(diffusion_checkpoints: dict[str, Path], lora_files: dict[str, Path]) -> None:
    from diffusers import StableDiffusionPipeline

    folder = diffusion_checkpoints["sd"]
    model = load_stable_diffusion(folder)
    before = {name: value.clone() for name, value in weights(model).items()}
    fuse_loras(model, [Lora(lora_files["kohya"], 0.8), Lora(lora_files["peft"], 1.2)])

    reference = StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)
    reference.load_lora_weights(str(lora_files["kohya"]), adapter_name="kohya")
    reference.load_lora_weights(str(lora_files["peft"]), adapter_name="peft")
    reference.set_adapters(["kohya", "peft"], adapter_weights=[0.8, 1.2])
    reference.fuse_lora(adapter_names=["kohya", "peft"])
    reference.unload_lora_weights()
    expected = {
        **{f"unet.{name}": value for name, value in reference.unet.state_dict().items()},
        **{f"text_encoder.{name}": value for name, value in reference.text_encoder.state_dict().items()},
    }
    fused = weights(model)
    assert fused.keys() == expected.keys(), "no LoRA layer is left in the exported modules"
    changed = [name for name in fused if not torch.equal(fused[name], before[name])]
    assert any(name.startswith("unet.") for name in changed) and any(
        name.startswith("text_encoder.") for name in changed
    )
    for name, value in fused.items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("file", "named"),
    [
        ("kohya_extra", "down_blocks.0.attentions.0.transformer_blocks.0.attn9.to_q"),
        ("peft_extra", "mid_block.refiner.to_q"),
    ],
)
def test_a_lora_with_a_layer_the_base_lacks_is_refused_naming_it(
    diffusion_checkpoints: dict[str, Path], lora_files: dict[str, Path], file: str, named: str
) -> None:
    model = load_stable_diffusion(diffusion_checkpoints["sd"])
    with pytest.raises(ProdgenError, match=rf"1 of its \d+ adapted layers match nothing .*{named}"):
        fuse_loras(model, [Lora(lora_files[file])])


def test_lora_argument_and_bad_files(tmp_path: Path, diffusion_checkpoints: dict[str, Path]) -> None:
    assert Lora.parse("styles/shoe.safetensors:0.7") == Lora(Path("styles/shoe.safetensors"), 0.7)
    assert Lora.parse("shoe.safetensors") == Lora(Path("shoe.safetensors"), 1.0)
    assert Lora.parse("C:/loras/shoe.safetensors") == Lora(Path("C:/loras/shoe.safetensors"), 1.0)
    with pytest.raises(ProdgenError, match="scale nan is not a finite number"):
        Lora.parse("shoe.safetensors:nan")
    model = load_stable_diffusion(diffusion_checkpoints["sd"])
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    with pytest.raises(ProdgenError, match="not a safetensors file"):
        fuse_loras(model, [Lora(text)])
    with pytest.raises(ProdgenError, match="no such file"):
        fuse_loras(model, [Lora(tmp_path / "missing.safetensors")])
