"""The captioner: shapes, masking, decoding, saving, the training command, and the same training
in float32, mixed precision and on two replicas — on models trained for a few steps."""

import dataclasses
import json
import zipfile

import numpy as np
import pytest

import keras
from mmcourse import artifacts, config, device, training
from mmcourse.data import shapes
from mmcourse.models import captioning as C
from mmcourse.models import vision

# The tiny captioner every training test shares: 48 images, batches of 16, 2 passes = 6 steps,
# on the grids of a frozen encoder (the path `mmcourse train captioner` takes), λ = 0.1 so that
# the attention regulariser is part of the loss, on the first 8 words of each caption.
SIZES = dict(channels=8, units=16, attention_units=8, attention_weight=0.1)
EPOCHS, BATCH, WORDS = 2, 16, 8


class StepLosses(keras.callbacks.Callback):
    """The loss Keras reports after every step (a running mean over the pass)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


@pytest.fixture(scope="module")
def vocab():
    return shapes.caption_vocabulary()


@pytest.fixture(scope="module")
def data():
    return shapes.generate(48, seed=11)


@pytest.fixture(scope="module")
def encoder():
    """An image encoder with its initial weights (seeded): the captioner copies and freezes it."""
    with training.seeded(5):
        return vision.build_image_encoder(channels=SIZES["channels"])


def fit(data, vocab, encoder, precision="float32", cpu_replicas=None, build=None, learning_rate=1.0):
    """The decoder built and compiled as ``train_captioner`` does it (in ``device.use``'s strategy
    scope, from a seed, on the frozen encoder's grids), trained with plain SGD (learning rate 1):
    its step is proportional to the gradient, so a gradient twice or half what it should be
    changes the steps (Adam's step is nearly the same for a gradient of any scale: it would
    hide that). ``train_captioner`` itself runs in the command test. ``build(vocab)`` makes
    another captioner (the Transformer's test reuses this)."""
    steps = StepLosses()
    grids = vision.encode(encoder, data.images, output="grid")
    stream = C.caption_dataset(grids, data.captions, vocab, batch_size=BATCH, seed=0, epochs=EPOCHS)
    stream = stream.map(lambda x, y: ((x[0], x[1][:, :WORDS]), y[:, :WORDS]))
    with device.use(precision, cpu_replicas) as run:
        with run.strategy.scope(), training.seeded(0):
            model = build(vocab) if build else C.Captioner(len(vocab), **SIZES)
            model.encoder.set_weights(encoder.get_weights())
            model.encoder.trainable = False
            training.compile(model, keras.optimizers.SGD(learning_rate))
        history = model.fit(stream, epochs=EPOCHS, steps_per_epoch=-(-len(data) // BATCH), verbose=0, shuffle=False, callbacks=[steps])
    return model, history.history, steps, run


@pytest.fixture(scope="module")
def float32_run(data, vocab, encoder):
    """The single-device float32 run the other precisions and replica counts are compared with."""
    return fit(data, vocab, encoder)


@pytest.fixture(scope="module")
def model(float32_run):
    return float32_run[0]


def test_teacher_forcing_pairs_shift_by_one(vocab):
    inputs, targets = C.teacher_forcing_pairs(["a small red circle"], vocab)
    assert vocab.decode(inputs[0], strip=False).split()[:7] == ["<start>", "a", "small", "red", "circle", "<end>", "<pad>"]
    assert vocab.decode(targets[0], strip=False).split()[:5] == ["a", "small", "red", "circle", "<end>"]
    np.testing.assert_array_equal(inputs[0, 1:], targets[0, :-1])


@pytest.mark.parametrize("fusion", C.FUSIONS)
def test_each_fusion_gives_logits_and_attention(fusion, vocab, data):
    with training.seeded(0):
        m = C.Captioner(len(vocab), fusion=fusion, channels=8, units=16, attention_units=8)
    inputs, targets = C.teacher_forcing_pairs([c[0] for c in data.captions[:3]], vocab)
    logits, weights = m((data.images[:3], inputs))
    assert tuple(logits.shape) == (3, C.CAPTION_LENGTH - 1, len(vocab)) and tuple(weights.shape) == (3, C.CAPTION_LENGTH - 1, 64)
    w = keras.ops.convert_to_numpy(weights)
    if fusion == "attention":
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
    else:
        assert not w.any()
    # call runs the decoder as a loop in the graph: the same numbers as calling step word by word
    grid, pooled, state = m.encode(data.images[:3])
    for t in range(inputs.shape[1]):
        step_logits, state, alpha = m.step(inputs[:, t], state, grid, pooled)
        np.testing.assert_allclose(logits[:, t], step_logits, atol=1e-5)
        np.testing.assert_allclose(w[:, t], alpha, atol=1e-6)
    # an untrained model's word loss is about log(vocabulary size): every word equally likely
    assert float(m._loss_terms(data.images[:3], inputs, targets)[1]) == pytest.approx(np.log(len(vocab)), rel=0.1)


def test_padding_does_not_change_the_loss(model, vocab, data):
    """Targets after <end> are padding: changing the logits there must not change the loss."""
    inputs, targets = C.teacher_forcing_pairs(["a small red circle"] * 2, vocab)
    images = data.images[:2]
    loss, word_loss, _ = model._loss_terms(images, inputs, targets, training=False)
    logits, alphas = (keras.ops.convert_to_numpy(t) for t in model((images, inputs)))
    mask = targets != 0
    per_word = keras.ops.convert_to_numpy(keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True))
    assert float(word_loss) == pytest.approx(per_word[mask].mean(), rel=1e-5)
    seen = (alphas * mask[..., None]).sum(axis=1)  # the attention regulariser, by hand
    assert float(loss) == pytest.approx(per_word[mask].mean() + 0.1 * ((1 - seen) ** 2).sum(-1).mean() / 64, rel=1e-5)


def test_mixed_precision_trains_like_float32(float32_run, data, vocab, encoder, tmp_path):
    """Under mixed_float16 the decoder computes in float16 (logits and the loss in float32): the
    same seed gives the same per-step losses up to float16 rounding. Tolerance 0.01 (absolute,
    on losses about 3.3): float16 keeps 11 significant bits, about 5e-4 relative per rounding;
    measured ≤ 2e-5. This decoder's gradients fit float16 at Keras's first loss scale (2^15), so
    no step is skipped and the runs stay in step."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, encoder, precision="mixed")
    assert run.precision == "mixed_float16" and model.dtype_policy.name == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert history["loss"][-1] < history["loss"][0] and expected["loss"][-1] < expected["loss"][0]
    np.testing.assert_allclose(steps.losses, expected_steps.losses, atol=0.01)
    np.testing.assert_allclose(history["word_loss"], expected["word_loss"], atol=0.01)
    # saved and loaded where the global policy is float32, it computes as it trained: in float16
    C.save(model, vocab, tmp_path)
    loaded, _ = C.load(tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert loaded.dtype_policy.name == loaded.cell.dtype_policy.name == loaded.encoder.layers[1].dtype_policy.name == "mixed_float16"
    assert loaded.classifier.dtype_policy.name == "float32"  # the logits
    assert C.greedy_decode(loaded, data.images[:4], vocab)[0] == C.greedy_decode(model, data.images[:4], vocab)[0]


def test_two_replicas_train_like_one_device(float32_run, data, vocab, encoder):
    """Two CPU replicas, each with half of every batch: the loss is the masked mean over the
    words of the *global* batch (per-caption sums gathered from both replicas), so it is the
    one-device loss, and the gradients summed across replicas are the one-device gradients.
    Nothing random happens inside a step (the captions are drawn in the data pipeline, before
    the batch is split), so 6 SGD steps agree up to the order of float32 sums: rtol 1e-5
    (measured identical to 6 decimals). Without replica_share (gradients summed, not averaged)
    every reported loss doubles and the steps double."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, encoder, cpu_replicas=2)
    assert run.replicas == 2 and model.distribute_strategy.num_replicas_in_sync == 2
    np.testing.assert_allclose(steps.losses, expected_steps.losses, rtol=1e-5)
    for key in ("loss", "word_loss", "word_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)


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


def test_saves_without_optimizer_and_loads_safely(tmp_path, model, vocab, data):
    C.save(model, vocab, tmp_path)
    with zipfile.ZipFile(tmp_path / C.MODEL_FILE) as archive:
        assert "optimizer" not in archive.read("model.weights.h5").decode("latin-1")  # no Adam moments
    loaded, loaded_vocab = C.load(tmp_path)
    assert loaded_vocab == vocab and not loaded.compiled
    assert C.greedy_decode(loaded, data.images[:3], vocab)[0] == C.greedy_decode(model, data.images[:3], vocab)[0]
    with pytest.raises(FileNotFoundError, match="mmcourse train captioner --out DIR"):
        C.load(tmp_path / "nothing")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="fusion must be one of inject, merge, attention"):
        C.Captioner(30, fusion="late")
    # (train_command's checks: tests/test_train_commands.py)


def test_caption_dataset_draws_every_reference(vocab, data):
    """Each batch pairs an image with one of its own references, drawn afresh at every step;
    every pass visits every image once, in its own order."""
    passes = 20
    ds = C.caption_dataset(data.images[:8], data.captions[:8], vocab, batch_size=5, seed=0, epochs=passes)
    batches = list(ds)
    assert [len(b[1]) for b in batches] == [5, 3] * passes  # ⌈8 / 5⌉ batches a pass, the last one smaller
    seen, orders = {i: set() for i in range(8)}, set()
    for p in range(passes):
        order = []
        for (images, inputs), targets in batches[2 * p : 2 * p + 2]:
            images, inputs, targets = (np.asarray(t) for t in (images, inputs, targets))
            np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
            for image, words in zip(images, inputs):
                i = next(k for k in range(8) if np.array_equal(data.images[k], image))
                caption = vocab.decode(words)
                assert caption in data.captions[i]
                seen[i].add(caption)
                order.append(i)
        assert sorted(order) == list(range(8))
        orders.add(tuple(order))
    assert sum(len(s) for s in seen.values()) > 16 and len(orders) > 1  # not always the same reference, nor order
    again = list(C.caption_dataset(data.images[:8], data.captions[:8], vocab, batch_size=5, seed=0, epochs=passes))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again))  # a function of the seed


def test_train_command_writes_what_it_measured(tmp_path, monkeypatch, vocab):
    """`mmcourse train captioner` on a tiny budget: metrics.json in the shared schema; the model,
    reloaded, holds the pre-trained encoder unchanged (frozen while the decoder trained) and gives
    the exact match metrics.json says (same test split). (Float32: the same command in mixed
    precision takes twice as long on a CPU; the mixed path is tested above.)"""
    monkeypatch.setattr(C, "TRAIN_SIZES", {"quick": (32, 1, 32, 1), "full": (32, 1, 32, 1)})
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=16))
    pretrained, real = [], vision.pretrain_image_encoder

    def pretrain(*args, **kwargs):  # the real one, keeping the encoder it returns
        pretrained.append(real(*args, **kwargs))
        return pretrained[-1]

    monkeypatch.setattr(vision, "pretrain_image_encoder", pretrain)
    metrics = C.train_command(tmp_path, profile="quick", seed=3, precision="float32", progress=False)
    saved = artifacts.read_metrics(tmp_path)
    assert saved == json.loads(json.dumps(metrics))
    assert list(saved)[:9] == ["profile", "seed", "test_seed", "train_seconds", "precision", "replicas", "device", "versions", "command"]
    assert (saved["profile"], saved["seed"], saved["test_seed"], saved["precision"], saved["replicas"]) == ("quick", 3, [3, 2], "float32", 1)
    assert saved["train_seconds"] == pytest.approx(saved["encoder_seconds"] + saved["decoder_seconds"])
    assert saved["encoder_seconds"] == pretrained[0][2]
    assert saved["test_images"] == 16 and saved["fusion"] == "attention" and np.isfinite(saved["final_loss"])
    model, loaded_vocab = C.load(tmp_path)  # checked against the SHA256 the command wrote
    assert loaded_vocab == vocab and model.fusion == "attention" and not model.compiled
    for mine, theirs in zip(model.encoder.get_weights(), pretrained[0][0].get_weights()):
        np.testing.assert_array_equal(mine, theirs)  # training the decoder left the encoder as it was
    test = shapes.generate(16, seed=(3, 2))
    assert C.evaluate(model, test, loaded_vocab)["exact_match"] == saved["exact_match"]


def test_evaluate_agrees_with_the_metrics(model, vocab):
    from mmcourse import metrics

    test = shapes.generate(40, seed=12)
    scores = C.evaluate(model, test, vocab)
    assert scores["bleu4"] == pytest.approx(metrics.corpus_bleu(scores["captions"], test.captions))
    assert scores["exact_match"] == pytest.approx(metrics.exact_match(scores["captions"], test.scenes).mean())
    assert scores["hallucination_rate"] == pytest.approx(1 - scores["object_precision"]) or scores["object_precision"] == 0


SHIPPED = {"captioner": "gru", "transformer_captioner": "transformer"}  # data/<name>: its decoder


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_captioner_meets_its_recorded_metrics(vocab, name):
    """data/<name> (checksums verified by load()), re-measured on the 1,000 test images its
    metrics.json was measured on. Measured identical after re-saving; tolerance one caption in
    1,000 (a near-tie between two words could go the other way on another CPU)."""
    recorded = artifacts.read_metrics(config.shipped_dir(name))
    assert (recorded["precision"], recorded["replicas"], recorded["profile"]) == ("float32", 1, "full")
    model, shipped_vocab = C.load(decoder=SHIPPED[name])
    assert shipped_vocab == vocab and not model.compiled and model.decoder == SHIPPED[name]
    test = shapes.generate(recorded["test_images"], seed=tuple(recorded["test_seed"]))
    scores = C.evaluate(model, test, shipped_vocab)
    for key in ("exact_match", "hallucination_rate", "object_recall"):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-3), key
    assert scores["bleu4"] == pytest.approx(recorded["bleu4"], abs=0.1)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_captioner_matches_its_checksum(assert_shipped_unchanged, name):
    folder = config.shipped_dir(name)
    assert_shipped_unchanged(folder, (C.MODEL_FILE, C.VOCABULARY_FILE))
    assert artifacts.verify(folder, name) == folder


def test_grids_computed_beforehand_give_the_same_captions(model, vocab, data):
    """encode() takes images, or the encoder's grids made once beforehand: the same numbers."""
    grids = vision.encode(model.encoder, data.images[:5], output="grid")
    from_images = [keras.ops.convert_to_numpy(t) for t in model.encode(data.images[:5])]
    from_grids = [keras.ops.convert_to_numpy(t) for t in model.encode(grids)]
    for a, b in zip(from_images, from_grids):
        np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match=r"encoder grids \(n, 8, 8, 8\)"):
        model.encode(np.zeros((2, 8, 8, 5), np.float32))


@pytest.mark.parametrize("looks", [1, 2])
def test_one_or_two_looks_per_word(looks, tmp_path, vocab, data):
    with training.seeded(0):
        m = C.Captioner(len(vocab), channels=8, units=16, attention_units=8, looks=looks)
    inputs, _ = C.teacher_forcing_pairs([c[0] for c in data.captions[:2]], vocab)
    logits, weights = m((data.images[:2], inputs))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(weights).sum(-1), 1.0, atol=1e-5)
    assert (m.second_look is not None) == (looks == 2)
    C.save(m, vocab, tmp_path)
    loaded, _ = C.load(tmp_path)
    assert loaded.looks == looks
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded((data.images[:2], inputs))[0]), keras.ops.convert_to_numpy(logits), atol=1e-5)
    with pytest.raises(ValueError, match="looks must be 1 or 2"):
        C.Captioner(len(vocab), looks=3)
