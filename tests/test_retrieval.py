"""The dual encoder: InfoNCE against numpy, the clipped learnable temperature, truth codes against
is_true_of, towers, search, saving, the training command, and the same training in float32,
mixed precision and on two replicas — on models trained for a few steps."""

import dataclasses
import zipfile

import numpy as np
import pytest
from scipy.special import log_softmax

import keras
from mmcourse import artifacts, cli, config, device, training
from mmcourse.data import shapes
from mmcourse.models import retrieval as R

# The tiny dual encoder every training test shares: 48 images and their 48 twins, batches of
# 16 (8 pairs), 2 passes = 12 steps, with semantic positives and hard negatives.
SIZES = dict(channels=8, dim=16, embed_dim=8, units=16)
EPOCHS, BATCH = 2, 16


class StepLosses(keras.callbacks.Callback):
    """The loss Keras reports after every step (a running mean over the pass) and how many steps
    the optimizer has applied (a loss-scaling optimizer skips the steps whose gradients overflow)."""

    def __init__(self):
        super().__init__()
        self.losses, self.applied = [], []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))
        self.applied.append(int(self.model.optimizer.iterations.numpy()))


@pytest.fixture(scope="module")
def vocab():
    return shapes.caption_vocabulary()


@pytest.fixture(scope="module")
def data():
    return shapes.generate(48, seed=21)


def fit(data, vocab, precision="float32", cpu_replicas=None):
    """The dual encoder built and compiled as ``train_dual_encoder`` does it (in ``device.use``'s
    strategy scope, from a seed), trained with plain SGD (learning rate 1): its step is
    proportional to the gradient, so a gradient twice or half what it should be changes the
    steps. (Adam's step is nearly the same for a gradient of any scale, and for gradients near
    zero its first step is ± the learning rate whichever way float32 rounding tips them: it
    hides the first error and amplifies rounding.) ``train_dual_encoder`` itself runs in the
    command test."""
    steps = StepLosses()
    stream = R.retrieval_dataset(data, vocab, batch_size=BATCH, seed=0, twins=True, epochs=EPOCHS)
    with device.use(precision, cpu_replicas) as run:
        with run.strategy.scope(), training.seeded(0):
            model = R.DualEncoder(len(vocab), **SIZES)
            training.compile(model, keras.optimizers.SGD(1.0))
        history = model.fit(stream, epochs=EPOCHS, steps_per_epoch=2 * len(data) // BATCH, verbose=0, shuffle=False, callbacks=[steps])
    return model, history.history, steps, run


@pytest.fixture(scope="module")
def float32_run(vocab, data):
    """The single-device float32 run the other precisions and replica counts are compared with."""
    return fit(data, vocab)


@pytest.fixture(scope="module")
def trained(float32_run):
    return float32_run[:2]


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def numpy_info_nce(x, y, scale, positives):
    """Written out term by term: for image i, −Σ_j q_ij log(exp z_ij / Σ_k exp z_ik); the same per caption."""
    z = scale * x @ y.T
    B = len(z)
    image_terms = [-sum(positives[i, j] / positives[i].sum() * (z[i, j] - np.log(np.exp(z[i]).sum())) for j in range(B)) for i in range(B)]
    text_terms = [-sum(positives[i, j] / positives[:, j].sum() * (z[i, j] - np.log(np.exp(z[:, j]).sum())) for i in range(B)) for j in range(B)]
    return 0.5 * (np.mean(image_terms) + np.mean(text_terms))


@pytest.mark.parametrize("seed", range(3))
def test_info_nce_matches_numpy(seed):
    rng = np.random.default_rng(seed)
    x, y = unit(rng.normal(size=(7, 5))), unit(rng.normal(size=(7, 5)))
    scale = float(rng.uniform(1, 30))
    loss, logits = R.info_nce_loss(x, y, scale)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(logits), scale * x @ y.T, rtol=1e-5, atol=1e-5)
    assert float(loss) == pytest.approx(numpy_info_nce(x, y, scale, np.eye(7)), rel=1e-5)
    positives = np.eye(7, dtype=bool) | (rng.random((7, 7)) < 0.3)
    loss, _ = R.info_nce_loss(x, y, scale, positives)
    assert float(loss) == pytest.approx(numpy_info_nce(x, y, scale, positives.astype(float)), rel=1e-5)


def test_info_nce_is_clips_cross_entropy_both_ways():
    """Against Keras's cross-entropy and scipy's log-softmax: "which caption is mine", "which image is mine"."""
    rng = np.random.default_rng(5)
    x, y = unit(rng.normal(size=(6, 4))), unit(rng.normal(size=(6, 4)))
    z = 10.0 * x @ y.T
    labels = np.arange(6)
    keras_loss = 0.5 * (keras.losses.sparse_categorical_crossentropy(labels, z, from_logits=True).numpy().mean()
                        + keras.losses.sparse_categorical_crossentropy(labels, z.T, from_logits=True).numpy().mean())
    scipy_loss = -0.5 * (np.diag(log_softmax(z, axis=1)).mean() + np.diag(log_softmax(z, axis=0)).mean())
    loss, _ = R.info_nce_loss(x, y, 10.0)
    assert float(loss) == pytest.approx(keras_loss, rel=1e-5) and float(loss) == pytest.approx(scipy_loss, rel=1e-5)


def test_logit_scale_starts_at_clip_value_and_is_clipped():
    layer = R.LogitScale()
    assert float(layer(None)) == pytest.approx(1 / 0.07, rel=1e-5) and layer.temperature == pytest.approx(0.07, rel=1e-5)
    layer.t.assign(10.0)  # exp(10) ≈ 22026, beyond the clip
    assert float(layer(None)) == pytest.approx(100.0, rel=1e-5)
    # after an optimiser step that pushes t up, the constraint brings it back to log 100
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(-50.0), layer.t)])
    assert float(layer.t.numpy()) == pytest.approx(np.log(100), rel=1e-6)
    clone = R.LogitScale.from_config(layer.get_config())
    assert clone.initial_temperature == 0.07 and clone.max_scale == 100.0
    with pytest.raises(ValueError, match="initial_temperature"):
        R.LogitScale(initial_temperature=0.001)


def test_truth_matrix_is_is_true_of():
    data = shapes.generate(60, seed=8)
    captions = [c for caps in data.captions for c in caps[:2]] + ["a small red circle", "a large green square below a small blue circle"]
    truth = keras.ops.convert_to_numpy(R.truth_matrix(R.meaning_codes(captions), R.meaning_codes(data.scenes)))
    expected = np.array([[shapes.parse_caption(c).is_true_of(s) for s in data.scenes] for c in captions])
    np.testing.assert_array_equal(truth, expected)


def test_meaning_codes_are_canonical():
    codes = R.meaning_codes(["a small red circle left of a large blue square", "there is a large blue square right of a small red circle",
                             "a small red circle", "a small red circle above a large blue square"])
    assert (codes[0] == codes[1]).all() and codes[2, 1] == codes[2, 2] == -1 and codes[3, 1] == 1 and codes[0, 1] == 0


def test_encode_captions_and_its_errors(vocab):
    tokens = R.encode_captions(["a small red circle"], vocab)
    assert tokens.shape == (1, R.TEXT_LENGTH) and (tokens[0, 4:] == 0).all() and vocab.decode(tokens[0]) == "a small red circle"
    with pytest.raises(ValueError, match="unknown word 'hexagon'"):
        R.encode_captions(["a small red hexagon"], vocab)
    with pytest.raises(TypeError, match="wrap a single caption in a list"):
        R.encode_captions("a small red circle", vocab)
    with pytest.raises(ValueError, match="at most 13"):
        R.encode_captions(["a small red circle " * 4], vocab)


def test_towers_give_unit_vectors_and_mean_is_a_bag_of_words(vocab, data):
    sentences = ["a small red circle left of a large blue square", "a large blue square left of a small red circle"]
    # Seeded: a tower this small (two ReLU layers, 16 and 32 units) is, for an unlucky draw of
    # weights, all zeros before the projection, and a zero vector has no unit direction.
    for kind in R.TEXT_ENCODERS:
        with training.seeded(0):
            model = R.DualEncoder(len(vocab), text_encoder=kind, channels=8, dim=12, embed_dim=8, units=16)
        x, y = model((data.images[:3], R.encode_captions(sentences, vocab)))
        assert tuple(x.shape) == (3, 12) and tuple(y.shape) == (2, 12)
        np.testing.assert_allclose(np.linalg.norm(keras.ops.convert_to_numpy(x), axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(keras.ops.convert_to_numpy(y), axis=1), 1, atol=1e-5)
        y = keras.ops.convert_to_numpy(y)
        same = np.allclose(y[0], y[1], atol=1e-6)
        assert same == (kind == "mean")  # the same words in another order: only the GRU can tell
    with pytest.raises(ValueError, match="text_encoder must be one of gru, mean"):
        R.DualEncoder(len(vocab), text_encoder="lstm")


def test_padding_does_not_change_the_text_embedding(trained, vocab):
    model, _ = trained
    tokens = R.encode_captions(["a large green triangle"], vocab)
    short = keras.ops.convert_to_numpy(model.embed_texts(tokens[:, :4]))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.embed_texts(tokens)), short, atol=1e-5)


def test_training_lowers_the_loss_and_tracks_the_temperature(trained):
    _, history = trained
    assert history["loss"][-1] < history["loss"][0]
    assert all(0.01 <= t <= 1 for t in history["temperature"]) and history["temperature"][-1] != R.INITIAL_TEMPERATURE
    assert all(0 <= a <= 1 for a in history["accuracy"])


def test_the_loss_of_a_batch_is_info_nce_with_positives_and_hard_negatives(trained, vocab, data):
    """compute_loss on one batch, against info_nce_loss fed the towers' vectors and the truth
    matrices: the loss Keras trains is the loss of the docstring."""
    model, _ = trained
    (images, tokens, negative_tokens), (ccodes, scodes, ncodes) = next(iter(R.retrieval_dataset(data, vocab, batch_size=16, seed=4)))
    y_pred = model((images, tokens, negative_tokens))
    assert len(y_pred) == 3 and len(model((images, tokens))) == 2  # the negatives' vectors only when asked for
    loss = float(model.compute_loss(y=(ccodes, scodes, ncodes), y_pred=y_pred, training=False))
    x, y, n = (keras.ops.convert_to_numpy(t) for t in y_pred)
    positives = keras.ops.convert_to_numpy(R.truth_matrix(ccodes, scodes)).T
    negative_positives = keras.ops.convert_to_numpy(R.truth_matrix(ncodes, scodes)).T
    scale = 1 / model.logit_scale.temperature
    assert loss == pytest.approx(numpy_info_nce_with_negatives(x, y, n, scale, positives, negative_positives), rel=1e-4)


def test_mixed_precision_trains_like_float32(float32_run, vocab, data, tmp_path):
    """Under mixed_float16 the towers compute in float16 (unit vectors, temperature and loss in
    float32). Before any step the two models are the same weights, so the first loss agrees up
    to float16 rounding (rtol 5e-3: 11 significant bits, rounded at every layer; measured
    6e-4). Keras's loss-scaling optimizer then skips the first steps while it halves its scale
    from 2^15 until the CNN's gradients fit float16 (measured: 5 of 12), so the mixed model lags
    by those steps; by the second pass both have settled and their losses agree within 0.05
    (measured: 0.003, on losses near 3.1)."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, precision="mixed")
    assert run.precision == "mixed_float16" and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert steps.losses[0] == pytest.approx(expected_steps.losses[0], rel=5e-3)
    skipped = len(steps.applied) - steps.applied[-1]
    assert 0 < skipped <= len(steps.applied) // 2  # some skipped while the scale was found, the rest applied
    assert history["loss"][-1] < history["loss"][0] and all(np.isfinite(w).all() for w in model.get_weights())
    assert history["loss"][-1] == pytest.approx(expected["loss"][-1], abs=0.05)
    # saved and loaded where the global policy is float32, it computes as it trained: in float16
    R.save(model, vocab, tmp_path)
    loaded, _ = R.load(tmp_path)
    assert keras.mixed_precision.global_policy().name == "float32"
    assert loaded.reader.dtype_policy.name == loaded.image_encoder.layers[1].dtype_policy.name == "mixed_float16"
    assert loaded.unit.dtype_policy.name == loaded.logit_scale.dtype_policy.name == "float32"
    np.testing.assert_array_equal(R.embed_images(loaded, data.images[:4]), R.embed_images(model, data.images[:4]))


def test_two_replicas_train_like_one_device(float32_run, vocab, data):
    """Two CPU replicas, each with half of every batch (an image and its twin may land on
    different replicas): the loss gathers image, caption and hard-negative vectors and their
    meaning codes from both replicas, so each replica computes the contrastive loss of the whole
    batch and the summed gradients are the one-device gradients; batch normalisation is
    synchronized. Nothing random happens inside a step, so 12 SGD steps agree up to the order
    of float32 sums: rtol 1e-4 (measured 7e-6). Without replica_share (gradients summed, not
    averaged) every reported loss doubles and the steps double; each replica contrasting only
    its own half would change the first loss by about log 2."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, cpu_replicas=2)
    assert run.replicas == 2 and model.distribute_strategy.num_replicas_in_sync == 2
    np.testing.assert_allclose(steps.losses, expected_steps.losses, rtol=1e-4)
    for key in ("loss", "accuracy", "temperature"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-4, err_msg=key)


def test_search_is_brute_force_top_k():
    rng = np.random.default_rng(2)
    q, items = unit(rng.normal(size=(3, 6))), unit(rng.normal(size=(20, 6)))
    index, sim = R.search(q, items, k=4)
    for row in range(3):
        expected = np.argsort([-(q[row] @ v) for v in items])[:4]
        np.testing.assert_array_equal(index[row], expected)
        np.testing.assert_allclose(sim[row], items[expected] @ q[row], atol=1e-12)
    with pytest.raises(ValueError, match="between 1 and the number of items"):
        R.search(q, items, k=21)
    with pytest.raises(ValueError, match="same model"):
        R.search(q[:, :5], items)


def test_modality_gap_is_the_distance_between_centres():
    x, y = np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[-1.0, 0.0], [0.0, -1.0]])
    assert R.modality_gap(x, y) == pytest.approx(np.sqrt(2.0))
    assert R.modality_gap(x, x) == 0.0


def test_zero_shot_picks_one_of_36_prompts(trained, vocab):
    model, _ = trained
    prompts, parts = R.zero_shot_prompts()
    assert len(prompts) == 36 == len(set(prompts))
    images = shapes.generate(5, seed=2, objects=(1,)).images
    out = R.zero_shot_classify(model, images, vocab)
    x, t = R.embed_images(model, images), R.embed_captions(model, prompts, vocab)
    np.testing.assert_array_equal(out["prompt"], (x @ t.T).argmax(axis=1))
    assert [parts[p][1] for p in out["prompt"]] == list(out["colour"])


def test_save_and_load(trained, vocab, data, tmp_path):
    model, _ = trained
    R.save(model, vocab, tmp_path)
    with zipfile.ZipFile(tmp_path / R.MODEL_FILE) as archive:
        assert "optimizer" not in archive.read("model.weights.h5").decode("latin-1")  # no Adam moments
    loaded, loaded_vocab = R.load(tmp_path)
    assert loaded_vocab == vocab and loaded.text_encoder == "gru" and not loaded.compiled
    np.testing.assert_allclose(R.embed_images(loaded, data.images[:4]), R.embed_images(model, data.images[:4]), atol=1e-5)
    assert loaded.logit_scale.temperature == pytest.approx(model.logit_scale.temperature)
    with pytest.raises(FileNotFoundError, match="mmcourse train retrieval"):
        R.load(tmp_path / "nowhere")


def test_evaluate_and_train_command(monkeypatch, tmp_path, capsys):
    """`mmcourse train retrieval` end to end (train_dual_encoder with Adam and its cosine steps);
    the model it saved, reloaded, gives the Recall@K it wrote."""
    monkeypatch.setattr(R, "TRAIN_SIZES", {"quick": (64, 1), "full": (64, 1)})
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=30))
    assert cli.main(["train", "retrieval", "--profile", "quick", "--out", str(tmp_path), "--seed", "3", "--precision", "float32"]) == 0
    metrics = artifacts.read_metrics(tmp_path)
    assert list(metrics)[:9] == ["profile", "seed", "test_seed", "train_seconds", "precision", "replicas", "device", "versions", "command"]
    assert (metrics["seed"], metrics["test_seed"], metrics["precision"], metrics["replicas"]) == (3, [3, 2], "float32", 1)
    assert metrics["train_seconds"] > 0 and metrics["test_images"] == 30 and metrics["batch_size"] == R.BATCH_SIZE
    # a semantic hit includes the instance hit: never lower
    assert all(metrics[f"semantic_recall@{k}_{w}"] >= metrics[f"recall@{k}_{w}"] for k in (1, 5, 10) for w in ("t2i", "i2t"))
    assert "Recall@1/5/10" in capsys.readouterr().out
    model, vocabulary = R.load(tmp_path)  # checked against the SHA256 the command wrote
    measured = R.evaluate(model, shapes.generate(30, seed=(3, 2)), vocabulary)
    assert measured["semantic_recall@1_t2i"] == metrics["semantic_recall@1_t2i"]


def numpy_info_nce_with_negatives(x, y, n, scale, positives, negative_positives):
    """Each image chooses among the B captions and the K hard negatives; each caption among the B images."""
    z, zn = scale * x @ y.T, scale * x @ n.T
    B = len(z)
    image_terms = []
    for i in range(B):
        row, target = np.concatenate([z[i], zn[i]]), np.concatenate([positives[i], negative_positives[i]]).astype(float)
        image_terms.append(-(target / target.sum() * (row - np.log(np.exp(row).sum()))).sum())
    text_terms = [-sum(positives[i, j] / positives[:, j].sum() * (z[i, j] - np.log(np.exp(z[:, j]).sum())) for i in range(B)) for j in range(B)]
    return 0.5 * (np.mean(image_terms) + np.mean(text_terms))


def test_info_nce_with_hard_negatives_matches_numpy():
    rng = np.random.default_rng(7)
    x, y, n = unit(rng.normal(size=(6, 5))), unit(rng.normal(size=(6, 5))), unit(rng.normal(size=(6, 5)))
    positives = np.eye(6, dtype=bool) | (rng.random((6, 6)) < 0.2)
    negative_positives = rng.random((6, 6)) < 0.1
    loss, _ = R.info_nce_loss(x, y, 12.0, positives, n, negative_positives)
    assert float(loss) == pytest.approx(numpy_info_nce_with_negatives(x, y, n, 12.0, positives, negative_positives), rel=1e-5)
    loss, _ = R.info_nce_loss(x, y, 12.0, None, n)  # no positives given: the diagonal, and no negative is true
    assert float(loss) == pytest.approx(numpy_info_nce_with_negatives(x, y, n, 12.0, np.eye(6), np.zeros((6, 6))), rel=1e-5)
    # negatives that copy the captions double every image's softmax denominator: the image term grows by log 2
    loss_plain, _ = R.info_nce_loss(x, y, 12.0)
    loss_twin, _ = R.info_nce_loss(x, y, 12.0, None, y)
    assert float(loss_twin) == pytest.approx(float(loss_plain) + 0.5 * np.log(2), rel=1e-5)


def test_hard_negatives_say_almost_the_same_and_are_false():
    rng = np.random.default_rng(0)
    data = shapes.generate(80, seed=12)
    for caps, scene in zip(data.captions, data.scenes):
        for caption in caps:
            negative = R.hard_negative(caption, rng)
            parse, original = shapes.parse_caption(negative), shapes.parse_caption(caption)  # still in the grammar
            assert parse.prefix == original.prefix and len(parse.objects) == len(original.objects)
            identical = len(scene.objects) == 2 and scene.objects[0].phrase == scene.objects[1].phrase
            if not identical:
                assert not parse.is_true_of(scene), (caption, negative)
            if original.relation is not None:
                assert parse.objects == original.objects and parse.relation != original.relation
            else:
                assert sum(a != b for a, b in zip(parse.objects[0], original.objects[0])) == 1


def test_dataset_batches_carry_codes_that_agree_with_the_captions(vocab, data):
    stream = R.retrieval_dataset(data, vocab, batch_size=16, seed=1)
    (images, tokens, ntokens), (ccodes, scodes, ncodes) = next(iter(stream))
    images, tokens, ccodes, scodes, ntokens, ncodes = (np.asarray(t) for t in (images, tokens, ccodes, scodes, ntokens, ncodes))
    assert images.shape == (16, 64, 64, 3) and images.dtype == np.uint8 and tokens.shape == ntokens.shape == (16, R.TEXT_LENGTH)
    captions = [vocab.decode(t) for t in tokens]
    np.testing.assert_array_equal(ccodes, R.meaning_codes(captions))
    np.testing.assert_array_equal(ncodes, R.meaning_codes([vocab.decode(t) for t in ntokens]))
    for caption, s in zip(captions, scodes):  # each caption is one of its image's references
        i = next(i for i, caps in enumerate(data.captions) if caption in caps and (R.meaning_codes([data.scenes[i]])[0] == s).all())
        assert shapes.parse_caption(caption).is_true_of(data.scenes[i])
    with pytest.raises(ValueError, match="no full batch"):
        R.retrieval_dataset(data, vocab, batch_size=200)
    with pytest.raises(ValueError, match="batch_size must be even"):
        R.retrieval_dataset(data, vocab, batch_size=15, twins=True)


def test_twin_scenes_differ_in_the_smallest_way_a_caption_can_tell():
    rng = np.random.default_rng(3)
    for scene in shapes.generate(60, seed=14).scenes:
        twin = R.twin_scene(scene, rng)
        assert len(twin.objects) == len(scene.objects)
        if len(scene.objects) == 2:
            assert sorted(o.phrase for o in twin.objects) == sorted(o.phrase for o in scene.objects)
            if scene.objects[0].phrase != scene.objects[1].phrase:  # then the arrangement must differ
                assert twin.description() != scene.description()
        else:
            a, b = scene.objects[0], twin.objects[0]
            assert sum(getattr(a, f) != getattr(b, f) for f in ("size", "colour", "shape")) == 1
        for caption in shapes.captions_of(twin):
            assert shapes.parse_caption(caption).is_true_of(twin)


def test_twin_batches_keep_an_image_beside_its_twin(vocab, data):
    """Every pass: full batches only (incomplete ones dropped), each image once at most, its twin
    right after it; each pass in its own order."""
    stream = R.retrieval_dataset(data.subset(slice(0, 30)), vocab, batch_size=16, seed=2, twins=True, epochs=2)
    batches = list(stream)
    assert len(batches) == 6  # 30 images and their 30 twins: 3 full batches of 16 a pass (12 dropped)
    originals = []
    for (images, _, _), (_, scodes, _) in batches:
        assert len(images) == 16
        scodes = np.asarray(scodes)
        for k in range(0, 16, 2):  # pairs: an original image of the dataset, then its twin
            original = next(i for i in range(30) if (np.asarray(images[k]) == data.images[i]).all())
            originals.append(original)
            assert (scodes[k] == R.meaning_codes([data.scenes[original]])[0]).all()
            same_objects = sorted(scodes[k][[0, 2]]) == sorted(scodes[k + 1][[0, 2]])
            assert same_objects or scodes[k][1] == -1
    first, second = originals[:24], originals[24:]
    assert len(set(first)) == len(set(second)) == 24 and first != second


def test_the_shipped_dual_encoder_meets_its_recorded_metrics():
    """data/retrieval (checksums verified by load()), re-measured on the 1,000 test images (5,000
    captions) its metrics.json was measured on: semantic Recall@1 both ways, measured identical
    after re-saving; tolerance two queries in 1,000 (a near-tie could go the other way on
    another CPU). The instance image → text figures are not compared: identical captions of
    different images tie, and float rounding decides which ranks first (data/retrieval/README.md)."""
    recorded = artifacts.read_metrics(config.shipped_dir("retrieval"))
    assert (recorded["precision"], recorded["replicas"], recorded["profile"]) == ("float32", 1, "full")
    model, vocabulary = R.load()
    assert not model.compiled
    measured = R.evaluate(model, shapes.generate(recorded["test_images"], seed=tuple(recorded["test_seed"])), vocabulary)
    for key in ("semantic_recall@1_t2i", "semantic_recall@1_i2t", "recall@1_t2i"):
        assert measured[key] == pytest.approx(recorded[key], abs=2e-3), key


def test_the_shipped_dual_encoder_matches_its_checksum(assert_shipped_unchanged):
    folder = config.shipped_dir("retrieval")
    assert_shipped_unchanged(folder, (R.MODEL_FILE, R.VOCABULARY_FILE))
    assert artifacts.verify(folder, "retrieval") == folder
