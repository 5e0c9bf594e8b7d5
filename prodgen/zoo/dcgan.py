"""DCGAN generator, as `netG` in pytorch/examples `dcgan/main.py`.

Upstream saves `netG.state_dict()`; its keys (`main.0.weight`, `main.1.running_mean`,
…) match this module's, so `netG_epoch_N.pth` loads unchanged.
"""

from __future__ import annotations

from torch import nn

from prodgen.contract import TensorSpec, image_spec
from prodgen.zoo.graphs import LatentToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel

LATENT_DIM = 100


def dcgan_blocks(nz: int, ngf: int, nc: int) -> list[nn.Module]:
    """Upstream's `netG.main` layers: 1×1 latent to a 64×64 image in tanh range."""
    return [
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 8),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 4),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
        nn.Tanh(),
    ]


class DCGANGenerator(nn.Module):
    def __init__(self, nz: int = LATENT_DIM, ngf: int = 64, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(*dcgan_blocks(nz, ngf, nc))

    def forward(self, z):  # type: ignore[no-untyped-def]
        return self.main(z)


def dcgan_init(network: nn.Module) -> None:
    """Upstream's `weights_init`: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    for module in network.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)


DCGAN = register(
    ZooModel(
        name="dcgan",
        task="generate",
        summary="DCGAN generator: 100-d latent to a 64×64 product image",
        upstream="pytorch/examples dcgan (netG)",
        build=DCGANGenerator,
        serving_graph=LatentToImage,
        inputs=(TensorSpec("z", "FP32", (LATENT_DIM,)),),
        outputs=(image_spec("output_image", 64),),
        init_weights=dcgan_init,
    )
)
