"""Conditional DCGAN generator: pytorch/examples' DCGAN `netG` with a class input, so a shop
can draw products of one category.

Conditioning (prodgen's own design; no upstream file format exists for it): a learned
embedding of the class id (`class_embedding`, `num_classes × embedding_dim`) is concatenated
to the latent `z` along channels, and the result feeds the unchanged DCGAN stack
(`dcgan_blocks` with `nz = z_dim + embedding_dim`). Concatenating a learned embedding at the
1×1 input is the classic cGAN formulation (Mirza & Osindero) in DCGAN form: it adds one
small table and changes nothing else, so an unconditional DCGAN recipe trains it as is.

Keys: `class_embedding.weight` and upstream's `main.N.*`. Served inputs: `z` FP32 (100,) and
`class_id` INT64 (1,), a category in 0..num_classes-1 (published as `prodgen.num_classes`;
an id outside that range, negative ones included, fails the request in the runtime's gather
instead of drawing some other category); output a 64×64 image.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from prodgen.contract import TensorSpec, image_spec
from prodgen.model_facts import ModelFacts
from prodgen.zoo.dcgan import LATENT_DIM, dcgan_blocks, dcgan_init
from prodgen.zoo.graphs import LatentToImage
from prodgen.zoo.registry import register
from prodgen.zoo.spec import ZooModel

NUM_CLASSES = 10
EMBEDDING_DIM = 32


class ConditionalDCGANGenerator(nn.Module):
    def __init__(
        self,
        num_classes: int = NUM_CLASSES,
        embedding_dim: int = EMBEDDING_DIM,
        nz: int = LATENT_DIM,
        ngf: int = 64,
        nc: int = 3,
    ) -> None:
        super().__init__()
        self.class_embedding = nn.Embedding(num_classes, embedding_dim)
        self.main = nn.Sequential(*dcgan_blocks(nz + embedding_dim, ngf, nc))

    def forward(self, z: torch.Tensor, class_id: torch.Tensor) -> torch.Tensor:
        """z (N, nz, 1, 1), class_id (N, 1) int64 -> image (N, nc, 64, 64) in -1..1."""
        ids = class_id.reshape(-1)
        # ONNX Gather reads a negative index from the end; send it out of range instead, so
        # that every runtime refuses it as PyTorch does rather than drawing another category
        ids = torch.where(ids < 0, torch.full_like(ids, self.class_embedding.num_embeddings), ids)
        embedded = self.class_embedding(ids)
        conditioned = torch.cat([z, embedded.reshape(embedded.shape[0], embedded.shape[1], 1, 1)], 1)
        return self.main(conditioned)


def conditional_dcgan_init(network: nn.Module) -> None:
    """Upstream's DCGAN init for the stack; N(0, 1) class embeddings (PyTorch's default)."""
    dcgan_init(network)
    for module in network.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 1.0)


def conditional_dcgan_zoo_model(
    name: str, num_classes: int = NUM_CLASSES, embedding_dim: int = EMBEDDING_DIM, ngf: int = 64
) -> ZooModel:
    """An entry for a conditional DCGAN of `num_classes` categories (e.g. a shop's own catalogue)."""
    return ZooModel(
        name=name,
        task="generate",
        summary=f"Conditional DCGAN generator: 100-d latent + product category (0..{num_classes - 1}) to a 64×64 image",
        upstream="pytorch/examples dcgan (netG) with a prodgen class embedding concatenated to z",
        build=partial(ConditionalDCGANGenerator, num_classes=num_classes, embedding_dim=embedding_dim, ngf=ngf),
        serving_graph=LatentToImage,
        inputs=(
            TensorSpec("z", "FP32", (LATENT_DIM,)),
            TensorSpec("class_id", "INT64", (1,), value_range=(0, num_classes - 1)),
        ),
        outputs=(image_spec("output_image", 64),),
        init_weights=conditional_dcgan_init,
        facts=ModelFacts(num_classes=num_classes, notes={"embedding_dim": str(embedding_dim)}),
    )


CONDITIONAL_DCGAN = register(conditional_dcgan_zoo_model("conditional-dcgan"))
CATALOGUE_DCGAN = register(conditional_dcgan_zoo_model("catalogue-dcgan", num_classes=6, ngf=16))
"""The demo's generator (demo/train_catalogue_gan.py): the six categories of demo/catalogue.py,
ngf 16 so it trains in minutes on two CPU cores and ships in under 1 MB."""
