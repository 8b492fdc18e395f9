"""Similarity and analogy benchmarks against gensim's own evaluate_word_pairs / evaluate_word_analogies."""

import numpy as np
import pytest
from gensim.models import Word2Vec

from mmcourse import wordsim
from mmcourse.data.text import gensim_data_path, load_corpus
from mmcourse.data.vectors import WordVectors


@pytest.fixture(scope="module")
def lee_vectors():
    """Vectors for every Lee word (one quick gensim epoch: their quality does not matter here)."""
    model = Word2Vec(load_corpus("lee"), vector_size=20, min_count=1, sg=1, epochs=1, seed=1, workers=1)
    return model.wv, WordVectors(model.wv.index_to_key, model.wv.vectors)


@pytest.mark.parametrize("dataset, filename", [("wordsim353", "wordsim353.tsv"), ("simlex999", "simlex999.txt")])
def test_similarity_matches_gensim(lee_vectors, dataset, filename):
    kv, ours = lee_vectors
    result = wordsim.evaluate_similarity(ours, dataset)
    _, spearman, oov_percent = kv.evaluate_word_pairs(gensim_data_path(filename))
    assert result.spearman == pytest.approx(spearman.statistic, abs=1e-6)
    total = result.used + result.skipped
    assert 100 * result.skipped / total == pytest.approx(oov_percent)
    assert total == len(wordsim.similarity_pairs(dataset)) and result.used > 20


def test_spearman_is_one_for_vectors_that_rank_pairs_like_people(tmp_path):
    # 2-D vectors whose cosine similarity is a monotone function of the human score.
    scores = [s for _, _, s in wordsim.similarity_pairs("wordsim353")[:6]]
    words, rows, lines = [], [], ["# word1\tword2\tscore"]
    for k, score in enumerate(scores):
        angle = (10 - score) / 10 * np.pi / 2
        words += [f"x{k}", f"y{k}"]
        rows += [[1.0, 0.0], [np.cos(angle), np.sin(angle)]]
        lines.append(f"X{k}\ty{k}\t{score}")  # upper case: the comparison ignores case
    lines.append("x0\tunknown\t5.0")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n")
    result = wordsim.evaluate_similarity(WordVectors(words, np.array(rows)), path)
    assert result.spearman == pytest.approx(1.0) and result.used == 6 and result.skipped == 1


def test_analogies_match_gensim(lee_vectors):
    kv, ours = lee_vectors
    result = wordsim.evaluate_analogies(ours)
    score, sections = kv.evaluate_word_analogies(gensim_data_path("questions-words.txt"))
    total = sections[-1]
    assert result.used == len(total["correct"]) + len(total["incorrect"]) > 50
    assert result.correct == len(total["correct"])
    assert result.accuracy == pytest.approx(score)
    n_questions = sum(1 for line in gensim_data_path("questions-words.txt").read_text().splitlines() if not line.startswith(":"))
    assert result.total == n_questions and result.coverage == pytest.approx(result.used / n_questions)


def test_analogy_solved_by_exact_offsets():
    # king - man + woman = queen exactly, with distractors around
    rng = np.random.default_rng(0)
    base = rng.normal(size=(4, 8))
    man, woman, king = base[0], base[1], base[2]
    words = ["man", "woman", "king", "queen", "other"]
    vectors = WordVectors(words, np.stack([man, woman, king, king - man + woman, base[3]]))
    assert vectors.analogy("man", "woman", "king")[0][0] == "queen"


def test_unknown_dataset_is_explained():
    with pytest.raises(ValueError, match="choose one of wordsim353, simlex999"):
        wordsim.evaluate_similarity(WordVectors(["a"], np.ones((1, 2))), "wordsim999")
