"""The caption-conditioned U-Net of latent diffusion."""

import keras
import numpy as np
import pytest

from mmcourse.data import shapes
from mmcourse.models import denoiser


def test_timestep_code_is_the_sinusoidal_formula():
    t = np.array([0, 1, 17, 999])
    got = np.asarray(denoiser.timestep_code(t, 8))
    freqs = 10_000.0 ** (-np.arange(4) / 4)
    assert np.allclose(got, np.concatenate([np.sin(t[:, None] * freqs), np.cos(t[:, None] * freqs)], 1), atol=1e-4)


def test_null_caption_is_start_end():
    vocab = shapes.caption_vocabulary()
    ids = denoiser.null_caption()
    assert ids.shape == (shapes.CAPTION_LENGTH,)
    assert vocab.decode(ids[1:]) == "" and ids[0] == vocab.start_id and not ids[2:].any()


@pytest.fixture(scope="module")
def model():
    m = denoiser.build_denoiser((8, 8, 4), width=16, text_width=16, num_heads=2)
    rng = np.random.default_rng(0)
    for layer in m.layers:  # the output and FiLM start at zero; give them weights so every path shows
        if layer.name == "out_conv" or layer.name.endswith("_film"):
            layer.set_weights([0.3 * rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    return m


def _inputs(captions, t=(0, 500)):
    rng = np.random.default_rng(1)
    return {"noisy": rng.normal(size=(len(captions), 8, 8, 4)).astype("float32"), "t": np.array(t, np.int32),
            "caption": shapes.encode_captions(captions)}


def test_output_shape_caption_and_time_matter(model):
    a = _inputs(["a small red square", "a small red square"])
    out = np.asarray(model(a))
    assert out.shape == (2, 8, 8, 4) and out.dtype == np.float32
    assert np.abs(out[0] - out[1]).max() > 1e-3  # t differs
    b = dict(a, caption=shapes.encode_captions(["a small red square", "a small blue square"]))
    changed = np.asarray(model(b))
    assert np.allclose(changed[0], out[0], atol=1e-6) and np.abs(changed[1] - out[1]).max() > 1e-4  # one word differs
    c = dict(a, caption=shapes.encode_captions(["a small red square", "a small red square left of a large blue circle"]), t=np.array([0, 0], np.int32))
    one, two = np.asarray(model(c))
    assert np.abs(one - two).max() > 1e-4


def test_padding_after_the_caption_is_not_read(model):
    """The padded positions are masked in the text blocks and in cross-attention: their word vectors do not matter."""
    a = _inputs(["a small red square"])
    before = np.asarray(model(a))
    embedding = model.get_layer("word_vectors")
    weights = embedding.get_weights()
    moved = [weights[0].copy()]
    moved[0][0] += np.random.default_rng(2).normal(size=moved[0].shape[1]) * 3  # the <pad> vector (not a constant: LayerNorm would remove that)
    embedding.set_weights(moved)
    try:
        assert np.allclose(np.asarray(model(a)), before, atol=1e-5)
    finally:
        embedding.set_weights(weights)


def test_save_and_load(model, tmp_path):
    model.save(tmp_path / "denoiser.keras")
    again = keras.saving.load_model(tmp_path / "denoiser.keras")
    a = _inputs(["a small green triangle", "a large blue circle above a small red square"])
    assert np.allclose(np.asarray(again(a)), np.asarray(model(a)), atol=1e-5)


def test_a_side_that_does_not_halve_twice_is_refused():
    with pytest.raises(ValueError, match="multiple of 4"):
        denoiser.build_denoiser((6, 6, 4))
