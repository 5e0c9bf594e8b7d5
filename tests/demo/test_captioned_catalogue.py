"""The captioned catalogue the demo's diffusion model is trained on: the held-out (category,
colour) pairs never reach training, captions say what the picture shows, and a seed gives the
same pictures everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from transformers import CLIPTokenizer

from demo.caption_tokenizer import write_word_tokenizer
from demo.captioned_catalogue import (
    BACKGROUND_NAMES,
    CATEGORIES,
    COLOUR_NAMES,
    HELD_OUT,
    SIDE,
    Product,
    caption_words,
    captioned_catalogue,
    held_out_pairs,
    render_cutout,
    training_pairs,
)


def named(pairs: list[tuple[int, int]]) -> set[tuple[str, str]]:
    return {(CATEGORIES[category], COLOUR_NAMES[colour]) for category, colour in pairs}


def test_held_out_pairs_are_disjoint_from_training_and_every_name_is_still_trained() -> None:
    training, held_out = named(training_pairs()), named(held_out_pairs())
    assert held_out == set(HELD_OUT) and not training & held_out
    assert len(training) + len(held_out) == len(CATEGORIES) * len(COLOUR_NAMES)
    assert {category for category, _ in training} == set(CATEGORIES)
    assert {colour for _, colour in training} == set(COLOUR_NAMES)


def test_training_catalogue_never_shows_a_held_out_pair() -> None:
    data = captioned_catalogue(400, seed=3)
    assert not {product.pair for product in data.products} & set(HELD_OUT)
    for caption, product in zip(data.captions, data.products, strict=True):
        category, colour = product.pair
        assert f"{colour} {category}" in caption
        held_out_phrase = [f"{c} {k}" for k, c in HELD_OUT]
        assert not any(phrase in caption for phrase in held_out_phrase)


def test_a_seed_gives_the_same_captioned_catalogue() -> None:
    first, second = captioned_catalogue(12, seed=5), captioned_catalogue(12, seed=5)
    assert first.images.shape == (12, SIDE, SIDE, 3) and first.images.dtype == np.uint8
    assert np.array_equal(first.images, second.images)
    assert first.captions == second.captions and first.products == second.products
    assert not np.array_equal(first.images, captioned_catalogue(12, seed=6).images)


def test_held_out_pairs_render_on_request() -> None:
    data = captioned_catalogue(12, seed=1, pairs=held_out_pairs())
    assert {product.pair for product in data.products} == set(HELD_OUT)
    assert {product.background for product in data.products} <= set(range(len(BACKGROUND_NAMES)))


def test_captions_read_as_a_shop_writes_them() -> None:
    assert Product(1, COLOUR_NAMES.index("red"), 0).caption() == "red mug"
    assert Product(5, COLOUR_NAMES.index("navy"), 1).caption(1) == "a navy cap on a wooden table"
    assert Product(0, COLOUR_NAMES.index("orange"), 2).caption(1) == "an orange t-shirt on the beach"


def test_cutout_is_opaque_on_the_product_and_transparent_around_it() -> None:
    cutout = render_cutout(Product(1, 0, 0), np.random.default_rng(0))
    alpha = cutout[..., 3]
    assert cutout.shape == (SIDE, SIDE, 4)
    assert 0.05 < (alpha == 255).mean() < 0.6 and (alpha == 0).mean() > 0.3
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0


def test_every_caption_word_is_one_token(tmp_path: Path) -> None:
    words = caption_words()
    vocab = write_word_tokenizer(tmp_path, words)
    tokenizer = CLIPTokenizer.from_pretrained(str(tmp_path))
    for word in words:
        assert tokenizer(word).input_ids == [0, vocab[f"{word}</w>"], 1]
    assert json.loads((tmp_path / "vocab.json").read_text()) == vocab
    caption = tokenizer("a navy cap on a wooden table").input_ids
    assert len(caption) == 2 + len("a navy cap on a wooden table".split())
