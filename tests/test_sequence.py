"""Recurrent networks: every formula against an independent computation."""

import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.data.text import Vocabulary
from mmcourse.models import sequence

import keras  # noqa: E402  (after mmcourse imported TensorFlow quietly)


def test_rnn_forward_equals_keras_simple_rnn_with_the_same_weights():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(3, 7, 4)).astype(np.float32)
    layer = keras.layers.SimpleRNN(5, return_sequences=True)
    expected = layer(xs).numpy()
    W_xh, W_hh, b = (w.numpy() for w in layer.weights)
    assert np.allclose(sequence.rnn_forward(xs, W_xh, W_hh, b), expected, atol=1e-5)
    h0 = rng.normal(size=(3, 5)).astype(np.float32)
    assert np.allclose(sequence.rnn_forward(xs, W_xh, W_hh, b, h0), layer(xs, initial_state=h0).numpy(), atol=1e-5)
    with pytest.raises(ValueError, match=r"xs must be \(batch, time, 4\)"):
        sequence.rnn_forward(xs[..., :2], W_xh, W_hh, b)


def test_gradient_norms_match_finite_differences_of_the_hand_written_cell():
    seed, steps, units, input_dim = 3, 6, 4, 2
    norms = sequence.gradient_norms_through_time("rnn", steps=steps, units=units, input_dim=input_dim, batch=1, recurrent_scale=0.8, seed=seed)
    # Rebuild the same layer and inputs, then differentiate the numpy cell numerically.
    layer = sequence._recurrent_layer("rnn", units, 0.8, seed)
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(1, steps, input_dim)).astype(np.float64)
    layer.build(xs.shape)
    probe = rng.normal(size=(units,))
    W_xh, W_hh, b = (w.numpy().astype(np.float64) for w in layer.weights)
    f = lambda x: float(sequence.rnn_forward(x, W_xh, W_hh, b)[0, -1] @ probe)
    eps = 1e-6
    grad = np.zeros_like(xs)
    for t in range(steps):
        for i in range(input_dim):
            d = np.zeros_like(xs)
            d[0, t, i] = eps
            grad[0, t, i] = (f(xs + d) - f(xs - d)) / (2 * eps)
    expected = np.linalg.norm(grad[0], axis=-1)[::-1]
    assert np.allclose(norms, expected, rtol=1e-3, atol=1e-7)


def test_gradients_vanish_for_small_recurrent_weights_and_gates_keep_them():
    plain = sequence.gradient_norms_through_time("rnn", steps=40, recurrent_scale=0.5)
    assert plain[30] < 1e-6 * plain[0]
    lstm = sequence.gradient_norms_through_time("lstm", steps=40, gate_bias=4.0)
    assert lstm[39] > 1e-2 * lstm[0]
    with pytest.raises(ValueError, match="no gates"):
        sequence.gradient_norms_through_time("rnn", gate_bias=1.0)
    with pytest.raises(ValueError, match="unknown cell 'tcn'"):
        sequence.gradient_norms_through_time("tcn")


@pytest.fixture(scope="module")
def lm_and_data():
    keras.utils.set_random_seed(0)
    vocab = Vocabulary(shapes.vocabulary_words())
    data = shapes.generate(40, seed=1)
    ids = vocab.encode_batch([c for caps in data.captions for c in caps], 16)
    return sequence.build_language_model(len(vocab), embed_dim=8, units=16), vocab, ids


def _masked_nll(model, ids, by="target"):
    logits = np.asarray(model(ids[:, :-1]), np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    targets = ids[:, 1:]
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    mask = (targets if by == "target" else ids[:, :-1]) != 0
    return (nll * mask).sum(), mask.sum()


_target_masked_nll = _masked_nll


def test_language_model_loss_masks_by_target_not_by_input(lm_and_data):
    model, _, ids = lm_and_data
    total, count = _target_masked_nll(model, ids)
    loss = float(sequence.language_model_loss()(ids[:, 1:], model(ids[:, :-1])))
    assert abs(loss - total / count) < 1e-5
    # Keras's plain loss follows the mask of the inputs, which also counts the <pad> after <end>.
    plain = float(keras.losses.SparseCategoricalCrossentropy(from_logits=True)(ids[:, 1:], model(ids[:, :-1])))
    total_in, count_in = _masked_nll(model, ids, by="input")
    assert abs(plain - total_in / count_in) < 1e-5 and count_in == count + len(ids)


def test_perplexity_is_exp_of_the_mean_target_nll(lm_and_data):
    model, _, ids = lm_and_data
    total, count = _target_masked_nll(model, ids)
    assert sequence.perplexity(model, ids, batch_size=7) == pytest.approx(np.exp(total / count), rel=1e-5)
    assert sequence.sequence_nll(model, ids)[1] == count
    with pytest.raises(ValueError, match="only padding"):
        sequence.perplexity(model, np.zeros((2, 5), np.int32))


def test_low_temperature_sampling_is_greedy_decoding(lm_and_data):
    model, vocab, _ = lm_and_data
    tokens = [vocab.start_id]
    for _ in range(12):
        logits = np.array(model(np.array([tokens]))[0, -1])
        logits[:2] = -np.inf
        tokens.append(int(np.argmax(logits)))
        if tokens[-1] == vocab.end_id:
            break
    greedy = vocab.decode(tokens)
    assert sequence.sample_captions(model, vocab, 3, temperature=1e-4, max_length=12, seed=0) == [greedy] * 3


def test_samples_follow_softmax_of_logits_over_temperature(lm_and_data):
    model, vocab, _ = lm_and_data
    T = 2.0
    z = np.asarray(model(np.array([[vocab.start_id]]))[0, -1], np.float64) / T
    z[:2] = -np.inf
    p = np.exp(z - z[2:].max())
    p /= p.sum()
    n = 4000
    first = [s.split()[0] if s else "<end>" for s in sequence.sample_captions(model, vocab, n, temperature=T, max_length=1, seed=1)]
    freq = np.array([first.count(w) for w in vocab.words]) / n
    assert np.abs(freq - p).max() < 4 * np.sqrt(p.max() / n) + 1e-3


def test_prefix_and_bad_arguments(lm_and_data):
    model, vocab, _ = lm_and_data
    assert all(s.startswith("there is a") for s in sequence.sample_captions(model, vocab, 5, prefix="there is a", seed=0))
    with pytest.raises(ValueError, match="prefix word 'huge' is not in the vocabulary"):
        sequence.sample_captions(model, vocab, 2, prefix="a huge")
    with pytest.raises(ValueError, match="temperature must be positive"):
        sequence.sample_captions(model, vocab, 2, temperature=0)
    with pytest.raises(ValueError, match="unknown cell"):
        sequence.build_language_model(30, cell="rnn")


def test_caption_distribution_matches_the_generator():
    dist = shapes.caption_distribution()
    assert sum(dist.values()) == pytest.approx(1.0)
    data = shapes.generate(40_000, seed=5)
    rng = np.random.default_rng(0)
    drawn = [caps[j] for caps, j in zip(data.captions, rng.integers(5, size=len(data)))]
    assert all(c in dist for c in set(drawn))
    # Group captions by (object count, prefix, relation word): every group's share must match.
    def group(c):
        parsed = shapes.parse_caption(c)
        return len(parsed.objects), parsed.prefix, parsed.relation

    expected = {}
    for c, p in dist.items():
        expected[group(c)] = expected.get(group(c), 0.0) + p
    assert len(expected) == 5 + 5 * 4
    observed = {}
    for c in drawn:
        observed[group(c)] = observed.get(group(c), 0) + 1
    for g, p in expected.items():
        assert abs(observed.get(g, 0) / len(drawn) - p) < 4 * np.sqrt(p / len(drawn)), g
    # Within one-object captions, the 36 phrases are equally likely (chi-square, 35 degrees of freedom).
    singles = [c.split()[-3:] for c in drawn if group(c)[0] == 1]
    _, counts = np.unique([" ".join(w) for w in singles], return_counts=True)
    assert len(counts) == 36
    chi2 = ((counts - counts.mean()) ** 2 / counts.mean()).sum()
    assert chi2 < 70  # the 99.9th percentile of chi-square with 35 degrees of freedom is about 66.6


def test_bag_of_words_counts_words():
    vocab = Vocabulary(["good", "bad"])
    bow = sequence.bag_of_words([["good", "good", "film"], ["bad"]], vocab)
    assert bow[0, vocab.index("good")] == 2 and bow[0, vocab.unk_id] == 1 and bow[1].sum() == 1
    model = sequence.build_text_classifier(len(vocab))
    assert model(np.array([[4, 5, 0]])).shape == (1, 1)


def test_caption_sampler_widget(lm_and_data):
    from mmcourse.widgets import CaptionSampler

    model, vocab, _ = lm_and_data
    sampler = CaptionSampler(model, vocab, n=5)
    first = list(sampler.samples)
    sampler.prefix.value = "a large"
    assert all(s.startswith("a large") for s in sampler.samples) and sampler.samples != first
    assert sampler.output.value.count("<li>") == 5
    sampler.prefix.value = "a huge"
    assert sampler.samples == [] and "'huge' is not in the vocabulary" in sampler.error
    sampler.prefix.value = ""
    before = list(sampler.samples)
    sampler.resample.click()
    assert sampler.samples != before and sampler.error == ""
