"""The vision-language model: its vocabulary and texts, the loss (output tokens only, by hand),
sharing the image's keys and values (= the whole sequence), cached decoding (= recomputing),
the same training in float32, mixed precision and on two replicas, saving and loading, and a
short training that learns."""

import numpy as np
import pytest

import keras
from keras import ops
from mmcourse import device, training
from mmcourse.data import shapes
from mmcourse.models import vision, vqa
from mmcourse.models import vlm as V

from test_captioning import StepLosses  # tests/ is on sys.path

SIZES = dict(channels=8, d_model=16, num_heads=2, layers=2, hidden=32, encoder_layers=1, attended_positions=True, image_attention="full")
EPOCHS, BATCH, QUESTIONS = 2, 8, 3  # 32 images: 4 batches a pass, 8 steps


@pytest.fixture(scope="module")
def vocab():
    return V.vocabulary()


@pytest.fixture(scope="module")
def data():
    return shapes.generate(32, seed=11)


@pytest.fixture(scope="module")
def tables(data, vocab):
    return V.task_tables(data, vocab)


@pytest.fixture(scope="module")
def encoder():
    with training.seeded(5):
        return vision.build_image_encoder(channels=SIZES["channels"])


def fit(data, tables, encoder, precision="float32", cpu_replicas=None):
    """A tiny VLM built and compiled as ``train_vlm`` does it, on the frozen encoder's grids,
    trained with plain SGD (its step is proportional to the gradient: a gradient of the wrong
    scale changes the steps, which Adam would hide)."""
    steps = StepLosses()
    grids = vision.encode(encoder, data.images, output="grid")
    stream = V.task_batches(grids, tables, questions=QUESTIONS, batch_size=BATCH, seed=0, epochs=EPOCHS)
    with device.use(precision, cpu_replicas) as run:
        with run.strategy.scope(), training.seeded(0):
            model = V.VLM(V.vocabulary().words[4:], **SIZES)
            model.encoder.set_weights(encoder.get_weights())
            model.encoder.trainable = False
            training.compile(model, keras.optimizers.SGD(0.5))
        history = model.fit(stream, epochs=EPOCHS, steps_per_epoch=len(data) // BATCH, verbose=0, shuffle=False, callbacks=[steps])
    return model, history.history, steps, run


@pytest.fixture(scope="module")
def float32_run(data, tables, encoder):
    return fit(data, tables, encoder)


@pytest.fixture(scope="module")
def model(float32_run):
    return float32_run[0]


def test_the_vocabulary_holds_every_word_of_both_tasks_in_a_fixed_order(vocab):
    assert vocab == V.vocabulary() and vocab.words[:7] == ["<pad>", "<start>", "<end>", "<unk>", "caption:", "question:", "answer:"]
    for word in [*shapes.vocabulary_words(), *shapes.question_vocabulary().words, *vqa.ANSWERS]:
        assert word in vocab, word
    assert len(set(vocab.words)) == len(vocab)


def test_examples_encode_and_decode_and_score_only_the_output(vocab):
    prompt = V.question_prompt("What colour is the circle?")
    assert prompt == "question: what colour is the circle answer:"
    inputs, targets = V.encode_example(vocab, prompt, "red")
    assert inputs.shape == targets.shape == (V.TEXT_LENGTH - 1,)
    assert V.decode_example(vocab, inputs, targets) == (prompt, "red")
    n = len(prompt.split())  # 7 prompt words: the 7th predicts the answer, the answer predicts <end>
    assert list(targets[: n - 1]) == [0] * (n - 1)
    assert [vocab.word(t) for t in targets[n - 1 : n + 1]] == ["red", "<end>"] and not targets[n + 1 :].any()
    assert vocab.decode(inputs[: n + 1], strip=False) == prompt + " red"
    caption = "a small red circle left of a large blue square"
    inputs, targets = V.encode_example(vocab, V.caption_prompt(), caption)
    assert V.decode_example(vocab, inputs, targets) == ("caption:", caption)
    assert (targets != 0).sum() == len(caption.split()) + 1  # every word and <end>
    with pytest.raises(ValueError, match="reads at most"):
        V.encode_example(vocab, "question: " + "what " * 13 + "answer:", "red")


def test_task_tables_and_batches_hold_every_question_and_a_caption(data, vocab, tables):
    for i in (0, 5):
        asked = [V.decode_example(vocab, a, b) for a, b in zip(tables["question_inputs"][i], tables["question_targets"][i])]
        expected = [(V.question_prompt(qa.question), qa.answer) for qa in shapes.questions(data.scenes[i])]
        assert asked[: tables["question_counts"][i]] == expected
        assert not tables["question_inputs"][i, tables["question_counts"][i]:].any()  # empty rows after them
    (images, texts), targets = next(iter(V.task_batches(data.images, tables, questions=4, batch_size=5, seed=1)))
    assert tuple(images.shape) == (5, 64, 64, 3) and tuple(texts.shape) == tuple(targets.shape) == (5, 5, V.TEXT_LENGTH - 1)
    texts, targets = np.asarray(texts), np.asarray(targets)
    assert all(vocab.word(t) == "caption:" for t in texts[:, 0, 0]) and all(vocab.word(t) == "question:" for t in texts[:, 1:, 0].ravel())
    assert (targets != 0).any(-1).all()  # every text has an output
    for tasks, prompt in (("captions", "caption:"), ("questions", "question:")):  # a specialist's rows: one task, the image's own texts
        (images, texts), targets = next(iter(V.task_batches(data.images, tables, questions=4, batch_size=5, seed=1, tasks=tasks)))
        assert tuple(texts.shape) == (5, 5, V.TEXT_LENGTH - 1)
        for image, row_in, row_out in zip(np.asarray(images), np.asarray(texts), np.asarray(targets)):
            i = int(np.flatnonzero((data.images == image).all((1, 2, 3)))[0])
            own = ({(V.caption_prompt(), c) for c in data.captions[i]} if tasks == "captions"
                   else {(V.question_prompt(qa.question), qa.answer) for qa in shapes.questions(data.scenes[i])})
            decoded = [V.decode_example(vocab, a, b) for a, b in zip(row_in, row_out)]
            assert all(text[0].startswith(prompt) for text in decoded) and set(decoded) <= own
    with pytest.raises(ValueError, match="tasks"):
        V.task_batches(data.images, tables, tasks="answers")


def test_the_loss_is_the_mean_cross_entropy_of_the_output_tokens_by_hand(model, vocab, data):
    """Prompt positions and padding are not scored: the loss is the mean of −log p(target) over
    the answer, its <end>, the caption words and theirs, counted by hand."""
    texts, targets, scored = [], [], []
    for prompt, output in ((V.question_prompt("how many objects are there"), "2"), (V.caption_prompt(), "a small red circle")):
        x, y = V.encode_example(vocab, prompt, output)
        texts.append(x), targets.append(y)
        start = len(prompt.split()) - 1
        scored.append([(t, vocab.index(w)) for t, w in enumerate(output.split() + ["<end>"], start=start)])
    texts, targets = np.stack(texts)[None], np.stack(targets)[None]  # one image, two texts about it
    logits = np.asarray(model((data.images[:1], texts)), np.float64)[0]
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    by_hand = -np.mean([log_p[k, t, w] for k, pairs in enumerate(scored) for t, w in pairs])
    terms = model.loss_of(data.images[:1], texts, targets)
    assert float(terms["word_loss"]) == pytest.approx(by_hand, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(by_hand, rel=1e-5)  # no regulariser
    right = np.mean([logits[k, t].argmax() == w for k, pairs in enumerate(scored) for t, w in pairs])
    assert float(terms["word_accuracy"]) == pytest.approx(right)


def prefix_mask(n: int, words: int, image_attention: str = "full") -> np.ndarray:
    """Which key each position of [64 image tokens, words] sees: a word every image token and
    itself and the words before it; an image token every image token (``"full"``, both ways)
    or those up to itself (``"causal"``)."""
    total = 64 + words
    sees = np.tril(np.ones((total, total), bool))
    sees[:64, :64] |= image_attention == "full"
    return np.broadcast_to(sees, (n, total, total))


def test_the_prefix_mask_lets_the_image_see_itself_both_ways_and_never_the_words():
    sees = prefix_mask(1, 3)[0]
    assert sees[0, 63] and sees[63, 0] and not sees[:64, 64:].any()  # the image: all of itself, no word
    assert sees[64:, :64].all() and sees[65, 64] and not sees[64, 65]  # words: the image, then causal


@pytest.mark.parametrize("image_attention", ["full", "causal"])
def test_texts_reading_the_shared_image_cache_equal_the_whole_sequence(model, tables, data, image_attention):
    """[64 image tokens, text] through the blocks as one sequence under the prefix mask gives the
    logits that call() gives by computing the image's keys and values once for all its texts
    (the trained weights in a model of either kind of image attention)."""
    if image_attention != model.image_attention:
        twin = V.VLM.from_config({**model.get_config(), "image_attention": image_attention})
        twin.set_weights(model.get_weights())
        model = twin
    texts = np.stack([tables["caption_inputs"][:3, 0], tables["question_inputs"][:3, 0], tables["question_inputs"][:3, 1]], 1)
    shared = np.asarray(model((data.images[:3], texts)))
    for k in range(3):
        x = ops.concatenate([model.image_tokens(data.images[:3]), model.word_positions(model.embedding(texts[:, k]) * 4.0)], axis=1)
        for block, where in zip(model.blocks, model.where):
            x = block(x, mask=prefix_mask(3, texts.shape[-1], image_attention))  # then each word (not the image) gets where the heads looked
            looked = where(model.attended_position(block.self_weights[:, :, 64:]))
            x = ops.concatenate([x[:, :64], x[:, 64:] + looked], axis=1)
        whole = np.asarray(model.classifier(model.final_norm(x)))[:, 64:]
        np.testing.assert_allclose(shared[:, k], whole, atol=1e-4)


def test_attended_positions_are_the_attention_weighted_cell_centres(model):
    """Σ_j α_hj (x_j, y_j) over the image keys only (the words' keys after them add nothing)."""
    from mmcourse.models.captioning import GRID_POSITIONS

    weights = np.random.default_rng(0).dirichlet(np.ones(70), size=(2, SIZES["num_heads"], 3)).astype(np.float32)  # 64 cells + 6 words
    where = np.asarray(model.attended_position(ops.convert_to_tensor(weights)))
    by_hand = np.einsum("nhtj,jc->nthc", weights[..., :64], GRID_POSITIONS).reshape(2, 3, -1)
    np.testing.assert_allclose(where, by_hand, rtol=1e-5)
    assert by_hand[0, 0, 0] == pytest.approx(sum(weights[0, 0, 0, j] * GRID_POSITIONS[j, 0] for j in range(64)), rel=1e-5)


def test_cached_greedy_decoding_equals_recomputing_every_position(model, vocab, data):
    prompts = [V.caption_prompt(), V.question_prompt("what colour is the circle"), V.caption_prompt()]
    generated = V.generate(model, data.images[:3], prompts, max_tokens=5)
    for i, (prompt, text) in enumerate(zip(prompts, generated)):
        tokens = [vocab.index(w) for w in prompt.split()]
        words = []
        for _ in range(5):
            logits = np.asarray(model((data.images[i : i + 1], np.array([tokens], np.int32))))[0, -1]
            if logits.argmax() == vocab.end_id:
                break
            tokens.append(int(logits.argmax()))
            words.append(vocab.word(tokens[-1]))
        assert text == " ".join(words)
    # prompts about shared images (image_index) give what one image per prompt gives
    assert V.generate(model, data.images[:2], prompts[:2] * 2, image_index=[0, 1, 0, 1], max_tokens=5) == generated[:2] * 2


def test_decoding_with_attention_gives_the_same_words_and_the_whole_sequences_weights(model, vocab, data):
    """The maps are the last block's attention over the 64 cells from the position that chose
    each token, as running [image, prompt, output] whole through the blocks gives them."""
    for prompt in (V.caption_prompt(), V.question_prompt("what colour is the circle")):
        tokens, maps = V.generate_with_attention(model, data.images[0], prompt, max_tokens=5)
        assert " ".join(t for t in tokens if t != "<end>") == V.generate(model, data.images[:1], [prompt], max_tokens=5)[0]
        assert maps.shape == (len(tokens), 8, 8) and (maps >= 0).all() and (maps.sum((1, 2)) <= 1 + 1e-5).all()
        ids = [vocab.index(w) for w in prompt.split() + tokens[:-1]]
        x = ops.concatenate([model.image_tokens(data.images[:1]),
                             model.word_positions(model.embedding(np.array([ids])) * float(np.sqrt(SIZES["d_model"])))], axis=1)
        for block, where in zip(model.blocks, model.where):
            x = block(x, mask=prefix_mask(1, len(ids)))
            x = ops.concatenate([x[:, :64], x[:, 64:] + where(model.attended_position(block.self_weights[:, :, 64:]))], axis=1)
        whole = np.asarray(model.blocks[-1].self_weights)[0, :, 64 + len(prompt.split()) - 1 :, :64].mean(0)  # (outputs, 64)
        np.testing.assert_allclose(maps.reshape(len(tokens), 64), whole, atol=1e-5)


def test_a_question_with_an_unknown_word_is_refused_naming_it(model, data):
    with pytest.raises(vqa.QuestionError, match="'circel'"):
        V.answer_questions(model, data.images[:1], ["what colour is the circel"])
    with pytest.raises(vqa.QuestionError, match="empty"):
        V.answer_questions(model, data.images[:1], ["?"])
    with pytest.raises(ValueError, match="one image each"):
        V.generate(model, data.images[:2], [V.caption_prompt()] * 3)


def test_mixed_precision_trains_like_float32(float32_run, data, tables, encoder, tmp_path):
    """float16 compute, float32 logits and loss: the per-step losses agree up to float16
    rounding (atol 0.02 on losses about 3.9)."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, tables, encoder, precision="mixed")
    assert run.precision == "mixed_float16" and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(steps.losses).all() and expected["loss"][-1] < expected["loss"][0]
    np.testing.assert_allclose(steps.losses, expected_steps.losses, atol=0.02)
    V.save(model, tmp_path)
    loaded = V.load(tmp_path)
    assert loaded.dtype_policy.name == loaded.blocks[0].dtype_policy.name == "mixed_float16"
    assert loaded.classifier.dtype_policy.name == "float32"
    assert V.caption_images(loaded, data.images[:4]) == V.caption_images(model, data.images[:4])


def test_two_replicas_train_like_one_device(float32_run, data, tables, encoder):
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, tables, encoder, cpu_replicas=2)
    assert run.replicas == 2
    np.testing.assert_allclose(steps.losses, expected_steps.losses, rtol=1e-5)
    for key in ("loss", "word_loss", "word_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)


def test_saved_and_loaded_it_gives_the_same_answers_and_captions(model, vocab, data, tmp_path):
    V.save(model, tmp_path)
    assert (tmp_path / V.MODEL_FILE).is_file() and (tmp_path / V.VOCABULARY_FILE).is_file()
    loaded = V.load(tmp_path)
    assert isinstance(loaded, V.VLM) and loaded.vocabulary == vocab and loaded.get_config()["layers"] == SIZES["layers"]
    questions = [qa.question for qa in shapes.questions(data.scenes[0])]
    images = np.repeat(data.images[:1], len(questions), axis=0)
    assert V.answer_questions(loaded, images, questions) == V.answer_questions(model, images, questions)
    assert V.caption_images(loaded, data.images[:4]) == V.caption_images(model, data.images[:4])
    with pytest.raises(FileNotFoundError, match="mmcourse train vlm --out DIR"):
        V.load(tmp_path / "nothing")


def test_bad_arguments(vocab):
    with pytest.raises(ValueError, match="multiple of num_heads=3"):
        V.VLM(vocab.words[4:], d_model=20, num_heads=3, fixed_positions=False)
    with pytest.raises(ValueError, match="multiple of 4"):
        V.VLM(vocab.words[4:], d_model=18, num_heads=2)
    with pytest.raises(ValueError, match="questions must be"):
        V.task_batches(np.zeros((1, 8, 8, 8)), {"question_counts": np.ones(1)}, questions=0)
    with pytest.raises(ValueError, match="image_attention"):
        V.VLM(vocab.words[4:], image_attention="none")



def test_a_short_training_learns_both_tasks_formats_and_beats_the_majority_answer():
    """Three passes over 600 images (225 steps of 8 images, each with a caption and 6 questions)
    on a briefly pre-trained encoder. Measured: the word loss falls from 1.27 to 0.61; every answer
    is of its question's kind (a colour for "what colour", yes or no for "is there", ...) and every
    caption parses; accuracy 0.56 against 0.43 for the commonest answer of each kind; BLEU-4 50.
    An untrained model answers and captions with random words (all of these near 0)."""
    encoder, _, _ = vision.pretrain_image_encoder(600, 2, channels=16, seed=0, progress=False)
    train, test = shapes.generate(600, seed=(4, 1)), shapes.generate(60, seed=(4, 2))
    model, history, _ = V.train_vlm(train, epochs=3, batch_size=8, questions=6, learning_rate=3e-3, seed=0, progress=False,
                                    encoder=encoder, channels=16, d_model=32, num_heads=2, layers=2, hidden=64)
    assert history["word_loss"][-1] < 0.6 * history["word_loss"][0]
    scores = V.evaluate(model, test)
    pairs = vqa.vqa_pairs(test)
    kinds = {"colour": set(shapes.COLOURS), "shape": set(shapes.SHAPES), "size": set(shapes.SIZES), "count": {"1", "2"},
             "existence": {"yes", "no"}, "relation": {"yes", "no", "left", "right", "above", "below"}}
    assert np.mean([a in kinds[vqa.KINDS[k]] for a, k in zip(scores["answers"], pairs.kinds)]) >= 0.95
    _, majority = vqa.majority_baseline(vqa.vqa_pairs(train), pairs)
    assert scores["accuracy"] > majority["accuracy"] + 0.05, (scores["accuracy"], majority["accuracy"])
    parsed = 0
    for caption in scores["captions"]:
        try:
            shapes.parse_caption(caption)
            parsed += 1
        except shapes.CaptionError:
            pass
    assert parsed >= 0.9 * len(test) and scores["bleu4"] > 30, (parsed, scores["bleu4"])


def test_the_shipped_vlm_meets_its_recorded_metrics():
    """data/vlm (checksums verified by load()), re-measured on the 1,000 test images its
    metrics.json was measured on: every question and a greedy caption of every image. Tolerance
    one answer in 1,000 and one caption in 1,000 (a near-tie could go the other way on another CPU)."""
    from mmcourse import artifacts, config

    recorded = artifacts.read_metrics(config.shipped_dir("vlm"))
    assert (recorded["precision"], recorded["replicas"], recorded["profile"]) == ("float32", 1, "full")
    model = V.load()
    assert not model.compiled and model.vocabulary == V.vocabulary()
    test = shapes.generate(recorded["test_images"], seed=tuple(recorded["test_seed"]))
    scores = V.evaluate(model, test)
    for key in ("accuracy", "relation_where", "relation_yes_no", *vqa.KINDS):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-3), key
    for key in ("exact_match", "hallucination_rate", "object_recall"):
        assert scores[key] == pytest.approx(recorded[key], abs=1e-3), key
    assert scores["bleu4"] == pytest.approx(recorded["bleu4"], abs=0.1)


def test_the_shipped_vlm_matches_its_checksum(assert_shipped_unchanged):
    from mmcourse import artifacts, config

    folder = config.shipped_dir("vlm")
    assert_shipped_unchanged(folder, (V.MODEL_FILE, V.VOCABULARY_FILE))
    assert artifacts.verify(folder, "vlm") == folder
