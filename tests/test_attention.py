"""Attention layers: formulas against Keras and numpy, masks that mask, save and load."""

import numpy as np
import pytest

from mmcourse.layers import attention as A

import keras  # noqa: E402


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.fixture
def qkv():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(2, 4, 8)).astype(np.float32), rng.normal(size=(2, 6, 8)).astype(np.float32), rng.normal(size=(2, 6, 5)).astype(np.float32))


def test_scaled_dot_product_matches_numpy(qkv):
    q, k, v = qkv
    out, w = A.scaled_dot_product_attention(q, k, v)
    expected_w = _softmax(q @ k.transpose(0, 2, 1) / np.sqrt(8))
    assert np.allclose(w, expected_w, atol=1e-6)
    assert np.allclose(out, expected_w @ v, atol=1e-5)
    assert np.allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)


def test_masked_keys_get_exactly_zero_weight(qkv):
    q, k, v = qkv
    tokens = np.array([[5, 6, 7, 0, 0, 0], [5, 6, 7, 8, 9, 0]])
    mask = A.padding_mask(tokens)
    _, w = A.scaled_dot_product_attention(q, k, v, mask)
    w = np.asarray(w)
    assert (w[0, :, 3:] == 0).all() and (w[1, :, 5:] == 0).all()
    assert np.allclose(w.sum(-1), 1.0, atol=1e-6)
    # Same as attention over the real keys alone.
    _, w_short = A.scaled_dot_product_attention(q[:1], k[:1, :3], v[:1, :3])
    assert np.allclose(w[0, :, :3], w_short[0], atol=1e-6)


def test_causal_mask_is_lower_triangular_and_blocks_the_future():
    m = np.asarray(A.causal_mask(4))
    assert (m == np.tril(np.ones((4, 4), bool))).all()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 4, 8)).astype(np.float32)
    out, w = A.DotProductAttention(causal=True)(x, x, x)
    assert (np.triu(np.asarray(w)[0], 1) == 0).all()
    # Changing a later position must not change earlier outputs.
    x2 = x.copy()
    x2[0, 3] += 10
    out2, _ = A.DotProductAttention(causal=True)(x2, x2, x2)
    assert np.allclose(np.asarray(out)[0, :3], np.asarray(out2)[0, :3], atol=1e-6)


def test_additive_attention_matches_its_formula_in_numpy(qkv):
    q, k, v = qkv
    layer = A.AdditiveAttention(units=7)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])[:, None, :]
    context, w = layer(q, k, v, attention_mask=mask)
    W_q, W_k, b, vv = (x.numpy() for x in layer.weights)
    e = np.tanh((q @ W_q)[:, :, None, :] + (k @ W_k)[:, None, :, :] + b) @ vv
    e = np.where(mask, e, -np.inf)
    expected = _softmax(e)
    assert np.allclose(w, expected, atol=1e-6) and (np.asarray(w)[1, :, 4:] == 0).all()
    assert np.allclose(context, expected @ v, atol=1e-5)
    c1, w1 = layer(q[:, 0], k, v)  # one query per example
    assert c1.shape == (2, 5) and w1.shape == (2, 6)
    with pytest.raises(ValueError, match="units must be a positive whole number"):
        A.AdditiveAttention(units=0)


@pytest.mark.parametrize("causal", [False, True])
def test_multi_head_attention_equals_keras_with_the_same_weights(causal):
    rng = np.random.default_rng(2)
    query = rng.normal(size=(2, 5, 16)).astype(np.float32)
    value = rng.normal(size=(2, 5, 16)).astype(np.float32)
    mask = np.ones((2, 5, 5), bool)
    mask[1, :, 3:] = False
    ref = keras.layers.MultiHeadAttention(num_heads=4, key_dim=6)
    ref_out, ref_w = ref(query, value, attention_mask=mask, return_attention_scores=True, use_causal_mask=causal)
    ours = A.MultiHeadAttention(num_heads=4, key_dim=6)
    ours(query, value)  # build
    ours.set_weights(ref.get_weights())
    out, w = ours(query, value, attention_mask=mask, use_causal_mask=causal)
    assert np.abs(np.asarray(out) - np.asarray(ref_out)).max() < 1e-5
    assert np.abs(np.asarray(w) - np.asarray(ref_w)).max() < 1e-5


def test_layers_survive_a_keras_save_and_load(tmp_path):
    rng = np.random.default_rng(3)
    q = rng.normal(size=(2, 3, 8)).astype(np.float32)
    kv = rng.normal(size=(2, 6, 8)).astype(np.float32)
    qi, kvi = keras.Input((3, 8)), keras.Input((6, 8))
    c1, _ = A.AdditiveAttention(units=5)(qi, kvi, kvi)
    c2, _ = A.MultiHeadAttention(num_heads=2, key_dim=4)(qi, kvi)
    c3, _ = A.DotProductAttention()(qi, kvi, kvi)
    model = keras.Model([qi, kvi], [c1, c2, c3])
    path = tmp_path / "attention.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    for a, b in zip(model([q, kv]), loaded([q, kv])):
        assert np.allclose(a, b, atol=1e-6)
    kinds = {type(layer).__name__ for layer in loaded.layers}
    assert {"AdditiveAttention", "MultiHeadAttention", "DotProductAttention"} <= kinds


def test_attention_entropy():
    assert A.attention_entropy(np.eye(3)[None]) == pytest.approx(0.0, abs=1e-6)
    assert A.attention_entropy(np.full((1, 2, 4), 0.25)) == pytest.approx(np.log(4))


def test_attention_explorer_reports_the_peak_and_whether_it_is_on_the_object():
    from mmcourse.data import shapes
    from mmcourse.widgets import AttentionExplorer

    data = shapes.generate(5, seed=4, objects=(2,))

    def attend(index, colour, shape):  # a stand-in model: all weight on the matching object's centre cell
        weights = np.full((8, 8), 1e-3)
        for obj in data.scenes[index].objects:
            if (obj.colour, obj.shape) == (colour, shape):
                x, y = obj.centre
                weights[int(y) // 8, int(x) // 8] = 1.0
        return weights / weights.sum()

    explorer = AttentionExplorer(data.images, data.scenes, data.masks, attend)
    target = data.scenes[0].objects[1]
    explorer.colour.value, explorer.shape.value = target.colour, target.shape
    assert explorer.peak == (int(target.centre[1]) // 8, int(target.centre[0]) // 8)
    assert explorer.peak_on_object and "✓" in explorer.info.value
    before = explorer.image.value
    explorer.show_masks.value = True
    assert explorer.image.value != before
    absent = next(c for c in shapes.COLOURS if all(o.colour != c for o in data.scenes[0].objects))
    explorer.colour.value = absent
    assert not explorer.peak_on_object and "no such object" in explorer.info.value
