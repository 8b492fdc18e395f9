"""The embedding explorer and the embedding map, without a browser."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from sklearn.decomposition import PCA

from mmcourse.data.text import gensim_data_path
from mmcourse.data.vectors import read_glove
from mmcourse.viz import plot_embedding_map
from mmcourse.widgets import EmbeddingExplorer


@pytest.fixture(scope="module")
def glove():
    return read_glove(gensim_data_path("test_glove.txt"))


def test_typing_a_word_shows_its_neighbours(glove):
    explorer = EmbeddingExplorer(glove)
    assert explorer.results == [] and "type a word" in explorer.neighbours.value
    explorer.word.value = "of"
    assert explorer.results == glove.nearest("of", k=8)
    assert explorer.results[0][0] in explorer.neighbours.value
    explorer.k.value = 3
    assert len(explorer.results) == 3


def test_unknown_word_shows_the_message_instead_of_raising(glove):
    explorer = EmbeddingExplorer(glove, word="the")
    explorer.word.value = "thee"
    assert explorer.results == []
    assert "is not in the vocabulary" in explorer.neighbours.value and "did you mean" in explorer.neighbours.value


def test_analogy_boxes_give_3cosadd_answers(glove):
    a, b, c = glove.words[1], glove.words[2], glove.words[5]
    explorer = EmbeddingExplorer(glove, analogy=(a, b, ""))
    assert "fill in" in explorer.answer.value
    explorer.c.value = c
    assert explorer.analogy_results == glove.analogy(a, b, c, k=5)
    explorer.c.value = "nosuchword"
    assert explorer.analogy_results == [] and "nosuchword" in explorer.answer.value


def test_embedding_map_is_the_pca_projection(glove):
    words = glove.words[:12]
    groups = {"first": words[:4], "second": words[4:8]}
    ax = plot_embedding_map(glove, words, groups)
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    order = words[:4] + words[4:8] + words[8:]  # group order, then the rest
    expected = PCA(n_components=2).fit_transform(np.stack([glove[w] for w in order]))
    # Principal directions are defined up to sign.
    signs = np.sign(np.sum(points * expected, axis=0))
    np.testing.assert_allclose(points, expected * signs, atol=1e-4)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["first", "second", "other"]
    plt.close(ax.figure)
    with pytest.raises(ValueError, match="at least 3 words"):
        plot_embedding_map(glove, words[:2])
