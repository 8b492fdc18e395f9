"""Words to numbers and back: a vocabulary, padding, and the text corpora of the course.

Corpora by name (all offline): ``shapes`` (Shapes-world captions), ``lee`` (the Lee
news corpus that gensim ships, about 60,000 words of Australian news) and
``movie-reviews`` (movie-review polarity sentences that gensim ships, labelled).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = [
    "PAD",
    "START",
    "END",
    "UNK",
    "Vocabulary",
    "pad_sequences",
    "tokenize",
    "CORPORA",
    "load_corpus",
    "movie_reviews",
    "gensim_data_path",
]

PAD, START, END, UNK = "<pad>", "<start>", "<end>", "<unk>"
SPECIALS = (PAD, START, END, UNK)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case words (letters, digits and inner apostrophes); punctuation dropped."""
    return _TOKEN.findall(text.lower())


def _words(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


class Vocabulary:
    """A fixed mapping between words and integer ids.

    Ids 0–3 are the special tokens ``<pad>``, ``<start>``, ``<end>`` and ``<unk>``; a word
    that is not in the vocabulary encodes as ``<unk>``. Captions are split on spaces
    (Shapes captions are already lower case and unpunctuated); use :func:`tokenize`
    first for raw text.
    """

    def __init__(self, words: Iterable[str] = ()):
        self._words: list[str] = list(SPECIALS)
        self._index: dict[str, int] = {w: i for i, w in enumerate(self._words)}
        for w in words:
            if w not in self._index:
                self._index[w] = len(self._words)
                self._words.append(w)

    @classmethod
    def build(cls, texts: Iterable[str | Sequence[str]], min_count: int = 1, max_size: int | None = None) -> Vocabulary:
        """The words of ``texts`` seen at least ``min_count`` times, most frequent first."""
        counts = Counter(w for t in texts for w in _words(t))
        ranked = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIALS), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[: max(0, max_size - len(SPECIALS))]
        return cls(ranked)

    # ids
    pad_id, start_id, end_id, unk_id = 0, 1, 2, 3

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self._words == other._words

    def __repr__(self) -> str:
        shown = ", ".join(self._words[4:12])
        return f"Vocabulary({len(self)} words: {shown}{', …' if len(self) > 12 else ''})"

    @property
    def words(self) -> list[str]:
        return list(self._words)

    def index(self, word: str) -> int:
        return self._index.get(word, self.unk_id)

    def word(self, index: int) -> str:
        return self._words[int(index)]

    def encode(self, text: str | Sequence[str], *, bounds: bool = True) -> list[int]:
        """Ids of the words, wrapped in ``<start>`` … ``<end>`` unless ``bounds=False``."""
        ids = [self.index(w) for w in _words(text)]
        return [self.start_id, *ids, self.end_id] if bounds else ids

    def decode(self, ids: Iterable[int], *, strip: bool = True) -> str:
        """Words of the ids; with ``strip`` it stops at ``<end>`` and drops ``<pad>``/``<start>``."""
        out = []
        for i in ids:
            i = int(i)
            if strip and i == self.end_id:
                break
            if strip and i in (self.pad_id, self.start_id):
                continue
            out.append(self._words[i])
        return " ".join(out)

    def encode_batch(self, texts: Iterable[str | Sequence[str]], length: int | None = None, *, bounds: bool = True) -> np.ndarray:
        """A padded ``int32`` array ``(n, length)`` of encoded texts."""
        return pad_sequences([self.encode(t, bounds=bounds) for t in texts], length)

    def to_dict(self) -> dict:
        return {"words": self._words[len(SPECIALS):]}

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        return cls(data["words"])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        return cls.from_dict(json.loads(Path(path).read_text()))


def pad_sequences(sequences: Sequence[Sequence[int]], length: int | None = None, value: int = 0) -> np.ndarray:
    """Pad (at the end) or cut sequences to one length: ``(n, length)`` int32."""
    if length is None:
        length = max((len(s) for s in sequences), default=0)
    if length < 0:
        raise ValueError(f"length must be non-negative, got {length}")
    out = np.full((len(sequences), length), value, np.int32)
    for i, s in enumerate(sequences):
        s = list(s)[:length]
        out[i, : len(s)] = s
    return out


# --------------------------------------------------------------------------- corpora

CORPORA = ("shapes", "lee", "movie-reviews")


def gensim_data_path(filename: str) -> Path:
    """A file of the test data that the gensim package ships (no download)."""
    try:
        root = resources.files("gensim") / "test" / "test_data"
    except ModuleNotFoundError as err:  # pragma: no cover - gensim is a dependency
        raise FileNotFoundError("the gensim package is not installed; run `make lab` or `pip install gensim`") from err
    path = Path(str(root / filename))
    if not path.exists():
        raise FileNotFoundError(f"{filename} is not in gensim's package data at {path}; reinstall gensim (pip install --force-reinstall gensim)")
    return path


def movie_reviews() -> tuple[list[list[str]], np.ndarray]:
    """Movie-review sentences and their polarity (1 positive, 0 negative), as shipped by gensim.

    From Pang & Lee's sentence polarity data; gensim ships a sample of 200 sentences.
    """
    sentences, labels = [], []
    # The original polarity data is Windows-1252 text (0x97 is an em dash), not UTF-8.
    raw = gensim_data_path("pang_lee_polarity.cor").read_bytes().decode("cp1252", errors="replace")
    for line in raw.splitlines():
        label, _, text = line.partition(" ")
        if label not in ("__label__pos", "__label__neg"):
            continue
        sentences.append(tokenize(text))
        labels.append(1 if label == "__label__pos" else 0)
    return sentences, np.array(labels, np.int32)


def load_corpus(name: str, *, n: int = 2000, seed: int = 0) -> list[list[str]]:
    """Tokenised sentences (or documents) of a corpus by name.

    Args:
        name: ``shapes``, ``lee`` or ``movie-reviews``.
        n, seed: for ``shapes``, how many images to caption (five captions each) and the seed.
    """
    if name == "shapes":
        from mmcourse.data.shapes import generate

        return [c.split() for caps in generate(n, seed=seed).captions for c in caps]
    if name == "lee":
        text = gensim_data_path("lee_background.cor").read_text(encoding="utf-8")
        return [tokenize(line) for line in text.splitlines() if line.strip()]
    if name == "movie-reviews":
        return movie_reviews()[0]
    raise ValueError(f"unknown corpus {name!r}; choose one of: {', '.join(CORPORA)}")
