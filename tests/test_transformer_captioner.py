"""The Transformer captioner: decoding with the key-value cache equals recomputing, the same
training in float32, mixed precision and on two replicas, decoding, saving and loading."""

import numpy as np
import pytest

import keras
from mmcourse import training
from mmcourse.data import shapes
from mmcourse.models import captioning as C
from mmcourse.models import vision
from mmcourse.models.transformer_captioner import TransformerCaptioner

from test_captioning import fit as fit_captioner  # tests/ is on sys.path: the GRU captioner's training helper

SIZES = dict(channels=8, d_model=16, num_heads=2, layers=2, hidden=32)


@pytest.fixture(scope="module")
def vocab():
    return shapes.caption_vocabulary()


@pytest.fixture(scope="module")
def data():
    return shapes.generate(48, seed=11)


@pytest.fixture(scope="module")
def encoder():
    with training.seeded(5):
        return vision.build_image_encoder(channels=SIZES["channels"])


def fit(data, vocab, encoder, precision="float32", cpu_replicas=None):
    """The GRU captioner's test training (6 plain-SGD steps on a frozen encoder's grids), on this model."""
    return fit_captioner(data, vocab, encoder, precision, cpu_replicas, build=lambda v: TransformerCaptioner(len(v), **SIZES),
                         learning_rate=0.3)


@pytest.fixture(scope="module")
def float32_run(data, vocab, encoder):
    return fit(data, vocab, encoder)


@pytest.fixture(scope="module")
def model(float32_run):
    return float32_run[0]


def test_it_trains_and_gives_logits_and_cross_attention(float32_run, vocab, data):
    model, history, _, _ = float32_run
    assert history["loss"][-1] < history["loss"][0]
    inputs, _ = C.teacher_forcing_pairs([c[0] for c in data.captions[:3]], vocab)
    logits, weights = model((data.images[:3], inputs))
    assert logits.shape == (3, inputs.shape[1], len(vocab)) and logits.dtype == "float32"
    np.testing.assert_allclose(np.asarray(weights).sum(-1), 1.0, atol=1e-5)
    assert (model.fusion, model.decoder) == ("attention", "transformer")


def test_the_key_value_cache_gives_the_logits_of_recomputing_every_position(model, vocab, data):
    memory, pooled, state = model.encode(data.images[:4])
    words = np.full(4, vocab.index("<start>"), np.int32)
    so_far = words[:, None]
    for _ in range(6):
        cached, state, _ = model.step(words, state, memory, pooled)
        recomputed = model.step_without_cache(so_far, memory)
        np.testing.assert_allclose(np.asarray(cached), np.asarray(recomputed), atol=1e-4)
        words = np.asarray(keras.ops.argmax(cached, axis=-1)).astype(np.int32)
        so_far = np.concatenate([so_far, words[:, None]], axis=1)
    # and the step-by-step logits are those of the teacher-forced call on the same words
    logits, _ = model((data.images[:4], so_far[:, :-1]))
    np.testing.assert_allclose(np.asarray(logits)[:, -1], np.asarray(cached), atol=1e-4)


def test_mixed_precision_trains_like_float32(float32_run, data, vocab, encoder, tmp_path):
    """float16 compute, float32 logits and loss: the per-step losses agree up to float16 rounding
    (atol 0.02 on losses about 3.3)."""
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, encoder, precision="mixed")
    assert run.precision == "mixed_float16" and isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    np.testing.assert_allclose(steps.losses, expected_steps.losses, atol=0.02)
    C.save(model, vocab, tmp_path)
    loaded, _ = C.load(tmp_path)
    assert loaded.dtype_policy.name == loaded.blocks[0].dtype_policy.name == "mixed_float16"
    assert loaded.classifier.dtype_policy.name == "float32"
    assert C.greedy_decode(loaded, data.images[:4], vocab)[0] == C.greedy_decode(model, data.images[:4], vocab)[0]


def test_two_replicas_train_like_one_device(float32_run, data, vocab, encoder):
    _, expected, expected_steps, _ = float32_run
    model, history, steps, run = fit(data, vocab, encoder, cpu_replicas=2)
    assert run.replicas == 2
    np.testing.assert_allclose(steps.losses, expected_steps.losses, rtol=1e-5)
    for key in ("loss", "word_loss", "word_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-5, err_msg=key)


def test_greedy_and_beam_decoding_and_saving(model, vocab, data, tmp_path):
    captions, maps = C.greedy_decode(model, data.images[:4], vocab)
    for caption, m in zip(captions, maps):
        assert m.shape == (min(len(caption.split()) + 1, C.CAPTION_LENGTH - 1), 8, 8)
    for i in range(4):
        caption, _, greedy_lp = C.beam_search(model, data.images[i], vocab, beam_width=1)
        assert caption == captions[i]
        assert C.beam_search(model, data.images[i], vocab, beam_width=3)[2] >= greedy_lp - 1e-5
    C.save(model, vocab, tmp_path)
    loaded, _ = C.load(tmp_path)
    assert isinstance(loaded, TransformerCaptioner) and loaded.get_config()["layers"] == 2
    assert C.greedy_decode(loaded, data.images[:4], vocab)[0] == captions


def test_bad_arguments(vocab, data):
    with pytest.raises(ValueError, match="multiple of num_heads=3"):
        TransformerCaptioner(len(vocab), d_model=16, num_heads=3)
    with pytest.raises(ValueError, match="decoder must be one of gru, transformer"):
        C.train_captioner(data.images[:4], data.captions[:4], vocab, decoder="lstm")


def test_the_train_command_and_the_caption_command_take_the_transformer(tmp_path, monkeypatch, capsys):
    """`mmcourse train captioner --decoder transformer` on a tiny budget writes a model that
    `mmcourse caption` reads, with the exact match metrics.json reports on its test split."""
    import dataclasses

    from PIL import Image

    from mmcourse import artifacts, config
    from mmcourse.cli import main

    monkeypatch.setattr(C, "TRAIN_SIZES", {"quick": (32, 1, 32, 1), "full": (32, 1, 32, 1)})
    monkeypatch.setitem(config.PROFILES, "quick", dataclasses.replace(config.PROFILES["quick"], n_test=16))
    out = tmp_path / "model"
    assert main(["train", "captioner", "--decoder", "transformer", "--profile", "quick", "--seed", "2", "--out", str(out)]) == 0
    assert "transformer captioner in" in capsys.readouterr().out
    saved = artifacts.read_metrics(out)
    assert (saved["decoder"], saved["fusion"], saved["test_images"]) == ("transformer", "attention", 16) and "grounding" in saved
    model, vocab = C.load(out)
    assert isinstance(model, TransformerCaptioner) and model.get_config()["d_model"] == C.TRANSFORMER_SIZES["d_model"]
    test = shapes.generate(16, seed=(2, 2))
    assert C.evaluate(model, test, vocab)["exact_match"] == saved["exact_match"]
    Image.fromarray(test.images[0]).save(tmp_path / "scene.png")
    assert main(["caption", "--model", str(out), str(tmp_path / "scene.png")]) == 0
    path, caption = capsys.readouterr().out.strip().split("\t")
    assert path.endswith("scene.png") and caption == C.greedy_decode(model, test.images[:1], vocab)[0][0]
