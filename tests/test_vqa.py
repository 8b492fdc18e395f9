"""Fusion for VQA: every formula against numpy (or Keras) with the model's own weights,
the question encoder's messages, baselines against brute force, training in float32, mixed
precision and on two replicas, saving and the command line."""

import random
from collections import Counter

import numpy as np
import pytest

from mmcourse._tf import tensorflow

tensorflow()
import keras  # noqa: E402

from mmcourse import artifacts, config, device  # noqa: E402
from mmcourse.data import shapes  # noqa: E402
from mmcourse.models import vqa as F  # noqa: E402


def _relu(x):
    return np.maximum(x, 0)


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture(scope="module")
def small():
    """A few scenes, their question pairs and random 'grids' (the encoder is not needed for the formulas)."""
    data = shapes.generate(12, seed=3)
    pairs = F.vqa_pairs(data)
    grids = np.random.default_rng(0).normal(size=(len(data), 8, 8, 6)).astype(np.float32)
    return data, pairs, grids


@pytest.fixture(scope="module")
def trained(small):
    """The film model (BatchNormalization, FiLM, the GRU) trained on 64 pairs for 3 epochs of one
    step each (batch 64: 32 per replica on two), without dropout, in float32, in mixed precision
    and on two replicas; each run starts from another global random state."""
    _, pairs, grids = small
    runs = {}
    for k, (name, precision, replicas) in enumerate([("float32", "float32", None), ("mixed", "mixed", None), ("replicas", "float32", 2)]):
        keras.utils.set_random_seed(100 + k)
        before = random.getstate()
        with device.use(precision, cpu_replicas=replicas) as run:
            model, history, seconds = F.train_vqa(grids, pairs.subset(slice(0, 64)), fusion="film", epochs=3, batch_size=64,
                                                  learning_rate=1e-2, units=16, embed_dim=8, dropout=0.0, progress=False)
        assert random.getstate() == before, "train_vqa changed the global random state"
        runs[name] = model, history, seconds, run
    return runs


def _inputs(grids, pairs, index):
    return {"grid": grids[pairs.image_index[index]], "question": pairs.tokens[index]}


def _question_vector(model, tokens):
    return np.asarray(model._question_vector(keras.ops.convert_to_tensor(tokens)))


def _image_vector(model, grids):
    return np.asarray(model._image_vector(keras.ops.convert_to_tensor(grids)))


def _dense(layer, x, activation=None):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in layer.weights)
    y = x @ kernel + bias
    return {None: y, "relu": _relu(y), "tanh": np.tanh(y)}[activation]


# --------------------------------------------------------------------------- questions


def test_every_shapes_question_encodes_without_unknown_words_and_decodes_back():
    vocab = shapes.question_vocabulary()
    data = shapes.generate(300, seed=5)
    pairs = F.vqa_pairs(data, vocab)
    assert pairs.tokens.shape == (len(pairs), F.QUESTION_LENGTH) and pairs.tokens.dtype == np.int32
    assert not (pairs.tokens == vocab.unk_id).any()
    assert [vocab.decode(t) for t in pairs.tokens[:50]] == pairs.questions[:50]
    assert set(np.unique(pairs.kinds)) == set(range(len(F.KINDS)))  # all six kinds occur
    # Each pair is exactly what shapes.questions gives for its image, in order.
    expected = [(i, qa.question, qa.answer, qa.kind) for i, s in enumerate(data.scenes) for qa in shapes.questions(s)]
    got = [(int(i), q, F.ANSWERS[a], F.KINDS[k]) for i, q, a, k in zip(pairs.image_index, pairs.questions, pairs.answers, pairs.kinds)]
    assert got == expected


def test_question_errors_name_the_word_and_say_what_to_ask():
    with pytest.raises(F.QuestionError, match=r"'banana' \(word 5 of 'what colour is the banana'\).*circle"):
        F.encode_questions(["what colour is the banana"])
    with pytest.raises(F.QuestionError, match="'<unk>'"):  # the special tokens are not words a learner may use
        F.encode_questions("is there a <unk>")
    with pytest.raises(F.QuestionError, match="empty"):
        F.encode_questions(["  ? "])
    with pytest.raises(F.QuestionError, match="at most 14"):
        F.encode_questions([" ".join(["red"] * 15)])
    # Case and a question mark are forgiven.
    assert (F.encode_questions("What colour is the circle?") == F.encode_questions(["what colour is the circle"])).all()


def test_vqa_data_subset_keeps_the_columns_together(small):
    _, pairs, _ = small
    part = pairs.subset(np.array([3, 0, 5]))
    assert part.questions == [pairs.questions[i] for i in (3, 0, 5)]
    assert (part.tokens == pairs.tokens[[3, 0, 5]]).all() and (part.answers == pairs.answers[[3, 0, 5]]).all()
    assert len(pairs.subset(slice(2, 6))) == 4


# --------------------------------------------------------------------------- formulas


def test_add_coordinates_appends_each_cell_centre_in_reading_order():
    grid = np.random.default_rng(1).normal(size=(2, 8, 8, 3)).astype(np.float32)
    cells = np.asarray(F.add_coordinates(keras.ops.convert_to_tensor(grid)))
    assert cells.shape == (2, 64, 5)
    for row in range(8):
        for col in range(8):
            j = row * 8 + col
            assert np.allclose(cells[:, j, :3], grid[:, row, col])
            # x grows to the right, y downwards, both in [-1, 1] at the cell centres
            assert np.allclose(cells[:, j, 3:], [(col + 0.5) / 4 - 1, (row + 0.5) / 4 - 1])


def test_film_is_gamma_times_features_plus_beta_by_brute_force():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    condition = rng.normal(size=(3, 7)).astype(np.float32)
    film = F.FiLM(6)
    out = np.asarray(film(features, condition))
    W_gamma, b_gamma, W_beta, b_beta = (keras.ops.convert_to_numpy(w) for w in film.weights)
    expected = np.empty_like(features)
    for n in range(3):
        gamma = condition[n] @ W_gamma + b_gamma
        beta = condition[n] @ W_beta + b_beta
        for i in range(4):
            for j in range(5):
                expected[n, i, j] = gamma * features[n, i, j] + beta
    assert np.allclose(out, expected, atol=1e-5)
    # Equal to two Keras Dense layers with the same weights, broadcast over positions.
    dense_g, dense_b = keras.layers.Dense(6), keras.layers.Dense(6)
    dense_g.build((None, 7)), dense_b.build((None, 7))
    dense_g.set_weights([W_gamma, b_gamma]), dense_b.set_weights([W_beta, b_beta])
    via_keras = np.asarray(dense_g(condition))[:, None, None] * features + np.asarray(dense_b(condition))[:, None, None]
    assert np.allclose(out, via_keras, atol=1e-5)
    # A fresh layer starts close to the identity (γ ≈ 1, β ≈ 0 only up to the random kernels),
    # and with zero condition it is exactly the identity.
    assert np.allclose(np.asarray(film(features, np.zeros_like(condition))), features)
    # Sequences (batch, T, channels) too.
    seq = rng.normal(size=(3, 9, 6)).astype(np.float32)
    assert np.allclose(np.asarray(film(seq, condition))[:, 4], (condition @ W_gamma + b_gamma) * seq[:, 4] + condition @ W_beta + b_beta, atol=1e-5)


def test_film_checks_its_arguments_and_saves():
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(ValueError, match="channels must be a positive whole number"):
            F.FiLM(bad)
    with pytest.raises(ValueError, match=r"FiLM\(4\) got features with 6 channels"):
        F.FiLM(4)(np.zeros((1, 2, 6), np.float32), np.zeros((1, 3), np.float32))
    film = F.FiLM(4, name="f")
    assert F.FiLM.from_config(film.get_config()).channels == 4


def test_early_fusion_classifies_the_concatenation(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    model = F.VQAModel("early", units=16, embed_dim=8)
    inputs = _inputs(grids, pairs, slice(0, 10))
    logits = np.asarray(model(inputs))
    v, q = _image_vector(model, inputs["grid"]), _question_vector(model, inputs["question"])
    h = _dense(model.hidden, np.concatenate([v, q], -1), "relu")  # h = MLP([v; q])
    assert np.allclose(logits, _dense(model.classifier, h), atol=1e-4)
    # v = ReLU(W vec(G)) over the grid with its coordinates, flattened cell by cell.
    cells = np.asarray(F.add_coordinates(keras.ops.convert_to_tensor(inputs["grid"]))).reshape(10, -1)
    assert np.allclose(v, _dense(model.image_vector, cells, "relu"), atol=1e-4)


def test_late_fusion_adds_the_two_modalities_logits(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    model = F.VQAModel("late", units=16, embed_dim=8)
    inputs = _inputs(grids, pairs, slice(0, 10))
    logits = np.asarray(model(inputs))
    v, q = _image_vector(model, inputs["grid"]), _question_vector(model, inputs["question"])
    image_logits = _dense(model.image_head[1], _dense(model.image_head[0], v, "relu"))
    question_logits = _dense(model.question_head[1], _dense(model.question_head[0], q, "relu"))
    assert np.allclose(logits, image_logits + question_logits, atol=1e-4)
    # so the answer distribution is the normalised product of the two: p ∝ p_v · p_q
    assert np.allclose(_softmax(logits), _softmax(np.log(_softmax(image_logits) * _softmax(question_logits))), atol=1e-5)


def test_product_fusion_multiplies_the_projections(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    model = F.VQAModel("product", units=16, embed_dim=8)
    inputs = _inputs(grids, pairs, slice(0, 10))
    logits = np.asarray(model(inputs))
    v, q = _image_vector(model, inputs["grid"]), _question_vector(model, inputs["question"])
    h = _dense(model.W_v, v, "tanh") * _dense(model.W_q, q, "tanh")  # tanh(W_v v) ⊙ tanh(W_q q)
    assert np.allclose(logits, _dense(model.classifier, _dense(model.hidden, h, "relu")), atol=1e-4)


def test_attention_fusion_attends_over_the_64_cells(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    model = F.VQAModel("attention", units=16, embed_dim=8, heads=2)
    inputs = _inputs(grids, pairs, slice(0, 10))
    logits = np.asarray(model(inputs))
    alpha = np.asarray(model.attention_weights(inputs))
    assert alpha.shape == (10, 2, 64) and np.allclose(alpha.sum(-1), 1, atol=1e-5) and (alpha >= 0).all()
    q = _question_vector(model, inputs["question"])
    cells = np.asarray(F.add_coordinates(keras.ops.convert_to_tensor(inputs["grid"])))
    V = _dense(model.cell_projection, cells, "relu")  # (10, 64, 16)
    # Against Keras's own multi-head attention with the same weights.
    reference = keras.layers.MultiHeadAttention(2, 8)
    reference(q[:, None], V)  # build
    reference.set_weights([keras.ops.convert_to_numpy(w) for w in model.attend.weights])
    context, weights = reference(q[:, None], V, return_attention_scores=True)
    assert np.allclose(alpha, np.asarray(weights)[:, :, 0], atol=1e-5)
    where = np.einsum("nht,tc->nhc", alpha, cells[0, :, -2:]).reshape(10, 4)  # each head's attended position Σ_j α_j (x_j, y_j)
    h = _dense(model.hidden, np.concatenate([np.asarray(context)[:, 0], where, q], -1), "relu")  # MLP([Σ α_j V_j; p; q])
    assert np.allclose(logits, _dense(model.classifier, h), atol=1e-4)
    with pytest.raises(ValueError, match="only attention fusion has attention weights"):
        F.VQAModel("film", units=16).attention_weights(inputs)


def test_film_fusion_model_applies_film_inside_residual_blocks(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    model = F.VQAModel("film", units=8, embed_dim=8)
    inputs = _inputs(grids, pairs, slice(0, 4))
    logits = np.asarray(model(inputs))
    assert logits.shape == (4, len(F.ANSWERS))
    # The question changes the answer only through FiLM: zeroing every W_gamma and W_beta
    # (γ = b_γ, β = b_β, the same for every question) makes all questions about one image alike.
    for film in model.films:
        film.W_gamma.assign(np.zeros(film.W_gamma.shape, np.float32))
        film.W_beta.assign(np.zeros(film.W_beta.shape, np.float32))
    same_image = {"grid": np.repeat(grids[:1], 4, 0), "question": pairs.tokens[:4]}
    out = np.asarray(model(same_image))
    assert np.allclose(out, out[:1], atol=1e-5)


def test_baselines_see_only_one_modality(small):
    _, pairs, grids = small
    keras.utils.set_random_seed(0)
    blind, image = F.VQAModel("blind", units=8, embed_dim=8), F.VQAModel("image", units=8)
    inputs = _inputs(grids, pairs, slice(0, 6))
    other_grids = {"grid": np.random.default_rng(7).normal(size=inputs["grid"].shape).astype(np.float32), "question": inputs["question"]}
    assert np.allclose(np.asarray(blind(inputs)), np.asarray(blind(other_grids)))
    other_questions = {"grid": inputs["grid"], "question": inputs["question"][::-1]}
    assert np.allclose(np.asarray(image(inputs)), np.asarray(image(other_questions)))


def test_model_arguments_are_checked_with_clear_messages():
    with pytest.raises(ValueError, match="fusion must be one of blind, image, early, late, product, film, attention; got 'sum'"):
        F.VQAModel("sum")
    with pytest.raises(ValueError, match="units must be a positive whole number"):
        F.VQAModel("early", units=0)
    with pytest.raises(ValueError, match=r"units \(10\) must be a multiple of heads \(3\)"):
        F.VQAModel("attention", units=10, heads=3)
    with pytest.raises(ValueError, match="dropout must be in"):
        F.VQAModel("early", dropout=1.0)


# --------------------------------------------------------------------------- training and measuring


def test_accuracy_by_kind_and_majority_baseline_by_brute_force(small):
    _, pairs, _ = small
    rng = np.random.default_rng(4)
    predicted = np.where(rng.random(len(pairs)) < 0.6, pairs.answers, rng.integers(0, len(F.ANSWERS), len(pairs)))
    scores = F.accuracy_by_kind(predicted, pairs)
    assert scores["accuracy"] == pytest.approx(sum(p == a for p, a in zip(predicted, pairs.answers)) / len(pairs))
    for k, kind in enumerate(F.KINDS):
        rows = [m for m in range(len(pairs)) if pairs.kinds[m] == k]
        if rows:
            assert scores[kind] == pytest.approx(sum(predicted[m] == pairs.answers[m] for m in rows) / len(rows))
    with pytest.raises(ValueError, match="one answer index per pair"):
        F.accuracy_by_kind(predicted[:-1], pairs)

    train = F.vqa_pairs(shapes.generate(60, seed=11))
    per_kind, majority = F.majority_baseline(train, pairs)
    for k in range(len(F.KINDS)):
        counts = Counter(int(a) for a, kk in zip(train.answers, train.kinds) if kk == k)
        assert counts[int(per_kind[k])] == max(counts.values())
    assert majority == F.accuracy_by_kind(per_kind[pairs.kinds], pairs)
    assert 0.4 < majority["existence"] < 0.6  # existence questions are balanced yes/no by construction


def test_training_lowers_the_loss_and_predict_checks_its_grids(small, trained):
    _, pairs, grids = small
    model, history, seconds, _ = trained["float32"]
    assert history["loss"][-1] < history["loss"][0] and seconds > 0
    p = F.predict(model, grids, pairs)
    assert p.shape == (len(pairs), len(F.ANSWERS)) and np.allclose(p.sum(-1), 1, atol=1e-5)
    # predict agrees with calling the model directly
    direct = _softmax(np.asarray(model(_inputs(grids, pairs, slice(None)))))
    assert np.allclose(p, direct, atol=1e-5)
    with pytest.raises(ValueError, match=r"grids must be the encoder's \(n, 8, 8, C\) feature grids"):
        F.predict(model, grids[:, :4], pairs)
    with pytest.raises(ValueError, match="refer to image 11 but there are only 5 grids"):
        F.predict(model, grids[:5], pairs)


def test_mixed_precision_loss_falls_like_float32(trained):
    """Same seed, float32 against mixed_float16: the losses of three steps agree within 1 % (measured:
    2e-3 relative; float16 activations carry about 3 significant digits, and the GRU and
    batch normalisation compound them over a step; a first step skipped by the loss-scale optimizer
    would also stay within it). The logits are float32, so the loss is."""
    f32, mixed = (np.array(trained[name][1]["loss"]) for name in ("float32", "mixed"))
    assert trained["mixed"][3].precision == "mixed_float16"
    assert trained["mixed"][0].classifier.dtype_policy.name == "float32"
    assert mixed[-1] < mixed[0]
    np.testing.assert_allclose(mixed, f32, rtol=0.01)


def test_two_replicas_train_like_one_device(trained):
    """Same seed, one device against MirroredStrategy over two logical CPUs (32 pairs each), dropout
    off (each replica would draw its own masks): the losses of three steps agree within 1e-4
    relative. Same batches, same initial weights (built in train_vqa from the seed: FiLM and
    attention make theirs in build()), synchronized batch normalisation; what is left is the
    order of float32 sums (measured: 1e-7). Weights built at the first step, outside the seeded
    block, moved the first loss by 0.06 % (film) and 0.7 % (attention); a batch split into unequal
    halves changes Keras's per-replica mean (hence 64 pairs, not the 117 of the fixture)."""
    one, two = (np.array(trained[name][1]["loss"]) for name in ("float32", "replicas"))
    assert trained["replicas"][3].replicas == 2
    np.testing.assert_allclose(two, one, rtol=1e-4)


def test_logits_are_float32_under_mixed_precision(small):
    _, pairs, grids = small
    inputs = _inputs(grids, pairs, slice(0, 4))
    with device.use("mixed"):
        for fusion in ("late", "attention"):
            model = F.VQAModel(fusion, units=8, embed_dim=8)
            logits, weights = model.forward(inputs)
            assert logits.dtype == "float32" and model.reader.compute_dtype == "float16"
            assert weights is None or weights.dtype == "float32"


def test_answer_save_and_load_roundtrip(tmp_path, small, trained):
    data, pairs, grids = small
    model = trained["float32"][0]
    keras.utils.set_random_seed(0)
    encoder = F.vision.build_image_encoder(4)
    attention = F.VQAModel("attention", units=8, embed_dim=8, heads=2)
    encoder_grids = F.grid_features(encoder, data.images)
    result = F.answer(encoder, attention, data.images[0], pairs.questions[0])
    p = F.predict(attention, encoder_grids, pairs.subset(slice(0, 1)))[0]
    assert result["answer"] == F.ANSWERS[int(p.argmax())]
    assert np.allclose([result["probabilities"][a] for a in F.ANSWERS], p, atol=1e-5)
    assert result["attention"].shape == (8, 8) and result["attention"].sum() == pytest.approx(1, abs=1e-5)
    with pytest.raises(F.QuestionError, match="'colours'"):
        F.answer(encoder, attention, data.images[0], "what colours is the circle")

    # the trained film model (compiled, with Adam's state) is saved without its optimizer
    F.save(encoder, model, tmp_path / "vqa")
    import zipfile

    assert not any("optimizer" in name for name in zipfile.ZipFile(tmp_path / "vqa" / F.MODEL_FILE).namelist())
    encoder2, model2, vocab2 = F.load(tmp_path / "vqa")
    assert vocab2 == shapes.question_vocabulary() and model2.fusion == "film" and getattr(model2, "optimizer", None) is None
    assert np.allclose(F.predict(model2, grids, pairs), F.predict(model, grids, pairs), atol=1e-5)
    assert np.allclose(F.grid_features(encoder2, data.images), encoder_grids, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="no image_encoder.keras in .*`mmcourse train vqa --out DIR`"):
        F.load(tmp_path)


def test_train_vqa_command_writes_what_it_measured(tmp_path, monkeypatch, capsys):
    """The command, mixed precision on two replicas, at a tiny size: its files, and the accuracy the
    saved model gives on the test split metrics.json names (not the accuracy itself)."""
    from mmcourse.cli import main

    monkeypatch.setitem(F.TRAIN_SIZES, "quick", (16, 1, 16, 1))  # float16 convolutions are emulated on a CPU: slow
    monkeypatch.setitem(config.PROFILES, "quick", config.PROFILES["quick"].__class__(**{**vars(config.PROFILES["quick"]), "n_test": 16}))
    out = tmp_path / "run"
    argv = ["train", "vqa", "--fusion", "late", "--profile", "quick", "--seed", "1", "--precision", "mixed", "--cpu-replicas", "2"]
    assert main([*argv, "--out", str(out)]) == 0
    written = artifacts.read_metrics(out)
    assert {"accuracy", *F.KINDS, "majority_baseline", "final_loss", "encoder_final_loss"} <= set(written)
    assert (written["fusion"], written["seed"], written["train_images"], written["test_images"]) == ("late", 1, 16, 16)
    assert (written["precision"], written["replicas"]) == ("mixed_float16", 2)
    assert written["train_seconds"] == pytest.approx(written["encoder_seconds"] + written["fusion_seconds"])
    printed = capsys.readouterr().out
    assert "late fusion" in printed and f"{written['accuracy']:.3f}" in printed and "metrics.json" in printed
    encoder, model, vocab = F.load(out)
    assert model.fusion == "late" and vocab == shapes.question_vocabulary()
    assert model.image_head[1].dtype_policy.name == "float32" and model.image_head[0].dtype_policy.name == "mixed_float16"
    # the saved model gives the accuracy metrics.json reports, on the same fresh test split
    test = shapes.generate(written["test_images"], seed=tuple(written["test_seed"]))
    pairs = F.vqa_pairs(test)
    assert F.evaluate(model, F.grid_features(encoder, test.images), pairs)["accuracy"] == pytest.approx(written["accuracy"], abs=1e-6)


def test_the_command_line_offers_only_the_fusions_there_are(tmp_path):
    """(train_command's own checks: tests/test_train_commands.py)"""
    from mmcourse.cli import main

    with pytest.raises(SystemExit):
        main(["train", "vqa", "--fusion", "concat", "--out", str(tmp_path / "a")])
    assert not (tmp_path / "a").exists()


def test_cell_targets_name_the_object_covering_each_cell():
    data = shapes.generate(20, seed=4)
    targets = F.cell_targets(data)
    for i, scene in enumerate(data.scenes):
        for r in range(8):
            for c in range(8):
                patch = data.labels[i, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8]
                counts = [(patch == k + 1).sum() for k in range(len(scene.objects))]
                if max(counts) < 8:
                    expected = (0, 0, 0)
                else:
                    obj = scene.objects[int(np.argmax(counts))]
                    expected = tuple(F.vision.ATTRIBUTES[a].index(getattr(obj, a)) + 1 for a in ("shape", "colour", "size"))
                assert (targets["shape"][i, r, c], targets["colour"][i, r, c], targets["size"][i, r, c]) == expected
    assert (targets["shape"] > 0).any() and (targets["shape"] == 0).any()



def test_the_shipped_vqa_model_meets_its_recorded_metrics(assert_shipped_unchanged):
    """data/vqa (checksums verified by load()), re-measured on the 1,000 test images its
    metrics.json was measured on: every accuracy within one question in 2,000."""
    folder = config.shipped_dir("vqa")
    assert_shipped_unchanged(folder, [F.ENCODER_FILE, F.MODEL_FILE, F.VOCABULARY_FILE])
    recorded = artifacts.read_metrics(folder)
    assert (recorded["precision"], recorded["replicas"], recorded["profile"], recorded["fusion"]) == ("float32", 1, "full", "attention")
    encoder, model, vocab = F.load()
    assert vocab == shapes.question_vocabulary() and getattr(model, "optimizer", None) is None
    test = shapes.generate(recorded["test_images"], seed=tuple(recorded["test_seed"]))
    scores = F.evaluate(model, F.grid_features(encoder, test.images), F.vqa_pairs(test))
    for key in ("accuracy", *F.KINDS):
        assert scores[key] == pytest.approx(recorded[key], abs=5e-4), key
