"""The Transformer layers against independent computations: numpy from the formulas, and Keras's
own MultiHeadAttention with the same weights; masks, the key-value cache, save and load."""

import numpy as np
import pytest
from scipy.special import erf

from mmcourse._tf import tensorflow

tensorflow()
import keras  # noqa: E402

from mmcourse.layers.transformer import (  # noqa: E402
    FeedForward,
    PositionalEmbedding,
    TransformerBlock,
    sinusoidal_positions,
    sinusoidal_positions_2d,
)

RNG = np.random.default_rng(0)


def test_sinusoidal_positions_follow_the_formula_entry_by_entry():
    table = sinusoidal_positions(50, 16)
    for p in (0, 1, 7, 49):
        for i in range(8):
            angle = p / 10000 ** (2 * i / 16)
            assert table[p, 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
            assert table[p, 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)
    # odd widths keep the last sine column
    assert sinusoidal_positions(4, 5).shape == (4, 5)


def test_the_2d_table_gives_half_the_features_to_the_column_and_half_to_the_row():
    table = sinusoidal_positions_2d(8, 16)  # 64 tokens of an 8x8 grid, read row by row
    for row, column in ((0, 0), (0, 5), (3, 1), (7, 7)):
        token = table[row * 8 + column]
        for i in range(4):  # the column's sines and cosines, then the row's, each from the 1-D formula
            for half, p in ((0, column), (8, row)):
                angle = p / 10000 ** (2 * i / 8)
                assert token[half + 2 * i] == pytest.approx(np.sin(angle), abs=1e-6)
                assert token[half + 2 * i + 1] == pytest.approx(np.cos(angle), abs=1e-6)
    layer = PositionalEmbedding(64, kind="sinusoidal_2d")
    x = RNG.normal(size=(2, 64, 16)).astype(np.float32)
    assert np.allclose(np.asarray(layer(x)), x + table, atol=1e-6) and not layer.trainable_weights
    with pytest.raises(ValueError, match="square"):
        PositionalEmbedding(60, kind="sinusoidal_2d")


@pytest.mark.parametrize("kind", ["sinusoidal", "learned"])
def test_positional_embedding_adds_the_table_and_offsets_with_start(kind):
    layer = PositionalEmbedding(12, kind=kind)
    x = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    out = np.asarray(layer(x))
    table = np.asarray(layer.table)
    assert np.allclose(out, x + table[:5], atol=1e-6)
    assert np.allclose(np.asarray(layer(x[:, :2], start=3)), x[:, :2] + table[3:5], atol=1e-6)
    assert len(layer.trainable_weights) == (1 if kind == "learned" else 0)
    with pytest.raises(ValueError, match="kind must be"):
        PositionalEmbedding(4, kind="rotary")


def _layer_norm(x, gamma, beta, eps=1e-5):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _attention(q_in, kv_in, weights, mask=None):
    """Multi-head attention from its formula, on numpy arrays; weights as our layer orders them."""
    W_q, b_q, W_k, b_k, W_v, b_v, W_o, b_o = weights
    q = np.einsum("btd,dhk->bhtk", q_in, W_q) + b_q[None, :, None]
    k = np.einsum("btd,dhk->bhtk", kv_in, W_k) + b_k[None, :, None]
    v = np.einsum("btd,dhk->bhtk", kv_in, W_v) + b_v[None, :, None]
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(q.shape[-1])
    if mask is not None:
        scores = np.where(mask, scores, -1e9)
    return np.einsum("bhtk,hkd->btd", _softmax(scores) @ v, W_o) + b_o


def _gelu(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _block_numpy(block, x, memory=None, causal=False, mask=None):
    """The pre-LN block written again with numpy, reading the block's weights (``mask (T, T)``:
    which key each position sees, instead of the causal one)."""
    def w(layer):
        return [np.asarray(v, np.float64) for v in layer.weights]

    T = x.shape[1]
    mask = mask if mask is not None else np.tril(np.ones((T, T), bool)) if causal else None
    h = _layer_norm(x, *w(block.norm_self))
    x = x + _attention(h, h, w(block.self_attention), mask)
    if memory is not None:
        x = x + _attention(_layer_norm(x, *w(block.norm_cross)), memory, w(block.cross))
    W1, b1, W2, b2 = w(block.feed_forward)
    return x + _gelu(_layer_norm(x, *w(block.norm_ff)) @ W1 + b1) @ W2 + b2


def _randomise(layer):
    """Non-trivial weights everywhere (LayerNorm starts at 1 and 0, biases at 0)."""
    layer.set_weights([RNG.normal(scale=0.3, size=v.shape).astype(np.float32) for v in layer.weights])


def test_an_encoder_block_equals_its_formula_in_numpy():
    block = TransformerBlock(num_heads=2, hidden=16)
    x = RNG.normal(size=(3, 5, 8)).astype(np.float32)
    block(x)
    _randomise(block)
    assert np.allclose(np.asarray(block(x)), _block_numpy(block, x.astype(np.float64)), atol=1e-4)


def test_a_decoder_block_with_cross_attention_equals_its_formula_in_numpy():
    block = TransformerBlock(num_heads=4, hidden=16, causal=True, cross_attention=True)
    x, memory = RNG.normal(size=(2, 6, 8)).astype(np.float32), RNG.normal(size=(2, 9, 8)).astype(np.float32)
    block(x, memory)
    _randomise(block)
    expected = _block_numpy(block, x.astype(np.float64), memory.astype(np.float64), causal=True)
    assert np.allclose(np.asarray(block(x, memory)), expected, atol=1e-4)
    assert block.self_weights.shape == (2, 4, 6, 6) and block.cross_weights.shape == (2, 4, 6, 9)
    with pytest.raises(ValueError, match="pass memory"):
        block(x)


def test_self_attention_agrees_with_keras_multi_head_attention_given_the_same_weights():
    block = TransformerBlock(num_heads=2, hidden=8)
    x = RNG.normal(size=(2, 4, 6)).astype(np.float32)
    block(x)
    _randomise(block)
    reference = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3)
    reference(x, x)
    reference.set_weights(block.self_attention.get_weights())
    h = block.norm_self(x)
    ours, _ = block.self_attention(h, h, use_causal_mask=True)
    assert np.allclose(np.asarray(ours), np.asarray(reference(h, h, use_causal_mask=True)), atol=1e-5)


def test_a_causal_block_never_reads_a_later_position():
    block = TransformerBlock(num_heads=2, hidden=16, causal=True)
    x = RNG.normal(size=(1, 7, 8)).astype(np.float32)
    before = np.asarray(block(x))
    changed = x.copy()
    changed[:, 4:] = RNG.normal(size=(1, 3, 8))
    after = np.asarray(block(changed))
    assert np.allclose(before[:, :4], after[:, :4], atol=1e-6) and not np.allclose(before[:, 4:], after[:, 4:])
    assert np.allclose(np.triu(np.asarray(block.self_weights)[0, 0], k=1), 0)


def test_padding_gets_no_attention_and_does_not_change_the_real_tokens():
    block = TransformerBlock(num_heads=2, hidden=16)
    x = RNG.normal(size=(1, 6, 8)).astype(np.float32)
    mask = np.array([[True, True, True, True, False, False]])
    out = np.asarray(block(x, mask=mask))
    assert np.allclose(np.asarray(block.self_weights)[..., 4:], 0)
    noisy = x.copy()
    noisy[:, 4:] = 100.0
    assert np.allclose(np.asarray(block(noisy, mask=mask))[:, :4], out[:, :4], atol=1e-5)


def test_decoding_with_the_key_value_cache_gives_what_the_whole_sequence_gives():
    block = TransformerBlock(num_heads=2, hidden=16, causal=True, cross_attention=True)
    x, memory = RNG.normal(size=(2, 6, 8)).astype(np.float32), RNG.normal(size=(2, 5, 8)).astype(np.float32)
    full = np.asarray(block(x, memory))
    memory_cache, cache, steps = block.memory_cache(memory), None, []
    for t in range(6):
        out, cache = block.step(x[:, t : t + 1], cache, memory_cache)
        steps.append(np.asarray(out))
    assert np.allclose(np.concatenate(steps, axis=1), full, atol=1e-5)
    assert tuple(cache[0].shape) == (2, 2, 6, 4)
    # a prefix of several positions at once, then one more
    out, cache = block.step(x[:, :4], None, memory_cache)
    last, _ = block.step(x[:, 4:5], cache, memory_cache)
    assert np.allclose(np.asarray(out), full[:, :4], atol=1e-5) and np.allclose(np.asarray(last), full[:, 4:5], atol=1e-5)


def test_a_prefix_seen_both_ways_then_causal_decoding_equals_the_prefix_lm_mask():
    """A 3-D mask replaces the causal one (numpy with that mask); ``step(prefix, causal=False)``
    then one position at a time gives the same outputs."""
    block = TransformerBlock(num_heads=2, hidden=16, causal=True)
    x = RNG.normal(size=(2, 7, 8)).astype(np.float32)
    block(x)
    _randomise(block)
    sees = np.tril(np.ones((7, 7), bool))
    sees[:4, :4] = True  # a prefix of 4 positions that see each other both ways
    full = np.asarray(block(x, mask=np.broadcast_to(sees, (2, 7, 7))))
    assert np.allclose(full, _block_numpy(block, x.astype(np.float64), mask=sees), atol=1e-4)
    assert not np.allclose(full[:, :4], np.asarray(block(x))[:, :4], atol=1e-3)  # the prefix now sees ahead
    out, cache = block.step(x[:, :4], causal=False)
    steps = [np.asarray(out)]
    for t in range(4, 7):
        out, cache = block.step(x[:, t : t + 1], cache)
        steps.append(np.asarray(out))
    assert np.allclose(np.concatenate(steps, axis=1), full, atol=1e-5)


def test_a_model_of_these_layers_saves_and_loads(tmp_path):
    tokens = keras.Input((7, 8))
    image = keras.Input((4, 8))
    x = PositionalEmbedding(10, kind="learned")(tokens)
    x = TransformerBlock(2, 16, causal=True, cross_attention=True, dropout=0.1)(x, image)
    x = FeedForward(12)(x)
    model = keras.Model([tokens, image], x)
    inputs = [RNG.normal(size=(2, 7, 8)).astype(np.float32), RNG.normal(size=(2, 4, 8)).astype(np.float32)]
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert np.allclose(np.asarray(loaded(inputs)), np.asarray(model(inputs)), atol=1e-6)
    block = loaded.layers[3]
    assert (block.num_heads, block.hidden, block.causal, block.cross_attention, block.dropout_rate) == (2, 16, True, True, 0.1)


def test_a_block_in_mixed_precision_computes_what_float32_does_up_to_float16_rounding():
    """The same weights under mixed_float16: float16 activations, float32 weights, and outputs within
    float16's rounding of the float32 block's (atol 0.02 on outputs of size about 1)."""
    x = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    reference = TransformerBlock(num_heads=2, hidden=16, causal=True)
    expected = np.asarray(reference(x))
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        block = TransformerBlock(num_heads=2, hidden=16, causal=True)
        block(x)
        block.set_weights(reference.get_weights())
        out = block(x)
        assert out.dtype == "float16" and block.self_attention.W_q.dtype == "float32"
        assert block.norm_ff.compute_dtype == "float16"  # the sub-layers follow the block's policy
        np.testing.assert_allclose(np.asarray(out, np.float32), expected, atol=0.02)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_width_that_the_heads_do_not_divide_is_refused():
    with pytest.raises(ValueError, match="multiple of num_heads=3"):
        TransformerBlock(num_heads=3, hidden=8)(np.zeros((1, 2, 8), np.float32))
