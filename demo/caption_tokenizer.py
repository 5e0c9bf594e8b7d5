"""A word-level CLIP tokenizer for the caption words: one token per word.

CLIP's tokenizer is byte-pair encoding: a word is split into characters (the last one marked
`</w>`) and merged pair by pair, always the pair ranked first in merges.txt. To make every
caption word a single token, merges are added word by word until the tokenizer's own merge
rule joins the word completely; a merge added later ranks lower, so it never changes how an
already finished word is joined. Words outside the captions fall apart into characters.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

SPECIAL = ("<|startoftext|>", "<|endoftext|>")
END = "</w>"


def _join(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's merge loop: join the best-ranked adjacent pair everywhere, until no ranked pair is left."""
    pieces = list(symbols)
    while len(pieces) > 1:
        pairs = list(zip(pieces, pieces[1:], strict=False))
        best = min(pairs, key=lambda pair: ranks.get(pair, math.inf))
        if best not in ranks:
            break
        joined: list[str] = []
        index = 0
        while index < len(pieces):
            if index + 1 < len(pieces) and (pieces[index], pieces[index + 1]) == best:
                joined.append(pieces[index] + pieces[index + 1])
                index += 2
            else:
                joined.append(pieces[index])
                index += 1
        pieces = joined
    return pieces


def write_word_tokenizer(folder: Path, words: list[str]) -> dict[str, int]:
    """vocab.json and merges.txt in `folder` for CLIPTokenizer; returns the vocabulary."""
    vocab = {token: index for index, token in enumerate(SPECIAL)}
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        symbols = [*word[:-1], word[-1] + END]
        for symbol in symbols:
            vocab.setdefault(symbol, len(vocab))
        while len(pieces := _join(symbols, ranks)) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            vocab.setdefault(pieces[0] + pieces[1], len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = sorted(ranks, key=ranks.__getitem__)
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return vocab
