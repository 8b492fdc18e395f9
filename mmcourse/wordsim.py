"""How good are word vectors? Word-similarity and analogy benchmarks.

* **WordSim-353** (Finkelstein et al., 2002) and **SimLex-999** (Hill et al., 2015): word
  pairs with human similarity ratings. The score is Spearman's rank correlation between the
  ratings and the cosine similarities of the vectors, over the pairs whose two words both
  have vectors; the others are *skipped* and counted. WordSim-353 rewards relatedness
  (*cup*–*coffee*), SimLex-999 only true similarity (*cup*–*mug*), which is harder.
* **Analogies** (Mikolov et al., 2013, ``questions-words.txt``): *a* is to *b* as *c* is to
  *d*; a question is answered correctly when 3CosAdd ranks *d* first (the three query words
  excluded). Accuracy counts only the questions whose four words all have vectors;
  coverage is the fraction of questions that could be asked.

The three files ship with gensim (no download). Comparisons are case-insensitive, as in
gensim's own ``evaluate_word_pairs`` / ``evaluate_word_analogies``: where a word has vectors
under several casings, the first (most frequent) one is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmcourse.data.text import gensim_data_path
from mmcourse.data.vectors import WordVectors

__all__ = [
    "SIMILARITY_DATASETS",
    "SimilarityResult",
    "AnalogyResult",
    "similarity_pairs",
    "evaluate_similarity",
    "evaluate_analogies",
    "evaluate_all",
]

SIMILARITY_DATASETS = {"wordsim353": "wordsim353.tsv", "simlex999": "simlex999.txt"}
ANALOGY_FILE = "questions-words.txt"


@dataclass(frozen=True)
class SimilarityResult:
    """Spearman's ρ between human ratings and cosine similarities, over ``used`` pairs."""

    dataset: str
    spearman: float
    used: int
    skipped: int  # pairs with a word that has no vector

    @property
    def coverage(self) -> float:
        return self.used / max(self.used + self.skipped, 1)

    def __str__(self) -> str:
        return f"{self.dataset}: Spearman {self.spearman:+.3f} on {self.used} pairs ({self.skipped} skipped as out of vocabulary)"


@dataclass(frozen=True)
class AnalogyResult:
    """Accuracy on the analogy questions whose four words have vectors."""

    correct: int
    used: int
    total: int
    sections: dict[str, tuple[int, int]] = field(default_factory=dict)  # section -> (correct, used)

    @property
    def accuracy(self) -> float:
        return self.correct / self.used if self.used else 0.0

    @property
    def coverage(self) -> float:
        return self.used / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"analogies: {self.accuracy:.1%} correct of {self.used:,} questions asked ({self.coverage:.1%} coverage of {self.total:,})"


def _case_insensitive_index(vectors: WordVectors) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, word in enumerate(vectors.words):
        index.setdefault(word.lower(), i)  # the first (most frequent) casing wins
    return index


def _resolve(dataset: str | Path) -> tuple[str, Path]:
    if isinstance(dataset, Path) or str(dataset) not in SIMILARITY_DATASETS:
        path = Path(dataset)
        if not path.is_file():
            raise ValueError(f"unknown similarity dataset {dataset!r}; choose one of {', '.join(SIMILARITY_DATASETS)} or give a file of 'word1<TAB>word2<TAB>score' lines")
        return path.stem, path
    return str(dataset), gensim_data_path(SIMILARITY_DATASETS[str(dataset)])


def similarity_pairs(dataset: str | Path = "wordsim353") -> list[tuple[str, str, float]]:
    """The (word, word, human score) triples of a dataset, lower-cased; ``#`` lines are comments."""
    _, path = _resolve(dataset)
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            pairs.append((parts[0].strip().lower(), parts[1].strip().lower(), float(parts[2])))
        except ValueError:
            continue
    return pairs


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(x) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def evaluate_similarity(vectors: WordVectors, dataset: str | Path = "wordsim353") -> SimilarityResult:
    """Spearman correlation of cosine similarity with human ratings, and the pairs skipped."""
    name, _ = _resolve(dataset)
    index = _case_insensitive_index(vectors)
    unit = vectors._unit
    human, model, skipped = [], [], 0
    for a, b, score in similarity_pairs(dataset):
        if a not in index or b not in index:
            skipped += 1
            continue
        human.append(score)
        model.append(float(unit[index[a]] @ unit[index[b]]))
    return SimilarityResult(name, _spearman(np.array(human), np.array(model)), len(human), skipped)


def evaluate_analogies(vectors: WordVectors, path: str | Path | None = None) -> AnalogyResult:
    """3CosAdd accuracy (query words excluded) and coverage on ``questions-words.txt``.

    All questions whose words have vectors are answered at once with one matrix product
    per block, so the whole file takes about a second for a vocabulary of tens of thousands.
    """
    path = gensim_data_path(ANALOGY_FILE) if path is None else Path(path)
    index = _case_insensitive_index(vectors)
    unit = vectors._unit
    questions, section_of, total = [], [], 0
    section = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(":"):
            section = line.lstrip(": ").strip()
            continue
        words = line.lower().split()
        if len(words) != 4:
            continue
        total += 1
        if all(w in index for w in words):
            questions.append([index[w] for w in words])
            section_of.append(section)
    correct = np.zeros(len(questions), bool)
    if questions:
        q = np.array(questions)
        for start in range(0, len(q), 1024):
            block = q[start : start + 1024]
            a, b, c, d = (unit[block[:, j]] for j in range(4))
            target = b - a + c
            target /= np.maximum(np.linalg.norm(target, axis=1, keepdims=True), 1e-12)
            scores = target @ unit.T
            rows = np.arange(len(block))
            for j in range(3):
                scores[rows, block[:, j]] = -np.inf  # exclude the query words
            correct[start : start + len(block)] = scores.argmax(axis=1) == block[:, 3]
    sections: dict[str, tuple[int, int]] = {}
    for name, ok in zip(section_of, correct):
        got, used = sections.get(name, (0, 0))
        sections[name] = (got + int(ok), used + 1)
    return AnalogyResult(int(correct.sum()), len(questions), total, sections)


def evaluate_all(vectors: WordVectors) -> dict[str, float]:
    """Every benchmark in one flat dict (what ``metrics.json`` holds)."""
    ws = evaluate_similarity(vectors, "wordsim353")
    sl = evaluate_similarity(vectors, "simlex999")
    an = evaluate_analogies(vectors)
    return {
        "wordsim353_spearman": ws.spearman,
        "wordsim353_pairs_used": ws.used,
        "wordsim353_pairs_skipped": ws.skipped,
        "simlex999_spearman": sl.spearman,
        "simlex999_pairs_used": sl.used,
        "simlex999_pairs_skipped": sl.skipped,
        "analogy_accuracy": an.accuracy,
        "analogy_coverage": an.coverage,
        "analogy_questions_used": an.used,
    }
