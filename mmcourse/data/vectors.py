"""Word vectors: a vocabulary beside a matrix, and the files they are kept in.

:class:`WordVectors` holds words and their vectors (row ``i`` of ``matrix`` belongs to
``words[i]``) and answers the questions the course asks of them: nearest neighbours by
cosine similarity, the similarity of two words, and analogies (3CosAdd). Two file formats
are read: the *word2vec text format* (a header line ``count dim``, then ``word v1 v2 …``
a line; also written, so gensim's ``KeyedVectors.load_word2vec_format`` reads what we
save) and the *GloVe format* (the same lines without the header).

Only NumPy is needed here: reading vectors does not start TensorFlow.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from mmcourse.checks import check_positive_int

__all__ = [
    "UnknownWordError",
    "WordVectors",
    "read_glove",
    "read_word2vec_text",
    "write_word2vec_text",
    "glove_path",
    "GLOVE_URL",
]

GLOVE_URL = "https://nlp.stanford.edu/projects/glove/"
GLOVE_FILE = "glove.6B.100d.txt"  # what mmcourse.data.catalog expects under the data directory


class UnknownWordError(KeyError):
    """A word that is not in the vocabulary; the message suggests the closest spellings."""

    def __init__(self, word: str, vocabulary: Sequence[str]):
        self.word = word
        self.suggestions = difflib.get_close_matches(word, list(vocabulary), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(repr(w) for w in self.suggestions)}?" if self.suggestions else "; check the spelling, or train on a corpus that has it"
        self.message = f"{word!r} is not in the vocabulary ({len(vocabulary):,} words){hint}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return self.message


class WordVectors:
    """Words and their vectors, with cosine-similarity queries.

    Args:
        words: the vocabulary, one entry per row of ``matrix`` (no duplicates).
        matrix: ``(len(words), dim)`` array of vectors; stored as float32.
    """

    def __init__(self, words: Sequence[str], matrix: np.ndarray):
        matrix = np.asarray(matrix, dtype=np.float32)
        words = [str(w) for w in words]
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be 2-D (words × dimensions), got shape {matrix.shape}")
        if len(words) != matrix.shape[0]:
            raise ValueError(f"{len(words)} words but {matrix.shape[0]} rows in the matrix; give one vector per word")
        self.words = words
        self.matrix = matrix
        self._index = {w: i for i, w in enumerate(words)}
        if len(self._index) != len(words):
            raise ValueError("the words must be distinct")
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self._unit = matrix / np.maximum(norms, 1e-12)

    # -------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self._index

    def __repr__(self) -> str:
        return f"WordVectors({len(self):,} words × {self.dim} dimensions)"

    @property
    def dim(self) -> int:
        return self.matrix.shape[1]

    def index(self, word: str) -> int:
        """Row of ``word``; an unknown word raises :class:`UnknownWordError` with suggestions."""
        try:
            return self._index[word]
        except KeyError:
            raise UnknownWordError(word, self.words) from None

    def __getitem__(self, word: str) -> np.ndarray:
        return self.matrix[self.index(word)]

    def unit(self, word: str) -> np.ndarray:
        """The word's vector scaled to length 1."""
        return self._unit[self.index(word)]

    # -------------------------------------------------------------- queries
    def similarity(self, a: str, b: str) -> float:
        """Cosine similarity ``a·b / (|a| |b|)`` of two words."""
        return float(self.unit(a) @ self.unit(b))

    def _ranked(self, query: np.ndarray, exclude: Iterable[int], k: int) -> list[tuple[str, float]]:
        check_positive_int(k, "k")
        scores = self._unit @ (query / max(float(np.linalg.norm(query)), 1e-12))
        scores[list(exclude)] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.words[i], float(scores[i])) for i in top]

    def nearest(self, word: str | np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` words most similar to ``word`` (itself excluded), with their cosine similarity.

        ``word`` may also be a vector, in which case nothing is excluded.
        """
        if isinstance(word, str):
            i = self.index(word)
            return self._ranked(self._unit[i], [i], k)
        return self._ranked(np.asarray(word, np.float32), [], k)

    def analogy(self, a: str, b: str, c: str, k: int = 1) -> list[tuple[str, float]]:
        """``a`` is to ``b`` as ``c`` is to …? (3CosAdd, Mikolov et al. 2013).

        The answer maximises ``cos(x, b̂ − â + ĉ)`` over the vocabulary, the three query words
        excluded (as gensim and the original word2vec evaluation do); hats are unit vectors.
        """
        ia, ib, ic = self.index(a), self.index(b), self.index(c)
        target = self._unit[ib] - self._unit[ia] + self._unit[ic]
        return self._ranked(target, [ia, ib, ic], k)

    def restrict(self, words: Iterable[str]) -> WordVectors:
        """A copy that keeps only ``words`` (in the order given)."""
        words = list(words)
        return WordVectors(words, self.matrix[[self.index(w) for w in words]])

    # -------------------------------------------------------------- files
    def save_word2vec_format(self, path: str | Path) -> Path:
        """Write the word2vec text format (readable by gensim's ``load_word2vec_format``)."""
        return write_word2vec_text(self, path)

    @classmethod
    def load_word2vec_format(cls, path: str | Path) -> WordVectors:
        return read_word2vec_text(path)


# ------------------------------------------------------------------ readers and writers


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(f"no {what} file at {path}; check the path (the course keeps downloaded data under mmcourse.config.data_dir())")


def _parse_lines(lines: Iterable[str], path: Path, dim: int | None, limit: int | None) -> WordVectors:
    words, rows = [], []
    for number, line in enumerate(lines, start=1):
        parts = line.rstrip("\n").rstrip(" ").split(" ")
        if len(parts) < 2:
            continue  # a blank line
        word, values = parts[0], parts[1:]
        if dim is None:
            dim = len(values)
        if len(values) != dim:
            raise ValueError(f"{path}, line {number}: {len(values)} numbers for {word!r}, expected {dim}; is the file complete and in the right format?")
        words.append(word)
        rows.append(np.asarray(values, dtype=np.float32))
        if limit is not None and len(words) >= limit:
            break
    if not words:
        raise ValueError(f"{path} holds no vectors")
    return WordVectors(words, np.stack(rows))


def read_glove(path: str | Path | None = None, limit: int | None = None) -> WordVectors:
    """Vectors in GloVe's text format: ``word v1 v2 … vd`` a line, no header.

    Args:
        path: the file; by default ``glove.6B.100d.txt`` in :func:`mmcourse.config.data_dir`.
        limit: read only the first ``limit`` words (GloVe files list frequent words first).
    """
    path = glove_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no GloVe file at {path}. Download glove.6B.zip from {GLOVE_URL}, unzip it and put "
            f"{GLOVE_FILE} (or another glove.*.txt) in {path.parent}; then call read_glove() again"
        )
    with open(path, encoding="utf-8") as handle:
        return _parse_lines(handle, path, None, limit)


def glove_path() -> Path:
    """Where the course expects GloVe vectors: ``glove.6B.100d.txt`` under the data directory."""
    from mmcourse.config import data_dir

    return data_dir() / GLOVE_FILE


def read_word2vec_text(path: str | Path, limit: int | None = None) -> WordVectors:
    """Vectors in the word2vec text format: a header ``count dim``, then ``word v1 … vd`` lines."""
    path = Path(path)
    if not path.is_file():
        raise _missing(path, "word2vec text")
    with open(path, encoding="utf-8") as handle:
        header = handle.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise ValueError(f"{path} does not start with a 'count dim' header; if it is a GloVe file, use read_glove")
        count, dim = int(header[0]), int(header[1])
        vectors = _parse_lines(handle, path, dim, limit)
    if limit is None and len(vectors) != count:
        raise ValueError(f"{path} announces {count} words but holds {len(vectors)}; the file may be cut short")
    return vectors


def write_word2vec_text(vectors: WordVectors, path: str | Path) -> Path:
    """Write ``vectors`` in the word2vec text format; returns the path."""
    path = Path(path)
    for word in vectors.words:
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"the word {word!r} is empty or holds whitespace, which the text format cannot store")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{len(vectors)} {vectors.dim}\n")
        for word, row in zip(vectors.words, vectors.matrix):
            handle.write(word + " " + " ".join(f"{x:.9g}" for x in row.tolist()) + "\n")  # 9 digits: float32 exactly
    return path
