"""Attention, written from its formulas, as Keras layers.

Scaled dot-product attention (Vaswani et al., 2017)::

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k + M) V

Additive attention (Bahdanau et al., 2015)::

    e_ij = vᵀ tanh(W_q q_i + W_k k_j),  α_ij = softmax_j(e_ij),  c_i = Σ_j α_ij v_j

Masks follow Keras's convention: ``True`` (or 1) where a query *may* attend to a key,
``False`` where it may not. Masked scores are replaced by a large negative number before
the softmax, so masked keys get a weight of exactly zero in float32.
"""

from __future__ import annotations

import numpy as np

from mmcourse.checks import check_positive_int
from mmcourse._tf import tensorflow

tensorflow()
import keras  # noqa: E402
from keras import ops  # noqa: E402

__all__ = [
    "MASKED",
    "padding_mask",
    "causal_mask",
    "combine_masks",
    "scaled_dot_product_attention",
    "AdditiveAttention",
    "DotProductAttention",
    "MultiHeadAttention",
    "attention_entropy",
]

#: What masked scores become: exp(MASKED − max) underflows to exactly 0 in float32.
MASKED = -1e9


def padding_mask(tokens, pad_id: int = 0):
    """``(batch, 1, keys)`` bool: True for real tokens, False for padding (broadcasts over queries)."""
    return ops.expand_dims(ops.not_equal(tokens, pad_id), axis=1)


def causal_mask(length: int, key_length: int | None = None):
    """``(length, key_length)`` bool, lower-triangular: query i may attend to keys 0 … i."""
    key_length = length if key_length is None else key_length
    rows = ops.expand_dims(ops.arange(length), 1)
    cols = ops.expand_dims(ops.arange(key_length), 0)
    return ops.greater_equal(rows, cols)


def combine_masks(*masks):
    """Logical AND of the masks that are not None (broadcasting), or None."""
    out = None
    for m in masks:
        if m is None:
            continue
        m = ops.cast(m, "bool")
        out = m if out is None else ops.logical_and(out, m)
    return out


def _masked_softmax(scores, mask):
    if mask is not None:
        scores = ops.where(ops.cast(mask, "bool"), scores, ops.cast(MASKED, scores.dtype))
    return ops.softmax(scores, axis=-1)


def scaled_dot_product_attention(query, key, value, mask=None):
    """``softmax(Q Kᵀ / √d_k) V`` with an optional mask; returns ``(output, weights)``.

    Shapes: query ``(..., Tq, d_k)``, key ``(..., Tk, d_k)``, value ``(..., Tk, d_v)``,
    mask broadcastable to ``(..., Tq, Tk)``. Output ``(..., Tq, d_v)``, weights ``(..., Tq, Tk)``.
    """
    d_k = ops.shape(query)[-1]
    scores = ops.matmul(query, ops.swapaxes(key, -1, -2)) / ops.sqrt(ops.cast(d_k, query.dtype))
    weights = _masked_softmax(scores, mask)
    return ops.matmul(weights, value), weights


@keras.saving.register_keras_serializable(package="mmcourse")
class DotProductAttention(keras.layers.Layer):
    """Scaled dot-product attention as a layer (no weights): ``call(query, key, value, attention_mask=None)``.

    Returns ``(output, weights)``; see :func:`scaled_dot_product_attention`. With
    ``causal=True`` each query may only attend to keys at its own position or before.
    """

    def __init__(self, causal: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.causal = bool(causal)
        self.supports_masking = True  # Keras masks on the inputs pass through to the output

    def call(self, query, key, value, attention_mask=None):
        mask = attention_mask
        if self.causal:
            mask = combine_masks(mask, causal_mask(ops.shape(query)[-2], ops.shape(key)[-2]))
        return scaled_dot_product_attention(query, key, value, mask)

    def get_config(self):
        return {**super().get_config(), "causal": self.causal}


@keras.saving.register_keras_serializable(package="mmcourse")
class AdditiveAttention(keras.layers.Layer):
    """Bahdanau attention: ``e_ij = vᵀ tanh(W_q q_i + W_k k_j)``, ``c_i = Σ_j softmax_j(e_ij) v_j``.

    Args:
        units: size of the hidden layer inside the score.

    Call: ``(query (batch, Tq, d_q), key (batch, Tk, d_k), value (batch, Tk, d_v), attention_mask)``,
    with attention_mask broadcastable to ``(batch, Tq, Tk)``; a 2-D query ``(batch, d_q)`` is treated
    as one query. Returns ``(context (batch, Tq, d_v), weights (batch, Tq, Tk))`` (the Tq
    axis dropped for a 2-D query).
    """

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = check_positive_int(units, "units")
        self.supports_masking = True

    def build(self, query_shape, key_shape=None, value_shape=None):
        key_shape = query_shape if key_shape is None else key_shape
        self.W_q = self.add_weight(name="W_q", shape=(query_shape[-1], self.units), initializer="glorot_uniform")
        self.W_k = self.add_weight(name="W_k", shape=(key_shape[-1], self.units), initializer="glorot_uniform")
        self.b = self.add_weight(name="b", shape=(self.units,), initializer="zeros")
        self.v = self.add_weight(name="v", shape=(self.units,), initializer="glorot_uniform")

    def call(self, query, key, value, attention_mask=None):
        mask = attention_mask
        single = len(query.shape) == 2
        if single:
            query = ops.expand_dims(query, 1)
        q = ops.expand_dims(ops.matmul(query, self.W_q), 2)  # (batch, Tq, 1, units)
        k = ops.expand_dims(ops.matmul(key, self.W_k), 1)  # (batch, 1, Tk, units)
        scores = ops.sum(ops.tanh(q + k + self.b) * self.v, axis=-1)  # (batch, Tq, Tk)
        weights = _masked_softmax(scores, mask)
        context = ops.matmul(weights, value)
        if single:
            return context[:, 0], weights[:, 0]
        return context, weights

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="mmcourse")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention written out: h heads of scaled dot-product attention, concatenated.

    ``head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)``, ``MultiHead = [head_1 … head_h] W^O``.

    The weights have the same shapes and order as ``keras.layers.MultiHeadAttention``'s
    (query, key, value and output kernels and biases), so weights copy across with
    ``set_weights``. Call: ``(query, value, key=None, attention_mask=None,
    use_causal_mask=False)``; returns ``(output, weights (batch, heads, Tq, Tk))``.
    """

    def __init__(self, num_heads: int, key_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.key_dim = check_positive_int(num_heads, "num_heads"), check_positive_int(key_dim, "key_dim")
        self.supports_masking = True

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        h, d = self.num_heads, self.key_dim
        self.model_dim = query_shape[-1]
        self.W_q = self.add_weight(name="query_kernel", shape=(query_shape[-1], h, d), initializer="glorot_uniform")
        self.b_q = self.add_weight(name="query_bias", shape=(h, d), initializer="zeros")
        self.W_k = self.add_weight(name="key_kernel", shape=(key_shape[-1], h, d), initializer="glorot_uniform")
        self.b_k = self.add_weight(name="key_bias", shape=(h, d), initializer="zeros")
        self.W_v = self.add_weight(name="value_kernel", shape=(value_shape[-1], h, d), initializer="glorot_uniform")
        self.b_v = self.add_weight(name="value_bias", shape=(h, d), initializer="zeros")
        self.W_o = self.add_weight(name="output_kernel", shape=(h, d, self.model_dim), initializer="glorot_uniform")
        self.b_o = self.add_weight(name="output_bias", shape=(self.model_dim,), initializer="zeros")

    def _project(self, x, kernel, bias):
        # (batch, T, d_in) × (d_in, h, d) → (batch, h, T, d)
        return ops.transpose(ops.einsum("btd,dhk->bthk", x, kernel) + bias, (0, 2, 1, 3))

    def call(self, query, value, key=None, attention_mask=None, use_causal_mask=False):
        key = value if key is None else key
        q = self._project(query, self.W_q, self.b_q)
        k = self._project(key, self.W_k, self.b_k)
        v = self._project(value, self.W_v, self.b_v)
        mask = attention_mask
        if mask is not None:
            mask = ops.expand_dims(ops.cast(mask, "bool"), 1)  # the same mask for every head
        if use_causal_mask:
            mask = combine_masks(mask, causal_mask(ops.shape(query)[1], ops.shape(key)[1]))
        heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (batch, h, Tq, d)
        output = ops.einsum("bhtk,hkd->btd", heads, self.W_o) + self.b_o
        return output, weights

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "key_dim": self.key_dim}


def attention_entropy(weights) -> float:
    """Mean entropy (nats) of attention distributions: 0 when each query looks at one key."""
    w = ops.convert_to_numpy(weights)
    return float(-(w * np.log(np.clip(w, 1e-12, 1.0))).sum(-1).mean())

