"""Train the demo conditional generator: zoo `catalogue-dcgan` (the conditional DCGAN with
one class per catalogue category) on the generated product catalogue of `demo/catalogue.py`.

GAN with hinge loss: the zoo generator against a small spectral-norm discriminator with a
class projection (Miyato & Koyama), Adam, plus the mode-seeking term of MSGAN (Mao et al.
2019), which keeps different latents from drawing the same picture (without it a short run
collapsed to one picture per category). Evaluated honestly and cheaply: a small classifier
trained on a separately seeded rendered catalogue reports how often the shipped generator's
pictures (served graph, uint8, loaded from the shipped file, latents from prodgen's seed
scheme) are recognised as the category they were asked for (chance: 1/6), next to its
accuracy on held-out rendered pictures; and per category the product's share of the picture
(silhouette mask) and its mean colour, rendered against generated.

    python -m demo.train_catalogue_gan
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from demo.catalogue import CATEGORIES, catalogue
from demo.common import save_demo_weights, seed_everything, training_steps, write_record
from prodgen import zoo
from prodgen.seeding import latents_from_seed
from prodgen.zoo.loading import instantiate, serving_module

NAME = "catalogue-dcgan"
ARCHITECTURE = "catalogue-dcgan"
SEED = 0
STEPS = 1500
BATCH = 32
PER_CATEGORY = 1000
LEARNING_RATE = 2e-4
LATENT_DIM = 100
MODE_SEEKING = 1.0
CLASSIFIER_STEPS = 600
EVAL_PER_CATEGORY = 100


class Discriminator(nn.Module):
    """64² image and class -> realness score; used only in training, never shipped."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        channels = [3, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels):
            layers += [spectral_norm(nn.Conv2d(c_in, c_out, 4, 2, 1)), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.score = spectral_norm(nn.Linear(channels[-1], 1))
        self.projection = spectral_norm(nn.Embedding(num_classes, channels[-1]))

    def forward(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        h = self.features(image).sum(dim=(2, 3))
        return self.score(h).squeeze(1) + (self.projection(label) * h).sum(dim=1)


def mode_seeking(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """MSGAN's term: small when the two halves of the batch differ in picture as much as in latent."""
    first, second = fake.chunk(2), z.chunk(2)
    ratio = (first[0] - first[1]).abs().mean() / (second[0] - second[1]).abs().mean()
    return 1.0 / (ratio + 1e-5)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in -1..1, the generator's tanh range."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train() -> nn.Module:
    rng = seed_everything(SEED)
    images, labels = catalogue(PER_CATEGORY, seed=SEED)
    real_all, label_all = to_tensor(images), torch.from_numpy(labels)
    generator = instantiate(zoo.get(ARCHITECTURE), seed=SEED).train()
    discriminator = Discriminator(len(CATEGORIES))
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=LEARNING_RATE, betas=(0.5, 0.999))
    for step, progress, task in training_steps(STEPS, "catalogue GAN"):
        index = torch.from_numpy(rng.integers(len(real_all), size=BATCH))
        real, label = real_all[index], label_all[index]
        z = torch.randn(BATCH, LATENT_DIM, 1, 1)
        fake_label = torch.randint(len(CATEGORIES), (BATCH // 2,)).repeat(2)  # halves pair up for mode seeking
        fake = generator(z, fake_label[:, None])
        d_loss = (
            F.relu(1 - discriminator(real, label)).mean() + F.relu(1 + discriminator(fake.detach(), fake_label)).mean()
        )
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
        g_loss = -discriminator(fake, fake_label).mean() + MODE_SEEKING * mode_seeking(fake, z)
        g_optimizer.zero_grad()
        g_loss.backward()
        g_optimizer.step()
        if step % 25 == 0:
            progress.update(task, status=f"D {d_loss.item():.2f} G {g_loss.item():.2f}")
    return generator.eval()


def classifier(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, 2, 1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, num_classes),
    )


def train_classifier() -> nn.Module:
    """A category classifier on a rendered catalogue seeded apart from the GAN's data."""
    torch.manual_seed(SEED + 1)
    images, labels = catalogue(300, seed=SEED + 1)
    inputs, targets = to_tensor(images), torch.from_numpy(labels)
    network = classifier(len(CATEGORIES))
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    for _ in range(CLASSIFIER_STEPS):
        index = torch.randint(len(inputs), (BATCH,))
        loss = F.cross_entropy(network(inputs[index]), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return network.eval()


def silhouette(images: np.ndarray) -> np.ndarray:
    """The product's pixels: saturated or dark (the light background, grey shadow and white
    sole are neither)."""
    pixels = images.astype(np.int16)
    return ((pixels.max(-1) - pixels.min(-1)) > 40) | (pixels.mean(-1) < 180)


def figures(images: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, object]]:
    """Per category: mean product share of the picture and mean product colour."""
    mask = silhouette(images)
    result = {}
    for index, name in enumerate(CATEGORIES):
        chosen = labels == index
        product = images[chosen][mask[chosen]]
        colour = product.mean(axis=0) if len(product) else np.zeros(3)
        result[name] = {
            "product_share": round(float(mask[chosen].mean()), 3),
            "mean_product_rgb": [round(float(c), 1) for c in colour],
        }
    return result


def generated(checkpoint: Path) -> tuple[np.ndarray, np.ndarray]:
    """EVAL_PER_CATEGORY pictures per category from the served graph, seeds 0.. per category."""
    graph = serving_module(zoo.get(ARCHITECTURE), checkpoint)
    z = torch.from_numpy(latents_from_seed(0, EVAL_PER_CATEGORY, LATENT_DIM))
    pictures, labels = [], []
    with torch.no_grad():
        for index in range(len(CATEGORIES)):
            ids = torch.full((EVAL_PER_CATEGORY, 1), index, dtype=torch.int64)
            pictures.append(graph(z, ids).numpy())
            labels.append(np.full(EVAL_PER_CATEGORY, index))
    return np.concatenate(pictures), np.concatenate(labels)


def accuracy(network: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    with torch.no_grad():
        predicted = network(to_tensor(images)).argmax(1).numpy()
    return round(float((predicted == labels).mean()), 4)


def evaluate(checkpoint: Path) -> dict[str, object]:
    judge = train_classifier()
    rendered, rendered_labels = catalogue(EVAL_PER_CATEGORY, seed=SEED + 2)
    fakes, fake_labels = generated(checkpoint)
    return {
        "classifier_accuracy_rendered_held_out": accuracy(judge, rendered, rendered_labels),
        "classifier_accuracy_generated": accuracy(judge, fakes, fake_labels),
        "chance": round(1 / len(CATEGORIES), 4),
        "rendered": figures(rendered, rendered_labels),
        "generated": figures(fakes, fake_labels),
    }


def main() -> None:
    started = time.perf_counter()
    generator = train()
    train_seconds = time.perf_counter() - started
    checkpoint = save_demo_weights(NAME, generator)
    results = evaluate(checkpoint)
    record = {
        "architecture": ARCHITECTURE,
        "categories": list(CATEGORIES),
        "seed": SEED,
        "steps": STEPS,
        "batch": BATCH,
        "loss": f"hinge, projection discriminator with spectral norm, mode seeking x{MODE_SEEKING}",
        "optimizer": f"Adam lr {LEARNING_RATE}, betas (0.5, 0.999)",
        "data": f"demo.catalogue.catalogue({PER_CATEGORY}, seed={SEED}): {PER_CATEGORY} rendered pictures per category",
        "evaluation": results,
    }
    write_record(NAME, record, train_seconds)
    print(
        f"classifier accuracy: rendered held-out {results['classifier_accuracy_rendered_held_out']}, "
        f"generated {results['classifier_accuracy_generated']} (chance {results['chance']})"
    )
    print(f"wrote {checkpoint} ({train_seconds:.0f} s training)")


if __name__ == "__main__":
    main()
