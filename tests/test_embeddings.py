"""Skip-gram with negative sampling: each formula against an independent computation, and the
training idiom (Keras fit on tf.data, mixed precision, several replicas, seeds)."""

import json
import os
import random
import subprocess
import sys
from collections import Counter

import keras
import numpy as np
import pytest
from gensim.models import KeyedVectors, Word2Vec

from mmcourse import device, training
from mmcourse.data import shapes
from mmcourse.data.text import load_corpus
from mmcourse.models import embeddings as E
from mmcourse.wordsim import evaluate_all

replica_share = training.replica_share  # (compute_loss's argument `training` hides the module)


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


def test_one_fit_step_moves_the_weights_by_the_gradient_of_the_summed_loss():
    # One SGD step of Keras's fit (through compute_loss) moves each weight by -lr * dL/dw, L the
    # SUM of the batch's losses; compare with finite differences of the NumPy loss.
    rng = np.random.default_rng(1)
    model = E.SkipGram(vocab_size=6, dim=3)
    model.build()
    v, u = rng.normal(size=(6, 3)) * 0.5, rng.normal(size=(6, 3)) * 0.5
    model.target.assign(v.astype("float32"))
    model.context.assign(u.astype("float32"))
    training.compile(model, keras.optimizers.SGD(learning_rate=0.1))
    batch = (np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([[4, 5], [5, 0], [3, 4]]))
    history = model.fit(batch, batch_size=3, epochs=1, shuffle=False, verbose=0)
    # the history's loss is the mean per pair (before the step)
    np.testing.assert_allclose(history.history["loss"][0], E.skipgram_loss_numpy(v, u, *batch).mean(), rtol=1e-5)
    eps = 1e-6
    for table, other, moved in ((v, u, model.target), (u, v, model.context)):
        grad = np.zeros_like(table)
        for i in range(6):
            for j in range(3):
                plus, minus = table.copy(), table.copy()
                plus[i, j] += eps
                minus[i, j] -= eps
                args = (plus, other) if table is v else (other, plus)
                args_minus = (minus, other) if table is v else (other, minus)
                grad[i, j] = (E.skipgram_loss_numpy(*args, *batch).sum() - E.skipgram_loss_numpy(*args_minus, *batch).sum()) / (2 * eps)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(moved), table - 0.1 * grad, atol=1e-5)


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


def test_pair_dataset_serves_every_pair_once_in_order_in_global_batches():
    rng = np.random.default_rng(0)
    centres, contexts, negatives = rng.integers(0, 9, 10), rng.integers(0, 9, 10), rng.integers(0, 9, (10, 3))
    batches = [tuple(t.numpy() for t in x) for (x,) in E.pair_dataset(centres, contexts, negatives, 4)]
    assert [len(b[0]) for b in batches] == [4, 4, 2]
    for got, want in zip(zip(*batches), (centres, contexts, negatives)):
        np.testing.assert_array_equal(np.concatenate(got), want)


# --------------------------------------------------------------------------- training

# A tiny run: 100 Shapes captions, 8-dimensional vectors, batches of 32 pairs: about 7 SGD
# steps per epoch, enough for the loss to fall and for a wrong step size to show.
TINY = dict(dim=8, min_count=1, epochs=2, batch_size=32, learning_rate=0.1, seed=3)


def _tiny(precision="float32", cpu_replicas=None, **overrides):
    captions = load_corpus("shapes", n=20, seed=0)
    with device.use(precision, cpu_replicas):
        return E.train_skipgram(captions, progress=False, **{**TINY, **overrides})


@pytest.fixture(scope="module")
def tiny_float32():
    return _tiny()


def test_mixed_precision_loss_falls_like_float32(tiny_float32):
    """(a) Same seed, same pairs, under mixed_float16. Tolerance 1e-3 relative on each epoch's
    mean loss per pair: float16 keeps about 3 significant digits of the vectors in the dot
    products (relative rounding 5e-4 per value, averaging out over pairs); the loss itself is
    summed in float32. Measured: 2e-6. The loss-scale optimizer skipped no step here (a skipped
    step would show as a larger gap), and the vectors agree to float16's rounding."""
    mixed = _tiny("mixed")
    assert mixed.model.dtype_policy.name == "mixed_float16"
    assert isinstance(mixed.model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert mixed.steps == tiny_float32.steps
    assert mixed.losses[-1] < mixed.losses[0] - 0.05 and tiny_float32.losses[-1] < tiny_float32.losses[0] - 0.05
    np.testing.assert_allclose(mixed.losses, tiny_float32.losses, rtol=1e-3)
    np.testing.assert_allclose(mixed.matrix, tiny_float32.matrix, atol=2e-3)


def test_two_replicas_take_the_same_steps_as_one_device(tiny_float32, monkeypatch):
    """(b) float32, 2 CPU replicas, each taking half of every global batch of 32 pairs.

    The loss is the SUM over the batch and Keras sums the replicas' gradients, so each replica
    must return its own sum undivided: the summed gradient is then exactly the one-device
    gradient, and the runs agree to float32 summation order (tolerance 1e-5 relative on the
    losses, 1e-6 absolute on vectors of size ~0.3; measured: 2e-7 and 4e-8). Dividing by the
    number of replicas, as a mean loss must (``training.replica_share``), halves every step:
    the losses then differ by ~3e-3 and 3e-2 relative and the vectors by ~0.25 — which this
    test also shows, so it tells the two apart."""
    two = _tiny("float32", cpu_replicas=2)
    assert two.model.distribute_strategy.num_replicas_in_sync == 2
    assert two.steps == tiny_float32.steps
    np.testing.assert_allclose(two.losses, tiny_float32.losses, rtol=1e-5)
    np.testing.assert_allclose(two.matrix, tiny_float32.matrix, atol=1e-6)

    def divided(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        losses = E.as_float32(y_pred)
        self.pair_loss.update_state(losses)
        return replica_share(keras.ops.sum(losses))

    monkeypatch.setattr(E.SkipGram, "compute_loss", divided)
    wrong = _tiny("float32", cpu_replicas=2)
    assert abs(wrong.losses[-1] / tiny_float32.losses[-1] - 1) > 100 * 1e-5
    assert np.abs(wrong.matrix - tiny_float32.matrix).max() > 1000 * 1e-6


def test_learning_rate_falls_linearly_to_its_minimum(monkeypatch):
    settings = E.SkipGramSettings(learning_rate=0.03, min_learning_rate=0.001)
    schedule = E.learning_rate_schedule(settings, total_steps=10)
    got = [float(schedule(step)) for step in range(13)]
    want = [max(0.001, 0.03 - 0.029 * step / 10) for step in range(13)]
    np.testing.assert_allclose(got, want, rtol=1e-6)

    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    monkeypatch.setattr(E, "STEPS_PER_EXECUTION", 1)  # batch hooks once per step
    vectors = _tiny(epochs=3, learning_rate=0.03, min_learning_rate=0.001, callbacks=[Record()])
    assert len(seen) == vectors.steps and seen[0] == pytest.approx(0.03)
    # A straight line down to the minimum, then flat (once the run's steps pass the estimate)...
    planned = (0.03 - 0.001) / (seen[0] - seen[1])  # the steps the decay spans
    line = np.maximum(0.001, 0.03 - (0.03 - 0.001) * np.arange(len(seen)) / planned)
    np.testing.assert_allclose(seen, line, atol=1e-7)
    # ...spanning the whole run: the step count is estimated from one draw of the pairs
    assert abs(planned / vectors.steps - 1) < 0.15


def test_training_on_shapes_captions_puts_colours_next_to_colours():
    captions = load_corpus("shapes", n=2000, seed=0)
    vectors = E.train_skipgram(captions, E.CORPUS_DEFAULTS["shapes"], epochs=3, progress=False)
    assert vectors.losses[-1] < vectors.losses[0]
    for group in (shapes.COLOURS, shapes.SHAPES):
        for word in group:
            top = [w for w, _ in vectors.nearest(word, k=len(group) - 1)]
            assert set(top) <= set(group), (word, top)


def test_training_is_reproducible_and_leaves_global_random_state_alone(tiny_float32):
    np.random.seed(123)
    random.seed(123)
    expected = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    again = _tiny()
    assert (np.random.random(), random.random()) == expected  # no global seeding as a side effect
    np.testing.assert_array_equal(again.matrix, tiny_float32.matrix)
    assert again.losses == tiny_float32.losses
    other = _tiny(seed=4)
    assert not np.array_equal(other.matrix, tiny_float32.matrix)


def test_unknown_word_in_trained_vectors_suggests_close_words(tiny_float32):
    with pytest.raises(E.UnknownWordError, match=r"'purpel' is not in the vocabulary .*did you mean 'purple'"):
        tiny_float32.nearest("purpel")


def test_divergence_is_reported_with_what_to_change():
    captions = load_corpus("shapes", n=100, seed=0)
    with pytest.raises(FloatingPointError, match="lower learning_rate"):
        E.train_skipgram(captions, dim=8, min_count=1, sample=0.0, learning_rate=50.0, epochs=1, progress=False)


def test_model_config_round_trip_and_argument_errors():
    model = E.SkipGram(50, 7, seed=2, name="sg")
    clone = E.SkipGram.from_config(model.get_config())
    assert (clone.vocab_size, clone.dim, clone.seed, clone.name) == (50, 7, 2, "sg")
    with pytest.raises(ValueError, match="vocab_size must be a whole number of at least 2"):
        E.SkipGram(1, 8)
    with pytest.raises(ValueError, match="dim must be a positive whole number"):
        E.SkipGram(10, 0)
    with pytest.raises(ValueError, match="window must be a positive whole number"):
        E.context_pairs(np.arange(5), window=0)
    with pytest.raises(ValueError, match="lower min_count"):
        E.build_vocabulary([["a", "b"]], min_count=2)
    with pytest.raises(ValueError, match="batch_size must be a positive whole number"):
        E.train_skipgram([["a", "b"]], min_count=1, batch_size=0)
    with pytest.raises(ValueError, match="seed must be a non-negative whole number"):
        E.train_skipgram([["a", "b"]], min_count=1, seed=-1)


# --------------------------------------------------------------------------- command


def test_train_command_writes_vectors_and_metrics_it_can_reproduce(tmp_path, capsys):
    metrics = E.train_command(tmp_path, corpus="lee", profile="quick", seed=1, epochs=1, dim=8)
    assert "skip-gram" in capsys.readouterr().err  # the progress bar
    kv = KeyedVectors.load_word2vec_format(tmp_path / "vectors.txt", binary=False)  # gensim reads it
    assert kv.vector_size == 8 and "the" in kv.key_to_index
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written == json.loads(json.dumps(metrics))
    assert (written["profile"], written["seed"], written["precision"], written["replicas"]) == ("quick", 1, "float32", 1)
    assert written["settings"]["epochs"] == 1 and written["settings"]["seed"] == 1
    assert written["train_seconds"] > 0 and written["words_per_second"] > 0 and len(written["loss_per_epoch"]) == 1
    # re-measure the evaluation from the file
    loaded = E.load(tmp_path)
    assert written["words"] == len(loaded) == len(kv)
    again = evaluate_all(loaded)
    for key in ("wordsim353_spearman", "simlex999_spearman", "analogy_accuracy"):
        assert again[key] == pytest.approx(written[key], abs=1e-4), key


def test_train_command_quick_profile_shortens_lee_and_refuses_bad_arguments_before_training(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(E, "train_skipgram", lambda *a, **k: calls.append(a) or pytest.fail("trained"))
    # (the checks every train_command shares: tests/test_train_commands.py)
    for kwargs, message in [(dict(epochs=0), "epochs must be"), (dict(dim=0), "dim must be")]:
        with pytest.raises(ValueError, match=message):
            E.train_command(tmp_path / "never", corpus="lee", **kwargs)
    assert not (tmp_path / "never").exists() and not calls
    with pytest.raises(ValueError, match="no word vectors ship"):
        E.load()

    class Stop(Exception):
        pass

    def record(sentences, settings, **kwargs):
        calls.append(settings)
        raise Stop

    monkeypatch.setattr(E, "train_skipgram", record)
    for profile in ("quick", "full"):
        with pytest.raises(Stop):
            E.train_command(tmp_path / profile, corpus="lee", profile=profile, seed=2)
    assert [(c.epochs, c.seed, c.dim) for c in calls] == [(E.QUICK_EPOCHS["lee"], 2, 100), (50, 2, 100)]
    assert E.QUICK_EPOCHS["lee"] < 50


def test_cli_writes_vectors_and_metrics(tmp_path):
    env = dict(os.environ, MMCOURSE_PROFILE="quick")
    cmd = [sys.executable, "-m", "mmcourse", "train", "embeddings", "--corpus", "shapes", "--out", str(tmp_path), "--epochs", "1", "--dim", "4"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "skip-gram" in out.stderr and "100%" in out.stderr  # the progress bar
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["corpus"] == "shapes" and metrics["settings"]["epochs"] == 1
    assert metrics["words"] == len(E.load(tmp_path))


def test_cli_refuses_an_unknown_corpus():
    out = subprocess.run([sys.executable, "-m", "mmcourse", "train", "embeddings", "--corpus", "wiki", "--out", "x"], capture_output=True, text=True)
    assert out.returncode == 2 and "invalid choice: 'wiki'" in out.stderr
