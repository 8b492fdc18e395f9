"""Vocabulary, padding and the offline corpora."""

import numpy as np
import pytest

from mmcourse.data import text as T


def test_special_tokens_come_first():
    v = T.Vocabulary(["circle", "red"])
    assert v.words[:4] == ["<pad>", "<start>", "<end>", "<unk>"]
    assert (v.pad_id, v.start_id, v.end_id, v.unk_id) == (0, 1, 2, 3)
    assert len(v) == 6


def test_build_orders_by_frequency_and_respects_min_count_and_size():
    v = T.Vocabulary.build(["a red circle", "a blue circle", "a red square"], min_count=2)
    assert v.words[4:] == ["a", "circle", "red"]
    assert len(T.Vocabulary.build(["a b c d e f"], max_size=6)) == 6


def test_encode_decode_round_trip_and_unknown_words():
    v = T.Vocabulary.build(["a small red circle left of a large blue square"])
    ids = v.encode("a small red circle")
    assert ids[0] == v.start_id and ids[-1] == v.end_id
    assert v.decode(ids) == "a small red circle"
    assert v.encode("a green circle", bounds=False)[1] == v.unk_id
    assert v.decode(ids + [v.pad_id, v.pad_id]) == "a small red circle"
    assert v.decode(ids, strip=False).startswith("<start> a")


def test_encode_batch_pads_and_cuts():
    v = T.Vocabulary.build(["a b c"])
    batch = v.encode_batch(["a b c", "a"])
    assert batch.dtype == np.int32 and batch.shape == (2, 5)
    assert batch[1].tolist() == [1, v.index("a"), 2, 0, 0]
    assert T.pad_sequences([[1, 2, 3]], length=2).tolist() == [[1, 2]]
    with pytest.raises(ValueError):
        T.pad_sequences([[1]], length=-1)


def test_vocabulary_saves_and_loads(tmp_path):
    v = T.Vocabulary.build(["a small red circle"])
    v.save(tmp_path / "vocab.json")
    assert T.Vocabulary.load(tmp_path / "vocab.json") == v


def test_tokenize_lowercases_and_drops_punctuation():
    assert T.tokenize("It's a GOOD film, isn't it?") == ["it's", "a", "good", "film", "isn't", "it"]


def test_shapes_corpus_is_five_captions_per_image():
    sentences = T.load_corpus("shapes", n=20, seed=1)
    assert len(sentences) == 100 and sentences[0][0] in ("a", "there", "an")


def test_lee_corpus_is_real_english_of_about_sixty_thousand_words():
    docs = T.load_corpus("lee")
    words = sum(len(d) for d in docs)
    assert len(docs) == 300 and 50_000 < words < 80_000
    assert "the" in docs[0] and "bushfire" in " ".join(docs[0])


def test_movie_reviews_are_labelled_and_balanced():
    sentences, labels = T.movie_reviews()
    assert len(sentences) == len(labels) == 200
    assert labels.sum() == 100
    assert T.load_corpus("movie-reviews") == sentences


def test_unknown_corpus_gives_one_clear_error():
    with pytest.raises(ValueError, match="unknown corpus 'wiki'; choose one of: shapes, lee, movie-reviews"):
        T.load_corpus("wiki")
