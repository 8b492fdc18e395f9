"""Word-vector files and queries, checked against gensim's KeyedVectors."""

import numpy as np
import pytest
from gensim.models import KeyedVectors

from mmcourse.data.text import gensim_data_path
from mmcourse.data.vectors import UnknownWordError, WordVectors, read_glove, read_word2vec_text, write_word2vec_text


@pytest.fixture(scope="module")
def glove():
    return read_glove(gensim_data_path("test_glove.txt"))


@pytest.fixture(scope="module")
def gensim_glove():
    return KeyedVectors.load_word2vec_format(gensim_data_path("test_glove.txt"), binary=False, no_header=True)


def test_glove_reader_matches_gensim(glove, gensim_glove):
    assert glove.words == list(gensim_glove.index_to_key)
    np.testing.assert_allclose(glove.matrix, gensim_glove.vectors, rtol=0, atol=0)


def test_nearest_and_similarity_match_gensim(glove, gensim_glove):
    for word in ["the", "of", glove.words[-1]]:
        ours = glove.nearest(word, k=5)
        theirs = gensim_glove.most_similar(word, topn=5)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    a, b = glove.words[0], glove.words[7]
    assert glove.similarity(a, b) == pytest.approx(float(gensim_glove.similarity(a, b)), abs=1e-6)


def test_analogy_is_3cosadd_excluding_the_query_words(glove, gensim_glove):
    a, b, c = glove.words[0], glove.words[3], glove.words[10]
    ours = glove.analogy(a, b, c, k=3)
    theirs = gensim_glove.most_similar(positive=[b, c], negative=[a], topn=3)
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    assert not {a, b, c} & {w for w, _ in ours}


def test_word2vec_text_round_trip_through_gensim(tmp_path, glove):
    path = write_word2vec_text(glove, tmp_path / "vectors.txt")
    loaded = KeyedVectors.load_word2vec_format(path, binary=False)
    assert list(loaded.index_to_key) == glove.words
    np.testing.assert_array_equal(loaded.vectors, glove.matrix)  # 9 significant digits keep float32 exact
    again = read_word2vec_text(path)
    np.testing.assert_array_equal(again.matrix, glove.matrix)
    assert again.words == glove.words


def test_unknown_word_says_so_and_suggests_spellings():
    vectors = WordVectors(["circle", "square", "triangle", "red"], np.eye(4))
    with pytest.raises(UnknownWordError) as err:
        vectors.nearest("circel")
    message = str(err.value)
    assert "'circel' is not in the vocabulary" in message and "did you mean 'circle'" in message
    assert isinstance(err.value, KeyError)
    with pytest.raises(UnknownWordError, match="check the spelling"):
        vectors.similarity("red", "zzzzzz")


def test_missing_glove_file_says_what_to_download_and_where(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_glove(tmp_path / "glove.6B.100d.txt")
    message = str(err.value)
    assert "https://nlp.stanford.edu/projects/glove/" in message and str(tmp_path) in message


def test_default_glove_location_is_the_data_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("MMCOURSE_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "glove.6B.100d.txt").replace(".", r"\.")):
        read_glove()


def test_bad_files_and_shapes_are_explained(tmp_path):
    glove_like = tmp_path / "g.txt"
    glove_like.write_text("a 1 2\nb 3 4\n")
    with pytest.raises(ValueError, match="use read_glove"):
        read_word2vec_text(glove_like)
    ragged = tmp_path / "r.txt"
    ragged.write_text("a 1 2\nb 3\n")
    with pytest.raises(ValueError, match="line 2: 1 numbers for 'b', expected 2"):
        read_glove(ragged)
    with pytest.raises(ValueError, match="3 words but 2 rows"):
        WordVectors(["a", "b", "c"], np.zeros((2, 4)))
