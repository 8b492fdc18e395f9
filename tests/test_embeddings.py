"""Skip-gram with negative sampling: each formula against an independent computation."""

import json
import os
import subprocess
import sys
from collections import Counter

import keras
import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from mmcourse.data import shapes
from mmcourse.data.text import load_corpus
from mmcourse.models import embeddings as E


def test_skipgram_loss_equals_a_direct_numpy_evaluation():
    rng = np.random.default_rng(0)
    model = E.SkipGram(vocab_size=30, dim=8)
    model.build()
    v, u = rng.normal(size=(30, 8)).astype("float32"), rng.normal(size=(30, 8)).astype("float32")
    model.target.assign(v)
    model.context.assign(u)
    centre, context, negatives = rng.integers(0, 30, 16), rng.integers(0, 30, 16), rng.integers(0, 30, (16, 5))
    ours = keras.ops.convert_to_numpy(model((centre, context, negatives)))
    # The formula, term by term with plain loops: -log σ(u_o·v_c) - Σ_k log σ(-u_k·v_c)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    direct = np.array(
        [
            -np.log(sigmoid(u[o] @ v[c])) - sum(np.log(sigmoid(-(u[k] @ v[c]))) for k in ks)
            for c, o, ks in zip(centre, context, negatives)
        ]
    )
    np.testing.assert_allclose(ours, direct, rtol=1e-4)
    np.testing.assert_allclose(E.skipgram_loss_numpy(v, u, centre, context, negatives), direct, rtol=1e-6)


def test_train_step_gradient_matches_tensorflow_on_the_numpy_loss():
    # One SGD step with the summed loss moves each weight by -lr * dL/dw; compare with finite differences.
    rng = np.random.default_rng(1)
    model = E.SkipGram(vocab_size=6, dim=3)
    model.build()
    v, u = rng.normal(size=(6, 3)) * 0.5, rng.normal(size=(6, 3)) * 0.5
    model.target.assign(v.astype("float32"))
    model.context.assign(u.astype("float32"))
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1))
    batch = (np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([[4, 5], [5, 0], [3, 4]]))
    model.train_step(batch)
    eps = 1e-6
    grad_v = np.zeros_like(v)
    for i in range(6):
        for j in range(3):
            plus, minus = v.copy(), v.copy()
            plus[i, j] += eps
            minus[i, j] -= eps
            grad_v[i, j] = (E.skipgram_loss_numpy(plus, u, *batch).sum() - E.skipgram_loss_numpy(minus, u, *batch).sum()) / (2 * eps)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.target), v - 0.1 * grad_v, atol=1e-5)


def _brute_force_pairs(sentences, window):
    pairs = []
    for sentence in sentences:
        for i, centre in enumerate(sentence):
            for j, context in enumerate(sentence):
                if i != j and abs(i - j) <= window:
                    pairs.append((centre, context))
    return Counter(pairs)


@pytest.mark.parametrize("window", [1, 2, 5])
def test_context_pairs_equal_a_brute_force_enumeration(window):
    sentences = [[5, 6, 7, 8, 9, 10], [11, 12], [13], [14, 15, 16]]
    ids = np.concatenate([np.array(s) for s in sentences])
    owner = np.concatenate([np.full(len(s), n) for n, s in enumerate(sentences)])
    centres, contexts = E.context_pairs(ids, owner, window)
    assert Counter(zip(centres.tolist(), contexts.tolist())) == _brute_force_pairs(sentences, window)


def test_dynamic_window_keeps_exactly_the_pairs_within_each_drawn_reach():
    ids = np.arange(40)
    centres, contexts = E.context_pairs(ids, None, 4, np.random.default_rng(3))
    reach = np.random.default_rng(3).integers(1, 5, size=40)  # the same draw, made again
    expected = Counter((i, j) for i in range(40) for j in range(40) if i != j and abs(i - j) <= reach[i])
    assert Counter(zip(centres.tolist(), contexts.tolist())) == expected


def test_subsampling_and_noise_match_gensim():
    sentences = load_corpus("lee")[:60]
    vocab, counts = E.build_vocabulary(sentences, min_count=3)
    model = Word2Vec(min_count=3, sample=1e-3, negative=5, ns_exponent=0.75, workers=1)
    model.build_vocab(sentences)
    words = vocab.words[4:]
    assert sorted(words) == sorted(model.wv.index_to_key)
    gensim_counts = np.array([model.wv.get_vecattr(w, "count") for w in words])
    np.testing.assert_array_equal(counts[4:], gensim_counts)
    # gensim keeps a word with probability sample_int / 2**32
    keep = E.keep_probabilities(counts, 1e-3)[4:]
    gensim_keep = np.array([model.wv.get_vecattr(w, "sample_int") for w in words]) / 2**32
    np.testing.assert_allclose(keep, gensim_keep, atol=1e-9)
    assert keep.min() < 0.5  # frequent words really are subsampled
    # gensim's cumulative table holds the noise distribution unigram^0.75 on 2**31 - 1 integer steps
    noise = E.noise_distribution(counts)[4:]
    steps = np.diff(np.concatenate([[0], model.cum_table])) / (2**31 - 1)
    gensim_noise = steps[[model.wv.get_index(w) for w in words]]
    np.testing.assert_allclose(noise, gensim_noise, atol=1e-8)


def test_noise_distribution_is_unigram_to_the_three_quarters():
    counts = np.array([0, 1, 16, 81])
    expected = np.array([0, 1, 8, 27]) / 36  # 16^0.75 = 8, 81^0.75 = 27
    np.testing.assert_allclose(E.noise_distribution(counts), expected)
    draws = E.draw_negatives(E.noise_distribution(counts), (200_000,), np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / len(draws), expected, atol=0.005)


def test_embedding_lookup_equals_one_hot_matrix_product():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(12, 4)).astype("float32")
    ids = np.array([3, 0, 11, 3])
    one_hot = np.eye(12, dtype="float32")[ids]
    layer = keras.layers.Embedding(12, 4)
    layer.build((None,))
    layer.set_weights([table])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(ids)), one_hot @ table)
    model = E.SkipGram(12, 4)
    model.build()
    model.target.assign(table)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(keras.ops.take(model.target, ids, axis=0)), one_hot @ table)


def test_training_on_shapes_captions_puts_colours_next_to_colours():
    captions = load_corpus("shapes", n=2000, seed=0)
    vectors = E.train_skipgram(captions, E.CORPUS_DEFAULTS["shapes"], epochs=3, progress=False)
    assert vectors.losses[-1] < vectors.losses[0]
    for group in (shapes.COLOURS, shapes.SHAPES):
        for word in group:
            top = [w for w, _ in vectors.nearest(word, k=len(group) - 1)]
            assert set(top) <= set(group), (word, top)


def test_training_is_reproducible_and_leaves_global_random_state_alone():
    captions = load_corpus("shapes", n=100, seed=0)
    np.random.seed(123)
    expected_next = np.random.random()
    np.random.seed(123)
    first = E.train_skipgram(captions, dim=4, min_count=1, epochs=1, seed=5, progress=False)
    assert np.random.random() == expected_next  # no global seeding as a side effect
    second = E.train_skipgram(captions, dim=4, min_count=1, epochs=1, seed=5, progress=False)
    np.testing.assert_array_equal(first.matrix, second.matrix)


def test_unknown_word_in_trained_vectors_suggests_close_words():
    captions = load_corpus("shapes", n=50, seed=0)
    vectors = E.train_skipgram(captions, dim=4, min_count=1, epochs=1, progress=False)
    with pytest.raises(E.UnknownWordError, match=r"'purpel' is not in the vocabulary .*did you mean 'purple'"):
        vectors.nearest("purpel")


def test_divergence_is_reported_with_what_to_change():
    captions = load_corpus("shapes", n=100, seed=0)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        E.train_skipgram(captions, dim=8, min_count=1, sample=0.0, learning_rate=50.0, epochs=1, progress=False)


def test_model_config_round_trip_and_argument_errors():
    model = E.SkipGram(50, 7, seed=2, name="sg")
    clone = E.SkipGram.from_config(model.get_config())
    assert (clone.vocab_size, clone.dim, clone.seed, clone.name) == (50, 7, 2, "sg")
    with pytest.raises(ValueError, match="vocab_size must be an integer of at least 2"):
        E.SkipGram(1, 8)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        E.SkipGram(10, 0)
    with pytest.raises(ValueError, match="window must be at least 1"):
        E.context_pairs(np.arange(5), window=0)
    with pytest.raises(ValueError, match="lower min_count"):
        E.build_vocabulary([["a", "b"]], min_count=2)


def test_cli_writes_vectors_gensim_can_read_and_metrics(tmp_path):
    env = dict(os.environ, MMCOURSE_PROFILE="quick")
    cmd = [sys.executable, "-m", "mmcourse", "train", "embeddings", "--corpus", "lee", "--out", str(tmp_path), "--epochs", "1", "--dim", "8"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "skip-gram" in out.stderr and "100%" in out.stderr  # the progress bar
    kv = KeyedVectors.load_word2vec_format(tmp_path / "vectors.txt", binary=False)
    assert kv.vector_size == 8 and "the" in kv.key_to_index
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy", "words_per_second", "seconds"):
        assert isinstance(metrics[key], float), key
    assert metrics["words"] == len(kv) and metrics["settings"]["epochs"] == 1


def test_cli_refuses_an_unknown_corpus():
    out = subprocess.run([sys.executable, "-m", "mmcourse", "train", "embeddings", "--corpus", "wiki", "--out", "x"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'wiki'" in out.stderr
