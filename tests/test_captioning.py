"""The captioner: shapes, masking, decoding, saving — on a model trained for seconds."""

import numpy as np
import pytest

import keras
from mmcourse.data import shapes
from mmcourse.models import captioning as C


@pytest.fixture(scope="module")
def vocab():
    return C.caption_vocabulary()


@pytest.fixture(scope="module")
def data():
    return shapes.generate(96, seed=11)


@pytest.fixture(scope="module")
def model(vocab, data):
    keras.utils.set_random_seed(0)
    m = C.Captioner(len(vocab), fusion="attention", channels=16, units=32, attention_units=16)
    m.compile(keras.optimizers.Adam(3e-3))
    inputs, targets = C.teacher_forcing_pairs([c[0] for c in data.captions], vocab)
    m.fit((data.images, inputs), targets, epochs=2, batch_size=32, verbose=0)
    return m


def test_teacher_forcing_pairs_shift_by_one(vocab):
    inputs, targets = C.teacher_forcing_pairs(["a small red circle"], vocab)
    assert vocab.decode(inputs[0], strip=False).split()[:7] == ["<start>", "a", "small", "red", "circle", "<end>", "<pad>"]
    assert vocab.decode(targets[0], strip=False).split()[:5] == ["a", "small", "red", "circle", "<end>"]
    np.testing.assert_array_equal(inputs[0, 1:], targets[0, :-1])


@pytest.mark.parametrize("fusion", C.FUSIONS)
def test_each_fusion_gives_logits_and_attention(fusion, vocab, data):
    m = C.Captioner(len(vocab), fusion=fusion, channels=8, units=16, attention_units=8)
    inputs, _ = C.teacher_forcing_pairs([c[0] for c in data.captions[:3]], vocab)
    logits, weights = m((data.images[:3], inputs))
    assert tuple(logits.shape) == (3, C.CAPTION_LENGTH - 1, len(vocab)) and tuple(weights.shape) == (3, C.CAPTION_LENGTH - 1, 64)
    w = keras.ops.convert_to_numpy(weights)
    if fusion == "attention":
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    else:
        assert not w.any()


def test_padding_does_not_change_the_loss(model, vocab, data):
    """Targets after <end> are padding: changing the logits there must not change the loss."""
    inputs, targets = C.teacher_forcing_pairs(["a small red circle"] * 2, vocab)
    images = data.images[:2]
    _, word_loss, _ = model._loss_terms(images, inputs, targets, training=False)
    logits, _ = model((images, inputs))
    mask = targets != 0
    per_word = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
    assert float(word_loss) == pytest.approx(per_word[mask].mean(), rel=1e-5)


def test_training_lowers_the_loss(vocab, data):
    keras.utils.set_random_seed(1)
    m = C.Captioner(len(vocab), fusion="merge", channels=8, units=16)
    m.compile(keras.optimizers.Adam(3e-3))
    inputs, targets = C.teacher_forcing_pairs([c[0] for c in data.captions], vocab)
    history = m.fit((data.images, inputs), targets, epochs=3, batch_size=32, verbose=0).history
    assert history["word_loss"][-1] < history["word_loss"][0]


def test_greedy_and_beam_decoding(model, vocab, data):
    captions, maps = C.greedy_decode(model, data.images[:4], vocab)
    assert len(captions) == 4 and all(isinstance(c, str) for c in captions)
    for caption, m in zip(captions, maps):
        assert m.shape == (min(len(caption.split()) + 1, C.CAPTION_LENGTH - 1), 8, 8)
        np.testing.assert_allclose(m.sum(axis=(1, 2)), 1.0, atol=1e-5)
    # beam width 1 is greedy decoding
    for i in range(4):
        caption, m, log_p = C.beam_search(model, data.images[i], vocab, beam_width=1)
        assert caption == captions[i]
    # a wider beam never finds a less likely caption than greedy
    for i in range(4):
        _, _, greedy_lp = C.beam_search(model, data.images[i], vocab, beam_width=1)
        _, _, wide_lp = C.beam_search(model, data.images[i], vocab, beam_width=4)
        assert wide_lp >= greedy_lp - 1e-5
    with pytest.raises(ValueError, match="beam_width"):
        C.beam_search(model, data.images[0], vocab, beam_width=0)


def test_saves_and_loads_safely(tmp_path, model, vocab, data):
    path = tmp_path / "captioner.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert C.greedy_decode(loaded, data.images[:3], vocab)[0] == C.greedy_decode(model, data.images[:3], vocab)[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="fusion must be one of inject, merge, attention"):
        C.Captioner(30, fusion="late")
