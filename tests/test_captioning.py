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


def test_caption_dataset_draws_every_reference(vocab, data):
    """Each batch pairs an image with one of its own references, drawn afresh each epoch."""
    ds = C.caption_dataset(data.images[:8], data.captions[:8], vocab, batch_size=8, seed=0)
    seen = {i: set() for i in range(8)}
    for _ in range(20):
        (images, inputs), targets = next(iter(ds))
        images, inputs, targets = (np.asarray(t) for t in (images, inputs, targets))
        np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
        for image, words in zip(images, inputs):
            i = next(k for k in range(8) if np.array_equal(data.images[k], image))
            caption = vocab.decode(words)
            assert caption in data.captions[i]
            seen[i].add(caption)
    assert sum(len(s) for s in seen.values()) > 16  # not always the same reference


def test_train_command_writes_a_safe_model_and_metrics(tmp_path, monkeypatch, vocab):
    import json

    monkeypatch.setattr(C, "TRAIN_SIZES", {"quick": (64, 1, 64, 1), "full": (64, 1, 64, 1)})
    metrics = C.train_command(tmp_path, profile="quick", seed=3)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("bleu4", "exact_match", "hallucination_rate", "train_seconds"):
        assert key in saved
    assert 0 <= saved["bleu4"] <= 100 and 0 <= saved["exact_match"] <= 1 and 0 <= saved["hallucination_rate"] <= 1
    model, loaded_vocab = C.load_captioner(tmp_path)
    assert loaded_vocab == vocab and model.fusion == "attention"
    with pytest.raises(FileNotFoundError, match="mmcourse train captioner --out DIR"):
        C.load_captioner(tmp_path / "nothing")


def test_evaluate_agrees_with_the_metrics(model, vocab):
    from mmcourse import metrics

    test = shapes.generate(40, seed=12)
    scores = C.evaluate(model, test, vocab)
    assert scores["bleu4"] == pytest.approx(metrics.corpus_bleu(scores["captions"], test.captions))
    assert scores["exact_match"] == pytest.approx(metrics.exact_match(scores["captions"], test.scenes).mean())
    assert scores["hallucination_rate"] == pytest.approx(1 - scores["precision"]) or scores["precision"] == 0


def test_the_shipped_captioner_meets_its_recorded_metrics(vocab):
    """data/captioner, re-measured on 300 freshly generated images it never saw."""
    import json

    from mmcourse import metrics

    folder = C.shipped_model_dir()
    recorded = json.loads((folder / "metrics.json").read_text())
    model, shipped_vocab = C.load_captioner(folder)
    assert shipped_vocab == vocab
    test = shapes.generate(300, seed=(recorded["seed"], 99))
    captions, _ = C.greedy_decode(model, test.images, shipped_vocab)
    # tolerances: four standard errors of a proportion measured on 300 images (sampling noise, not drift)
    p = recorded["exact_match"]
    assert metrics.exact_match(captions, test.scenes).mean() >= p - 4 * np.sqrt(p * (1 - p) / len(test))
    q = recorded["hallucination_rate"]
    assert metrics.object_scores(captions, test.scenes)["hallucination_rate"] <= q + 4 * np.sqrt(max(q * (1 - q), 0.01) / len(test))
    assert metrics.corpus_bleu(captions, test.captions) >= recorded["bleu4"] - 6.0


def test_the_shipped_captioner_matches_its_checksum(assert_shipped_unchanged):
    assert_shipped_unchanged(C.shipped_model_dir(), (C.MODEL_FILE, C.VOCABULARY_FILE))


def test_grids_computed_beforehand_give_the_same_captions(model, vocab, data):
    """encode() takes images, or the encoder's grids made once beforehand: the same numbers."""
    from mmcourse.models import vision

    grids = vision.encode(model.encoder, data.images[:5], output="grid")
    from_images = [keras.ops.convert_to_numpy(t) for t in model.encode(data.images[:5])]
    from_grids = [keras.ops.convert_to_numpy(t) for t in model.encode(grids)]
    for a, b in zip(from_images, from_grids):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match=r"encoder grids \(n, 8, 8, 16\)"):
        model.encode(np.zeros((2, 8, 8, 5), np.float32))


def test_a_pretrained_encoder_is_copied_and_frozen(vocab, data):
    from mmcourse.models import vision

    encoder, _, _ = vision.pretrain_image_encoder(32, 1, channels=16, seed=0, progress=False)
    model, history, seconds = C.train_captioner(data.images, data.captions, vocab, epochs=2, batch_size=32, channels=16, units=16,
                                                attention_units=8, encoder=encoder, progress=False)
    assert seconds > 0 and history["word_loss"][-1] < history["word_loss"][0]
    assert not model.encoder.trainable
    for mine, theirs in zip(model.encoder.get_weights(), encoder.get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # training the decoder left the encoder as it was


@pytest.mark.parametrize("looks", [1, 2])
def test_one_or_two_looks_per_word(looks, tmp_path, vocab, data):
    m = C.Captioner(len(vocab), channels=8, units=16, attention_units=8, looks=looks)
    inputs, _ = C.teacher_forcing_pairs([c[0] for c in data.captions[:2]], vocab)
    logits, weights = m((data.images[:2], inputs))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weights).sum(-1), 1.0, atol=1e-5)
    assert (m.second_look is not None) == (looks == 2)
    m.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.looks == looks
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded((data.images[:2], inputs))[0]), keras.ops.convert_to_numpy(logits), atol=1e-5)
    with pytest.raises(ValueError, match="looks must be 1 or 2"):
        C.Captioner(len(vocab), looks=3)
